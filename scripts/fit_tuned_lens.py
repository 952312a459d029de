"""Fit the tuned lens shipped in assets/bundled/lenses/tuned-lens for the bundled model, and measure it.

    PLAYGROUND_DATA_DIR=... python scripts/fit_tuned_lens.py [--steps N] [--rank R]
    python -m pipelines bundled record tuned-lens --reproduce "python scripts/fit_tuned_lens.py"

The model runs once over the project's own prose (pipelines.inside.tuned_lens.training_text) and its
streams are cached; each step then fits every layer's translator on a few sampled positions (the
shipped lens: 1,066 s on two CPU cores shared with a CI run). Seeded: the same weights and data give
the same lens.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    from pipelines.engine import models
    from pipelines.inside import tuned_lens

    defaults = tuned_lens.FitSpec()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--rank", type=int, default=defaults.rank)
    parser.add_argument("--out", type=Path, default=tuned_lens.LENSES / tuned_lens.NAME)
    args = parser.parse_args()
    spec = tuned_lens.FitSpec(steps=args.steps, rank=args.rank)
    handle = models.get_handle()
    started = time.time()

    def progress(step: int, loss: float) -> None:
        if step == 1 or step % 25 == 0:
            print(
                f"step {step}/{spec.steps}: KL summed over layers / layers = {loss:.3f} ({time.time() - started:.0f} s)"
            )

    translators, report = tuned_lens.fit(handle, spec, progress=progress)
    held_out = tuned_lens.compare(handle, translators)
    meta = {
        "kind": "tuned_lens",
        "base_model": handle.name,
        "base_model_source": handle.source,
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        "hyperparameters": asdict(spec),
        "data": {
            "train": "assets/howto/*.md, assets/documents/*.md, assets/datasets/raw_web_sample.txt",
            "held_out": "assets/datasets/general_text.txt",
        },
        "fit": report,
        "metrics": held_out,  # each layer's KL on the held-out text, both lenses
    }
    tuned_lens.save(translators, args.out, meta)
    print(
        f"mean KL to the final distribution over layers 0-{len(held_out['kl_logit_lens']) - 2} on held-out text "
        f"({held_out['positions']} positions): logit lens {held_out['kl_logit_lens_mean']:.3f}, "
        f"tuned lens {held_out['kl_tuned_lens_mean']:.3f}; written to {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
