"""Training throughput of the project's SFT configuration vs a plain SFTTrainer, in one run.

Both sides train the same LoRA adapter on the same examples for the same number of steps with
the same batch size. The baseline is `SFTTrainer` with trl's defaults, changed only where the
hardware forces it (precision: no bf16 autocast on a CPU without native bf16 -- leaving it on
would make the baseline ~40x slower and the comparison meaningless). The project's side uses
`finetune.training_args` exactly as the Fine-tune tab does.

    python bench/finetune_bench.py [--steps 6] [--batch-size 8] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

import torch  # noqa: E402

from pipelines.config import get_settings  # noqa: E402
from pipelines.engine import models  # noqa: E402
from pipelines.engine.hardware import detect, plan_device, train_precision  # noqa: E402
from pipelines.train import finetune, sft_data  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "assets" / "datasets" / "concise_tutor.jsonl"


def _examples(tokenizer, mixed_lengths: bool) -> list[dict]:
    conversations = sft_data.load_file(DATA).conversations
    if mixed_lengths:
        # Real instruction data mixes short and long answers; make a quarter of the rows long so
        # the effect of padding shows (the bundled sample is unusually uniform).
        from pipelines.engine.chat import Message

        conversations = [
            c if i % 4 else [c[0], Message("assistant", " ".join([c[1].content] * 4))]
            for i, c in enumerate(conversations)
        ]
    return sft_data.to_examples(conversations)


def _train(source: str, examples: list[dict], args, spec) -> float:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(source)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(examples),
        processing_class=tokenizer,
        peft_config=finetune.peft_config_for(spec, source),
    )
    started = time.perf_counter()
    trainer.train()
    return args.max_steps * args.per_device_train_batch_size / (time.perf_counter() - started)


def measure(steps: int, batch_size: int, mixed_lengths: bool = True) -> dict:
    from transformers import AutoTokenizer
    from trl import SFTConfig

    settings = get_settings()
    source, name = models.resolve_source(models.configured_model_id(settings), settings)
    device = plan_device(detect(), settings.device).device
    examples = _examples(AutoTokenizer.from_pretrained(source), mixed_lengths)
    spec = finetune.FinetuneSpec(data=str(DATA), out="bench", max_steps=steps, batch_size=batch_size, max_length=512)
    with tempfile.TemporaryDirectory() as tmp:
        project_args = finetune.training_args(spec, Path(tmp) / "p", device=device, planned_steps=steps, has_eval=False)
        precision = train_precision(detect(), device)
        baseline_args = SFTConfig(
            output_dir=str(Path(tmp) / "b"),
            max_steps=steps,
            per_device_train_batch_size=batch_size,
            learning_rate=spec.lr,
            max_length=spec.max_length,
            report_to="none",
            save_strategy="no",
            disable_tqdm=True,
            seed=spec.seed,
            bf16=precision.bf16,
            fp16=precision.fp16,
            use_cpu=device == "cpu",
        )
        baseline = _train(source, examples, baseline_args, spec)
        project = _train(source, examples, project_args, spec)
    return {
        "project_samples_per_second": round(project, 3),
        "baseline_samples_per_second": round(baseline, 3),
        "speedup_vs_plain_sfttrainer": round(project / baseline, 3),
        "steps": steps,
        "batch_size": batch_size,
        "model": name,
        "device": device,
        "baseline_gradient_checkpointing": bool(baseline_args.gradient_checkpointing),
        "threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--uniform", action="store_true", help="use the bundled sample's lengths unchanged")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = measure(args.steps, args.batch_size, mixed_lengths=not args.uniform)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['model']} on {result['device']}, {args.steps} steps x batch {args.batch_size}")
        print(f"  project configuration   {result['project_samples_per_second']:8.3f} samples/s")
        print(f"  plain SFTTrainer        {result['baseline_samples_per_second']:8.3f} samples/s")
        print(f"  speedup                 {result['speedup_vs_plain_sfttrainer']:8.3f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
