"""Rows with different LoRA adapters in one pass, each row's adapter gathered (pipelines/engine/mixed_lora.py):
the same logits as each row alone with its adapter, and PEFT's own mixed batch where it cannot gather."""

from __future__ import annotations

import json

import torch

from pipelines.engine import generation
from pipelines.engine.sampling import SamplingParams
from tests.helpers import build_tiny_model, make_lora_adapter

PROMPT = "The lesson today is about"


def _adapter(tokenizer, root, name: str, *, r: int, targets: list[str], seed: int, dora: bool = False) -> None:
    """A random LoRA adapter of its own rank and target layers (DoRA when asked)."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    config = LoraConfig(r=r, lora_alpha=2 * r, target_modules=targets, init_lora_weights=False, use_dora=dora)
    model = get_peft_model(build_tiny_model(tokenizer), config)
    with torch.no_grad():
        for param_name, param in model.named_parameters():
            if "lora_B" in param_name:
                param.normal_(0, 0.5)
    model.save_pretrained(root / name)
    (root / name / "meta.json").write_text(json.dumps({"base_model": "tiny-llama", "kind": "lora"}))


def _logits(handle, adapter):
    ids = handle.tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    rows = ids.expand(len(adapter), -1) if isinstance(adapter, list) else ids
    with torch.inference_mode():
        return handle.forward(input_ids=rows, adapter=adapter).logits[:, -1]


def _pefts_mixed_batch(monkeypatch) -> list:
    """Calls of PEFT's own mixed-batch path, counted."""
    from peft.tuners.lora.layer import Linear

    calls: list = []
    original = Linear._mixed_batch_forward
    monkeypatch.setattr(Linear, "_mixed_batch_forward", lambda *a, **k: calls.append(1) or original(*a, **k))
    return calls


def test_each_row_gets_its_own_adapter_of_any_rank_and_targets(fresh_tiny_handle, tokenizer, data_dir, monkeypatch):
    root = data_dir / "adapters"
    make_lora_adapter(tokenizer, root, "alice", seed=1)  # r=4 on q, v, down
    _adapter(tokenizer, root, "bob", r=8, targets=["k_proj", "o_proj", "gate_proj", "up_proj"], seed=2)
    _adapter(tokenizer, root, "carol", r=2, targets=["q_proj", "v_proj"], seed=3)
    row_adapters = [None, "alice", "bob", "carol", "alice"]
    alone = torch.cat([_logits(fresh_tiny_handle, a) for a in row_adapters])
    peft_calls = _pefts_mixed_batch(monkeypatch)
    together = _logits(fresh_tiny_handle, row_adapters)
    assert torch.allclose(together, alone, atol=1e-4, rtol=1e-4), float((together - alone).abs().max())
    assert not peft_calls  # gathered, not PEFT's loop over the adapters
    assert not torch.allclose(alone[0], alone[1])  # the adapters really change the rows
    # and nothing of the pass is left behind: the base model and a single adapter are exact again
    assert torch.equal(_logits(fresh_tiny_handle, None)[0], alone[0])
    assert torch.equal(_logits(fresh_tiny_handle, "bob")[0], alone[2])


def test_a_class_of_adapters_decodes_in_one_batch_as_each_alone(fresh_tiny_handle, tokenizer, data_dir):
    root = data_dir / "adapters"
    for i in range(4):
        make_lora_adapter(tokenizer, root, f"student-{i}", seed=10 + i)
    greedy = SamplingParams(temperature=0, max_new_tokens=8)
    row_adapters = [f"student-{i}" for i in range(4)] + [None]
    prompts = [f"Student {i} asks about tokens" for i in range(5)]
    alone = [
        generation.generate(fresh_tiny_handle, p, greedy, adapter=a, ignore_eos=True).completion_ids
        for p, a in zip(prompts, row_adapters, strict=True)
    ]
    rows = generation.generate_batch(fresh_tiny_handle, prompts, [greedy] * 5, adapter=row_adapters, ignore_eos=True)
    assert [r.completion_ids for r in rows] == alone


def test_a_dora_adapter_cannot_share_a_batch_and_leaves_the_model_as_it_was(fresh_tiny_handle, tokenizer, data_dir):
    """DoRA rescales the adapted weight by its norm: not a gathered matmul, and PEFT's mixed batch refuses it
    from inside its forward, leaving its per-row hooks on the model (every later pass then failed)."""
    import pytest

    from pipelines.engine.models import ModelUnavailable

    root = data_dir / "adapters"
    make_lora_adapter(tokenizer, root, "plain", seed=1)
    _adapter(tokenizer, root, "weighted", r=4, targets=["q_proj", "v_proj"], seed=4, dora=True)
    _logits(fresh_tiny_handle, "weighted")  # alone it works
    with pytest.raises(ModelUnavailable, match="'weighted' uses DoRA"):
        _logits(fresh_tiny_handle, ["plain", "weighted", None])
    plain = _logits(fresh_tiny_handle, ["plain", None])  # without it, the batch is gathered again
    assert torch.allclose(plain, torch.cat([_logits(fresh_tiny_handle, a) for a in ("plain", None)]), atol=1e-4)
