"""Inside the model: every figure against an independent computation with transformers on the same model."""

from __future__ import annotations

import math

import pytest
import torch

from pipelines import inside
from pipelines.errors import InvalidParameter

TEXT = "LLMs are cool, and unfriendly tokens split into pieces."


def reference_logits(handle, ids):
    with torch.inference_mode():
        return handle.model(input_ids=torch.tensor([ids])).logits[0].float()


def test_tokens_show_ids_pieces_and_chat_markers(tiny_handle):
    found = inside.tokens(tiny_handle.tokenizer, "unfriendly LLMs")
    ids = tiny_handle.tokenizer("unfriendly LLMs", add_special_tokens=False)["input_ids"]
    assert [t["id"] for t in found["tokens"]] == ids and found["count"] == len(ids) and found["characters"] == 15
    assert any(t["piece"].startswith("Ġ") for t in found["tokens"]), "byte-level BPE marks a leading space"
    assert "".join(t["text"] for t in found["tokens"]) == "unfriendly LLMs"
    chat = inside.tokens(tiny_handle.tokenizer, "hi", as_chat=True)
    assert any(t["special"] and t["piece"] == "<|im_start|>" for t in chat["tokens"])
    with pytest.raises(InvalidParameter, match="text: is empty"):
        inside.tokens(tiny_handle.tokenizer, "  ")


def test_perplexity_is_the_models_own_loss(tiny_handle):
    found = inside.perplexity(tiny_handle, TEXT)
    ids = tiny_handle.tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        loss = float(tiny_handle.model(input_ids=torch.tensor([ids]), labels=torch.tensor([ids])).loss)
    assert found["mean_loss"] == pytest.approx(loss, rel=1e-5)
    assert found["perplexity"] == pytest.approx(math.exp(loss), rel=1e-5)
    assert found["tokens"][0]["logprob"] is None and found["scored_tokens"] == len(ids) - 1
    assert found["total_logprob"] == pytest.approx(-loss * (len(ids) - 1), rel=1e-5)
    with pytest.raises(InvalidParameter, match="text: needs at least two tokens"):
        inside.perplexity(tiny_handle, "a")


def test_a_continuations_logprob_is_the_sum_over_its_tokens(tiny_handle):
    found = inside.score(tiny_handle, "LLMs are", " cool")
    tokenizer = tiny_handle.tokenizer
    prompt = tokenizer("LLMs are", add_special_tokens=False)["input_ids"]
    tail = tokenizer(" cool", add_special_tokens=False)["input_ids"]
    table = torch.log_softmax(reference_logits(tiny_handle, prompt + tail), dim=-1)
    expected = sum(float(table[len(prompt) - 1 + i, t]) for i, t in enumerate(tail))
    assert found["logprob"] == pytest.approx(expected, rel=1e-5) and found["prob"] == pytest.approx(math.exp(expected))
    first = table[len(prompt) - 1]
    assert found["rank"] == int((first > first[tail[0]]).sum()) + 1
    assert found["top_next"]["id"] == int(first.argmax())
    pair = inside.compare(tiny_handle, "LLMs are", " cool", " boring")
    assert pair["ratio"] == pytest.approx(math.exp(pair["first"]["logprob"] - pair["second"]["logprob"]))
    with pytest.raises(InvalidParameter, match="continuation: is empty"):
        inside.score(tiny_handle, "LLMs are", "")


def test_attention_rows_sum_to_one_and_are_causal(tiny_handle):
    sizes = inside.shape(tiny_handle)
    for head in (0, None):
        found = inside.attention(tiny_handle, TEXT, layer=sizes["layers"] - 1, head=head)
        weights = torch.tensor(found["weights"])
        assert weights.shape[0] == weights.shape[1] == len(found["tokens"])
        assert torch.allclose(weights.sum(dim=-1), torch.ones(weights.shape[0]), atol=1e-4)
        assert float(torch.triu(weights, diagonal=1).abs().max()) == 0.0
    with pytest.raises(InvalidParameter, match="layer: must be between 0 and"):
        inside.attention(tiny_handle, TEXT, layer=sizes["layers"], head=0)
    with pytest.raises(InvalidParameter, match="head: must be between 0 and"):
        inside.attention(tiny_handle, TEXT, layer=0, head=-1)
    with pytest.raises(InvalidParameter, match="prompt: is empty"):
        inside.attention(tiny_handle, "", layer=0)


def test_attention_leaves_the_models_kernel_as_it_was(tiny_handle):
    before = tiny_handle.model.config._attn_implementation
    inside.attention(tiny_handle, TEXT, layer=0, head=0)
    assert tiny_handle.model.config._attn_implementation == before


def test_the_last_lens_layer_is_the_models_own_prediction(tiny_handle):
    found = inside.lens(tiny_handle, TEXT)
    ids = [t["id"] for t in found["tokens"]]
    logits = reference_logits(tiny_handle, ids)
    assert len(found["layers"]) == inside.shape(tiny_handle)["layers"]
    assert [cell["id"] for cell in found["layers"][-1]] == logits.argmax(dim=-1).tolist()
    assert [cell["id"] for cell in found["final"]] == logits.argmax(dim=-1).tolist()
    probs = torch.softmax(logits, dim=-1).max(dim=-1).values
    assert [cell["prob"] for cell in found["layers"][-1]] == pytest.approx(probs.tolist(), abs=1e-5)
    assert found["final_prob"][-1] == pytest.approx(probs.tolist(), abs=1e-5)


def test_architecture_counts_every_parameter_once(tiny_handle):
    card = inside.architecture(tiny_handle, context=1024)
    model = tiny_handle.model
    assert card["total_params"] == sum(p.numel() for p in model.parameters())
    assert card["tree"]["params"] == card["total_params"]
    assert sum(part["params"] for part in card["parts"].values()) == card["total_params"]
    assert sum(part["share"] for part in card["parts"].values()) == pytest.approx(1.0)
    config = model.config
    kv = card["kv_cache"]
    head_dim = config.hidden_size // config.num_attention_heads
    assert kv["bytes_per_token"] == 2 * config.num_hidden_layers * config.num_key_value_heads * head_dim * 2
    assert kv["gqa_saving"] == config.num_attention_heads / config.num_key_value_heads
    assert kv["bytes_for_context"] == kv["bytes_per_token"] * 1024
    layers = next(c for c in card["tree"]["children"][0]["children"] if c["name"] == "layers")
    assert layers["children"][0]["repeat"] == config.num_hidden_layers
    with pytest.raises(InvalidParameter, match="context"):
        inside.architecture(tiny_handle, context=0)


def test_an_over_long_text_is_refused_naming_the_parameter(tiny_handle):
    with pytest.raises(InvalidParameter, match="text: is .* tokens; these views take at most"):
        inside.perplexity(tiny_handle, "word " * 2000)


def test_the_views_follow_the_sidebars_adapter(fresh_tiny_handle, tokenizer, data_dir):
    """With a LoRA adapter the numbers are the adapted model's, and the base is untouched after."""
    from peft import PeftModel

    from tests.helpers import build_tiny_model, make_lora_adapter

    path = make_lora_adapter(tokenizer, data_dir / "adapters", "style", seed=4)
    base_loss = inside.perplexity(fresh_tiny_handle, TEXT)["mean_loss"]
    adapted = inside.perplexity(fresh_tiny_handle, TEXT, adapter="style")
    ids = tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    reference = PeftModel.from_pretrained(build_tiny_model(tokenizer), path).eval()
    with torch.inference_mode():
        expected = float(reference(input_ids=torch.tensor([ids]), labels=torch.tensor([ids])).loss)
    assert adapted["mean_loss"] == pytest.approx(expected, rel=1e-4) and adapted["mean_loss"] != pytest.approx(
        base_loss
    )
    weights = inside.attention(fresh_tiny_handle, TEXT, layer=0, head=1, adapter="style")["weights"]
    assert float(torch.triu(torch.tensor(weights), diagonal=1).abs().max()) == 0.0
    assert inside.lens(fresh_tiny_handle, TEXT, adapter="style")["final"][-1]["id"] == int(
        reference(input_ids=torch.tensor([ids])).logits[0, -1].argmax()
    )
    assert inside.perplexity(fresh_tiny_handle, TEXT)["mean_loss"] == pytest.approx(base_loss, rel=1e-6)
    card = inside.architecture(fresh_tiny_handle)
    assert card["total_params"] == sum(p.numel() for p in build_tiny_model(tokenizer).parameters())
