"""Train wing: every job that changes weights — LoRA fine-tuning, the reward model, DPO and RLOO
alignment, classification heads — with their data readers, memory plans and evaluations
(shipped metric modules under metrics/)."""
