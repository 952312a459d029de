"""Improving the policy from preferences, step 2 of RLHF: DPO and RLOO jobs, and their evaluation.

`dpo` trains on preference pairs directly; `rloo` samples completions and learns from a trained
reward model's scores with a KL penalty to the reference; `evaluate` compares an aligned adapter
with the base model on held-out prompts through the reward model; `common` holds what they share.
"""
