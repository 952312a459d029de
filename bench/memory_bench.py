"""The Fine-tune tab's planned peak memory against the measured peak of real 2-step runs.

For full fine-tuning and LoRA on the bundled model, each in a fresh process: the plan
(`finetune.plan`, i.e. pipelines/train/memory_plan.py) at the run's batch size and length, then two
optimizer steps of trl's SFTTrainer with the project's own training arguments, on examples cut
to exactly that length (the plan's worst case). Measured two ways:

- `measured_mb`: the peak of live tensor memory, from torch's memory profiler (allocations and
  frees of every op, forward, backward and optimizer step; the CPU's analogue of CUDA's
  `max_memory_allocated`), with its split by category at the peak;
- `rss_peak_mb`: in a second fresh process without the profiler (whose records take memory too),
  the peak resident memory during training (VmHWM, reset when training starts) less the resident
  memory before the model was loaded. It is above the tensor peak by
  what glibc's allocator keeps of freed blocks; LoRA's many same-sized dropout copies leave the
  most behind.

    python bench/memory_bench.py [--batch 4] [--length 256] [--json]

prints {"full": {"planned_mb", "measured_mb", ...}, "lora": {...}}; the goal is planned within
±30% of measured for both.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

MIB = 2**20
METHODS = ("full", "lora")
# torch.profiler._memory_profiler's categories, in the order its timeline lists them
CATEGORIES = ("parameters", "optimizer", "inputs", "temporaries", "activations", "gradients", "autograd", "other")


def _resident() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_resident() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        return int(re.search(r"VmHWM:\s+(\d+)", status.read()).group(1)) * 1024


def _examples(tokenizer, count: int, length: int) -> list[dict]:
    """`count` conversations whose answers run past `length` tokens, so every one is cut to exactly `length`."""
    from pipelines.train import evaluation

    ids = tokenizer(evaluation.general_text())["input_ids"]
    while len(ids) < count * length:
        ids = ids + ids
    return [
        {
            "prompt": [{"role": "user", "content": "Continue the text."}],
            "completion": [{"role": "assistant", "content": tokenizer.decode(ids[i * length : (i + 1) * length])}],
        }
        for i in range(count)
    ]


def child(method: str, batch: int, length: int, profiled: bool) -> dict:
    """One method's run in this (fresh) process: planned, and the tensor peak (`profiled`) or the resident peak."""
    import torch
    from datasets import Dataset
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import MemoryProfileTimeline
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTTrainer

    from pipelines.config import get_settings
    from pipelines.engine import models
    from pipelines.train import finetune, memory_plan, scale, training

    settings = get_settings()
    source, _ = models.resolve_source(models.configured_model_id(settings), settings)
    device, precision = training.device_and_precision(settings)
    tokenizer = AutoTokenizer.from_pretrained(source)
    data = Dataset.from_list(_examples(tokenizer, batch * 2, length + 64))
    spec = finetune.FinetuneSpec(
        data="-", out="bench", batch_size=batch, max_length=length, max_steps=2, group_by_length=False
    )
    before_model = _resident()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    planned = finetune.plan(
        model,
        "lora",
        memory_plan.Step(batch=batch, length=length, mixed_precision=precision.bf16 or precision.fp16),
        lora_r=spec.lora_r,
        target_modules=spec.target_modules,
        num_virtual_tokens=spec.num_virtual_tokens,
        lora_dropout=spec.lora_dropout,
    ).rows[METHODS.index(method)]
    # the scale calculator's 135M preset (pipelines/train/scale.py) is this plan when its shape is this model's
    preset_matches = scale.PRESETS["135M"][1].shape() == memory_plan.ModelShape.of(model)

    class Measure(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
                refs.write("5")  # the peak resident size starts again from here
            if not profiled:
                return
            self.profiler = profile(
                activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True
            )
            self.profiler.__enter__()

        def on_train_end(self, args, state, control, **kwargs):
            self.rss_peak = _peak_resident() - before_model
            if not profiled:
                return
            self.profiler.__exit__(None, None, None)
            timeline = MemoryProfileTimeline(self.profiler._memory_profile())
            _, sizes = timeline._coalesce_timeline(torch.device("cpu"))
            peak = max(sizes, key=sum)
            self.tensor_peak = sum(peak)
            self.split = dict(zip(CATEGORIES, peak[1:], strict=False))

    measure = Measure()
    with tempfile.TemporaryDirectory() as tmp:
        args = finetune.training_args(
            spec, Path(tmp), device=device, planned_steps=2, has_eval=False, precision=precision
        )
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=data,
            processing_class=tokenizer,
            peft_config=finetune.peft_config_for(spec, source) if method == "lora" else None,
            callbacks=[measure],
        )
        lengths = {len(ids) for ids in trainer.train_dataset["input_ids"]}
        trainer.train()
    if not profiled:
        return {"rss_peak_mb": round(measure.rss_peak / MIB, 1)}
    return {
        "planned_mb": round(planned["total"] / MIB, 1),
        "measured_mb": round(measure.tensor_peak / MIB, 1),
        "planned_over_measured": round(planned["total"] / measure.tensor_peak, 3),
        "planned_split_mb": {
            k: round(planned[k] / MIB, 1) for k in ("weights", "optimizer", "gradients", "activations", "loss")
        },
        "measured_split_mb": {k: round(v / MIB, 1) for k, v in measure.split.items() if v},
        "example_lengths": sorted(lengths),
        "precision": precision.reason,
        "scale_135m_preset_is_this_model": preset_matches,
    }


def _run(method: str, options: argparse.Namespace, probe: str) -> dict:
    run = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            method,
            "--probe",
            probe,
            "--batch",
            str(options.batch),
            "--length",
            str(options.length),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
    if run.returncode or not lines:
        raise SystemExit(f"the {method} run ({probe}) failed:\n{run.stderr[-3000:]}")
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--probe", choices=("tensors", "resident"), default="tensors", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        print(json.dumps(child(options.child, options.batch, options.length, options.probe == "tensors")))
        return
    result: dict = {"batch": options.batch, "length": options.length}
    for method in METHODS:
        result[method] = {**_run(method, options, "tensors"), **_run(method, options, "resident")}
    if options.json:
        print(json.dumps(result))
        return
    for method in METHODS:
        r = result[method]
        print(
            f"{method:5s} planned {r['planned_mb']:8.1f} MiB  measured (tensors) {r['measured_mb']:8.1f} MiB  "
            f"planned/measured {r['planned_over_measured']:.3f}  resident peak {r['rss_peak_mb']:8.1f} MiB"
        )
    matches = all(result[method]["scale_135m_preset_is_this_model"] for method in METHODS)
    print(f"scale calculator's 135M preset has this model's shape (its rows are this plan): {matches}")


if __name__ == "__main__":
    main()
