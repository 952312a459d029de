"""The compression lab (issue 38, compression): the same model stored in fewer bits, or with
weights removed, measured live on this machine -- what it saves and what it costs.

Every variant is built from a fresh fp32 copy of the app's base model (the shared one is never
touched), then measured the same way:

- **size**: the bytes its weights take when saved (`torch.save` of the state dict for the torch
  variants; GGUF's block layout for the GGUF ones: 32 weights share one scale (Q8_0, Q4_0) or a
  scale and a minimum (Q4_1), so Q8_0 is 8.5 bits per weight, Q4_0 4.5 and Q4_1 5);
- **tokens/s**: greedy decoding of `new_tokens` tokens on the CPU with the KV cache, after a
  warm-up; the GGUF rows are timed only by llama.cpp itself (`make llamacpp`), since their point
  is llama.cpp's kernels -- in torch they would run as fp32;
- **perplexity** on the same text, and **greedy agreement**: the share of positions of that text
  where the variant's most likely next token is the fp32 model's.

The GGUF rows round the linear layers' weights exactly as `gguf`'s quantizers store them (the
embedding as Q8_0, the norms in fp32, as the bundled file does) and compute in fp32, so their
perplexity is the weights' error alone; llama.cpp also rounds activations to 8 bits in its dot
products, which moves perplexity a little more. The bundled model itself ships as Q4_1: its fp32
reference *is* those 4-bit weights widened, so the Q4_1 row matches it exactly and the other rows
measure what a second rounding does.

**Pruning** zeroes the smallest-magnitude weights of the linear layers over the whole model
(global L1 pruning: the cut found once over every weight, applied with `torch.nn.utils.prune`),
measured at each sparsity on the same text.
"""

from __future__ import annotations

import copy
import io
import math
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines import knobs
from pipelines.engine import model_structure
from pipelines.errors import InvalidParameter
from pipelines.knobs import knob

from . import InsideError

VARIANTS = ("fp32", "bf16", "fp16", "int8_weights", "int8_dynamic", "q8_0", "q4_1", "q4_0")
DESCRIBED = {
    "fp32": "32-bit floats: the reference",
    "bf16": "bfloat16: fp32's range, 8 bits of mantissa",
    "fp16": "float16: 11 bits of mantissa, a narrow range",
    "int8_weights": "int8 weights only: one fp32 scale per output channel, computed in fp32",
    "int8_dynamic": "int8 dynamic quantization (torch): weights as int8_weights, and each layer's input "
    "rounded to 8 bits at run time (one scale per tensor)",
    "q8_0": "GGUF Q8_0: 32 weights share one fp16 scale, 8 bits each",
    "q4_1": "GGUF Q4_1: 32 weights share a scale and a minimum, 4 bits each",
    "q4_0": "GGUF Q4_0: 32 weights share one scale, 4 bits each (symmetric)",
}
GGUF_TYPES = {"q8_0": "Q8_0", "q4_1": "Q4_1", "q4_0": "Q4_0"}
MAX_TEXT_TOKENS = 1024
MAX_PARAMETERS = 2_000_000_000  # each variant is a full copy of the model in memory
MAX_SPARSITIES = 12
_RUNNING = threading.Lock()  # one measurement at a time: each one uses every core and a copy of the model


def _prompt_knob(help_text: str) -> Any:
    return knob("Photosynthesis is", help=help_text, label="Prompt")


def _text_knob(help_text: str) -> Any:
    return knob(None, help=help_text, label="Text", ui="a textbox of the panel", metavar="TEXT")


def _check_prompt(prompt: str, what: str) -> None:
    if not (prompt or "").strip():
        raise InvalidParameter("prompt", f"is empty: give a few words for {what} to continue")


@contextmanager
def _exclusive() -> Iterator[None]:
    """One measurement at a time (each uses every core and a copy of the model): a second is refused."""
    if not _RUNNING.acquire(blocking=False):
        raise InsideError("the compression lab is measuring for someone else; try again in a minute")
    try:
        yield
    finally:
        _RUNNING.release()


@dataclass(frozen=True)
class CompressSpec:
    """What the lab measures: which variants, on which text, timed over how many tokens."""

    variants: list[str] = knob(
        default_factory=lambda: list(VARIANTS),
        help=f"the variants to measure, among {', '.join(VARIANTS)} (fp32 is always measured: the reference)",
        label="Variants",
        metavar="NAME",
    )
    new_tokens: int = knob(
        32, help="tokens generated greedily to time each variant", label="Timed tokens", low=4, high=256
    )
    prompt: str = _prompt_knob("the prompt each variant continues greedily")
    text: str | None = _text_knob(
        "the text perplexity and agreement are measured on (default: the bundled general text)"
    )

    def __post_init__(self) -> None:
        knobs.check(self)
        knobs.check_names("variants", self.variants, VARIANTS, at_least_one=False)  # fp32 is always measured
        _check_prompt(self.prompt, "each variant")
        chosen = ["fp32", *(name for name in VARIANTS if name in self.variants and name != "fp32")]
        object.__setattr__(self, "variants", chosen)


@dataclass(frozen=True)
class PruneSpec:
    """The sparsities at which pruning is measured."""

    sparsities: list[float] = knob(
        default_factory=lambda: [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7],
        help="shares of the linear layers' weights set to zero, smallest magnitudes first (0 to 0.99)",
        label="Sparsities",
        metavar="X",
    )
    prompt: str = _prompt_knob("the prompt each pruned model continues greedily")
    new_tokens: int = knob(24, help="tokens generated greedily at each sparsity", label="Tokens", low=1, high=256)
    text: str | None = _text_knob("the text perplexity is measured on (default: the bundled general text)")

    def __post_init__(self) -> None:
        knobs.check(self)
        try:
            values = sorted({round(float(value), 4) for value in self.sparsities})
        except (TypeError, ValueError) as error:
            raise InvalidParameter(
                "sparsities", f"must be numbers between 0 and 0.99, got {self.sparsities!r}"
            ) from error
        if not values or len(values) > MAX_SPARSITIES or not all(0 <= v <= 0.99 for v in values):
            raise InvalidParameter("sparsities", f"give 1 to {MAX_SPARSITIES} numbers between 0 and 0.99")
        _check_prompt(self.prompt, "the pruned model")
        object.__setattr__(self, "sparsities", values)


# --- the model copies --------------------------------------------------------------------------


@dataclass
class _Reference:
    """The fp32 copy, the tokenized text, and what the fp32 model predicts on it."""

    model: Any
    tokenizer: Any
    ids: Any  # [1, positions]
    prompt_ids: Any
    top: Any = None  # fp32's most likely next token at each position


def _fresh_copy(handle: Any) -> Any:
    """The base model reloaded in fp32 on the CPU from its own files: no adapter, no shared state."""
    import torch
    from transformers import AutoModelForCausalLM

    count = int(getattr(handle, "parameter_count", 0) or 0)
    if count > MAX_PARAMETERS:
        raise InsideError(
            f"the compression lab copies the model once per variant; {count / 1e9:.1f}B parameters is more than "
            f"{MAX_PARAMETERS / 1e9:.0f}B this lab allows"
        )
    source = str(getattr(handle, "source", "") or "")
    if Path(source).is_dir():
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32, local_files_only=True)
    else:  # a model built in this process: copy it, without the adapters peft put inside it
        with handle.lock:  # not under inference mode: the copy's weights are changed in place later
            model = copy.deepcopy(handle.model)
        from peft import PeftModel

        if isinstance(model, PeftModel):
            model = model.base_model.unload() if hasattr(model.base_model, "unload") else model.get_base_model()
    return model.to(device="cpu", dtype=torch.float32).eval()


def _text_ids(tokenizer: Any, text: str | None) -> Any:
    import torch

    from pipelines.train.evaluation import general_text

    chosen = general_text() if text is None else text
    if not chosen.strip():
        raise InvalidParameter("text", "is empty: give a paragraph to measure perplexity on")
    ids = tokenizer(chosen, add_special_tokens=False)["input_ids"][:MAX_TEXT_TOKENS]
    if len(ids) < 2:
        raise InvalidParameter("text", "needs at least two tokens: the first one is never predicted")
    return torch.tensor([ids])


def _reference(handle: Any, prompt: str, text: str | None) -> _Reference:
    tokenizer = handle.tokenizer
    ids = _text_ids(tokenizer, text)
    prompt_ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    return _Reference(model=_fresh_copy(handle), tokenizer=tokenizer, ids=ids, prompt_ids=prompt_ids)


def _linears(model: Any) -> list[Any]:
    """The linear layers of the blocks: what quantization and pruning act on (not the output head)."""
    return [module for _, module in model_structure.linear_layers(model)]


def _quality(model: Any, reference: _Reference) -> dict[str, Any]:
    """Perplexity on the text and, against fp32, the share of positions with the same top token."""
    import torch

    with torch.inference_mode():
        logits = model(reference.ids).logits[0, :-1].float()
    targets = reference.ids[0, 1:]
    chosen = torch.log_softmax(logits, dim=-1).gather(1, targets[:, None])[:, 0]
    top = logits.argmax(dim=-1)
    agreement = 1.0 if reference.top is None else float((top == reference.top).float().mean())
    return {"perplexity": math.exp(float(-chosen.mean())), "greedy_agreement": agreement, "top": top}


def _continued(model: Any, reference: _Reference, new_tokens: int) -> tuple[float, str]:
    """Tokens per second of greedy decoding with the KV cache (after a warm-up), and the text."""
    import torch

    tokenizer = reference.tokenizer
    options = {
        "attention_mask": torch.ones_like(reference.prompt_ids),
        "do_sample": False,
        "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
    }
    with torch.inference_mode():
        model.generate(reference.prompt_ids, max_new_tokens=2, **options)  # first-call costs are not speed
        start = time.perf_counter()
        out = model.generate(reference.prompt_ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, **options)
        seconds = time.perf_counter() - start
    new = out[0, reference.prompt_ids.shape[1] :]
    return len(new) / seconds, tokenizer.decode(new, skip_special_tokens=True)


def _serialized_mb(model: Any) -> float:
    """The state dict's bytes as `torch.save` writes them (tied weights stored once)."""
    import torch

    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell() / 1e6


# --- GGUF --------------------------------------------------------------------------------------


def _block(type_name: str) -> tuple[int, int]:
    """(weights per block, bytes per block) of a GGUF type."""
    import gguf

    kind = gguf.GGMLQuantizationType[type_name]
    return gguf.GGML_QUANT_SIZES[kind]


def _gguf_round(weight: Any, type_name: str) -> bool:
    """Round a weight in place exactly as GGUF stores it in that type; False when its rows do not
    split into whole blocks (llama.cpp keeps such a tensor unquantized)."""
    import gguf.quants
    import torch

    block, _ = _block(type_name)
    if weight.shape[-1] % block:
        return False
    kind = gguf.GGMLQuantizationType[type_name]
    values = weight.detach().cpu().float().numpy()
    rounded = gguf.quants.dequantize(gguf.quants.quantize(values, kind), kind)
    with torch.no_grad():
        weight.copy_(torch.from_numpy(rounded.reshape(values.shape)))
    return True


def _gguf_bytes(model: Any, type_name: str) -> float:
    """The tensor data of the model as a GGUF file of that type holds it: the linear layers in the
    type, the embedding (and an untied output head) in Q8_0 as the bundled file, the rest fp32."""
    linear = {id(module.weight) for module in _linears(model)}
    embedding = {
        id(module.weight) for module in (model.get_input_embeddings(), model.get_output_embeddings()) if module
    }
    total, seen = 0.0, set()
    for parameter in model.parameters():
        if id(parameter) in seen:
            continue
        seen.add(id(parameter))
        kind = "Q8_0" if id(parameter) in embedding else type_name if id(parameter) in linear else None
        if kind is not None and parameter.shape[-1] % _block(kind)[0] == 0:
            block, size = _block(kind)
            total += parameter.numel() / block * size
        else:
            total += parameter.numel() * 4
    return total


def _gguf_facts(gguf_file: Path) -> tuple[float, str]:
    """A GGUF file's bytes beyond its tensor data (metadata, the tokenizer's vocabulary, padding), and
    the type most of its weights are stored in (its linear layers'): one read of the file."""
    from collections import Counter

    import gguf

    reader = gguf.GGUFReader(gguf_file)
    overhead = float(gguf_file.stat().st_size - sum(int(tensor.n_bytes) for tensor in reader.tensors))
    kinds = Counter(tensor.tensor_type.name for tensor in reader.tensors if len(tensor.shape) == 2)
    return overhead, kinds.most_common(1)[0][0]


def _source_gguf(handle: Any) -> Path | None:
    """The GGUF file behind the app's model: the bundled file it was converted from, or the only
    .gguf in its model directory (as the llama.cpp engine finds it)."""
    from pipelines.engine.llamacpp_engine import gguf_for
    from pipelines.engine.model_source import converted_from

    source = str(getattr(handle, "source", "") or "")
    return gguf_for(source, converted_from(Path(source))) if source else None


def _llamacpp_speed(gguf_file: Path | None, reference: _Reference, new_tokens: int) -> float | None:
    """Greedy tokens per second of llama.cpp on the GGUF file, through the app's llama.cpp engine."""
    import torch

    from pipelines.engine import llamacpp_engine

    if gguf_file is None or not llamacpp_engine.available():
        return None
    engine = llamacpp_engine.LlamaCppEngine(
        gguf_file, n_ctx=512, threads=torch.get_num_threads(), n_vocab=len(reference.tokenizer)
    )
    try:
        ids = reference.prompt_ids[0].tolist()
        ids.append(int(engine.next_logits(ids).argmax()))  # warm-up: the prompt is read once
        start = time.perf_counter()
        for _ in range(new_tokens):
            ids.append(int(engine.next_logits(ids).argmax()))
        return new_tokens / (time.perf_counter() - start)
    finally:
        engine.close()


def _gguf_speed(
    name: str, source_gguf: Path | None, file_type: str | None, reference: _Reference, spec: CompressSpec
) -> tuple[Any, str]:
    """llama.cpp's tokens/s on the GGUF file of that type, when the file is here and llama.cpp is installed."""
    from pipelines.engine import llamacpp_engine

    if not llamacpp_engine.available():
        return None, "not timed: GGUF runs in llama.cpp, which is not installed here (`make llamacpp`)"
    if source_gguf is None or file_type != GGUF_TYPES[name]:
        return None, "not timed: llama.cpp times GGUF files, and the model's own file is of another type"
    return _llamacpp_speed(source_gguf, reference, spec.new_tokens), f"llama.cpp on {source_gguf.name}"


def _int8_bytes(model: Any) -> float:
    """Weight-only int8: a byte per weight and an fp32 scale per output channel for the linear
    layers; the rest in fp32."""
    linear = {id(module.weight) for module in _linears(model)}
    return float(
        sum(
            parameter.numel() + 4 * parameter.shape[0] if id(parameter) in linear else 4 * parameter.numel()
            for parameter in model.parameters()
        )
    )


# --- the variants ------------------------------------------------------------------------------


def _variant(name: str, reference: _Reference) -> Any:
    """The variant's model, built from a copy of the fp32 reference."""
    import torch

    if name == "fp32":
        return reference.model
    model = copy.deepcopy(reference.model)
    if name in ("bf16", "fp16"):
        return model.to(torch.bfloat16 if name == "bf16" else torch.float16)
    if name == "int8_weights":
        with torch.no_grad():
            for module in _linears(model):
                scale = module.weight.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127
                module.weight.copy_((module.weight / scale).round().clamp(-127, 127) * scale)
        return model
    if name == "int8_dynamic":
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        blocks = {path: per_channel_dynamic_qconfig for path, _ in model_structure.linear_layers(model)}
        with warnings.catch_warnings():  # torch.ao's eager quantization is deprecated for torchao, still the lesson
            warnings.simplefilter("ignore")
            return quantize_dynamic(model, blocks, dtype=torch.qint8)
    kind = GGUF_TYPES[name]
    for module in _linears(model):
        _gguf_round(module.weight, kind)
    _gguf_round(model.get_input_embeddings().weight, "Q8_0")
    return model


def measure_variants(handle: Any, spec: CompressSpec) -> Iterator[dict[str, Any]]:
    """One row per variant, fp32 first, as each is measured (a panel shows them as they come)."""
    with _exclusive():
        reference = _reference(handle, spec.prompt, spec.text)
        source_gguf = _source_gguf(handle)
        overhead, file_type = _gguf_facts(source_gguf) if source_gguf is not None else (0.0, None)
        for name in spec.variants:
            model = _variant(name, reference)
            quality = _quality(model, reference)
            if name == "fp32":
                reference.top = quality["top"]
            row: dict[str, Any] = {"name": name, "described": DESCRIBED[name]}
            if name in GGUF_TYPES:
                row["size_mb"] = (_gguf_bytes(reference.model, GGUF_TYPES[name]) + overhead) / 1e6
                row["tokens_per_second"], row["timed_by"] = _gguf_speed(name, source_gguf, file_type, reference, spec)
                _, row["sample"] = _continued(model, reference, spec.new_tokens)
            elif name == "int8_weights":
                row["size_mb"] = _int8_bytes(reference.model) / 1e6
                row["tokens_per_second"] = None
                row["timed_by"] = (
                    "not timed: the weights are widened to fp32 to compute (torch's CPU build has no weight-only "
                    "int8 kernel); llama.cpp's Q8_0 is such a kernel"
                )
                _, row["sample"] = _continued(model, reference, spec.new_tokens)
            else:
                row["size_mb"] = _serialized_mb(model)
                row["tokens_per_second"], row["sample"] = _continued(model, reference, spec.new_tokens)
                row["timed_by"] = "torch on the CPU"
            row["perplexity"] = quality["perplexity"]
            row["greedy_agreement"] = quality["greedy_agreement"]
            row["text_tokens"] = int(reference.ids.shape[1])
            del model
            yield row


def compress(handle: Any, spec: CompressSpec) -> dict[str, Any]:
    """Every variant measured: the contract of `python -m pipelines compress --json`."""
    rows = list(measure_variants(handle, spec))
    return {
        "model": getattr(handle, "name", None),
        "reference": "fp32",
        "text_tokens": rows[0]["text_tokens"],
        "new_tokens": spec.new_tokens,
        "variants": rows,
    }


# --- pruning -----------------------------------------------------------------------------------


def measure_pruning(handle: Any, spec: PruneSpec) -> Iterator[dict[str, Any]]:
    """One row per sparsity: global magnitude pruning of the linear layers, then perplexity, agreement
    with the unpruned model and a greedy continuation."""
    import torch

    with _exclusive():
        reference = _reference(handle, spec.prompt, spec.text)
        model = reference.model
        reference.top = _quality(model, reference)["top"]
        targets = [(module, "weight") for module in _linears(model)]
        originals = [module.weight.detach().clone() for module, _ in targets]
        total = sum(weight.numel() for weight in originals)
        for sparsity in spec.sparsities:
            if sparsity > 0:
                _prune_globally(targets, sparsity)
            zeros = sum(int((module.weight == 0).sum()) for module, _ in targets)
            quality = _quality(model, reference)
            _, sample = _continued(model, reference, spec.new_tokens)
            yield {
                "sparsity": sparsity,
                "zero_share": zeros / total,
                "perplexity": quality["perplexity"],
                "greedy_agreement": quality["greedy_agreement"],
                "sample": sample,
            }
            with torch.no_grad():
                for (module, _), weight in zip(targets, originals, strict=True):
                    module.weight.copy_(weight)


def _prune_globally(targets: list[tuple[Any, str]], sparsity: float) -> None:
    """Zero the `sparsity` share of smallest |w| over all the layers together (global L1 pruning).

    `prune.global_unstructured` finds the cut with a top-k over every weight (7 s for 106M weights
    on 2 cores); the k-th smallest magnitude is the same cut in 1.4 s, then torch's pruning applies
    the masks. Ties at the cut are all pruned: `zero_share` reports what was.
    """
    import torch
    from torch.nn.utils import prune

    magnitudes = torch.cat([module.weight.detach().abs().flatten() for module, _ in targets])
    cut = float(torch.kthvalue(magnitudes, max(1, int(round(sparsity * magnitudes.numel())))).values)
    del magnitudes
    for module, name in targets:
        prune.custom_from_mask(module, name, module.weight.detach().abs() > cut)
        prune.remove(module, name)  # the zeros become the weights (no mask hook at inference)


def pruning(handle: Any, spec: PruneSpec) -> dict[str, Any]:
    rows = list(measure_pruning(handle, spec))
    return {"model": getattr(handle, "name", None), "pruned": "linear layers (not the embedding)", "curve": rows}


# --- a distilled student beside its teacher ------------------------------------------------------


@dataclass(frozen=True)
class StudentSpec:
    """Which distilled student is compared with the model it was distilled from."""

    student: str = knob(
        "distilled-student",
        help="a distilled student: the bundled one or one trained with `python -m pipelines distill`",
        label="Student",
        metavar="NAME",
    )
    new_tokens: int = knob(32, help="tokens generated greedily to time each", label="Timed tokens", low=4, high=256)
    prompt: str = _prompt_knob("the prompt each continues greedily")
    text: str | None = _text_knob(
        "the text perplexity and agreement are measured on (default: the bundled general text)"
    )

    def __post_init__(self) -> None:
        knobs.check(self)
        _check_prompt(self.prompt, "each model")


def measure_student(handle: Any, spec: StudentSpec) -> Iterator[dict[str, Any]]:
    """The teacher (fp32), the student cut from it before distillation, and the distilled student
    (its LoRA merged): parameters, size, speed, perplexity and agreement with the teacher, measured
    on the same text as the other variants."""
    from peft import PeftModel

    from pipelines.train import distill

    path = distill.find(spec.student)
    keep = distill.kept_blocks(path)
    with _exclusive():
        reference = _reference(handle, spec.prompt, spec.text)
        teacher = reference.model
        blocks = len(model_structure.decoder_blocks(teacher))
        if max(keep) >= blocks:
            raise InsideError(f"{spec.student} keeps blocks up to {max(keep)}, and this model has {blocks}")
        cut = distill.cut(copy.deepcopy(teacher), keep)
        distilled = PeftModel.from_pretrained(distill.cut(copy.deepcopy(teacher), keep), str(path)).merge_and_unload()
        shown = (
            ("teacher", teacher, f"the model itself, fp32: {blocks} blocks"),
            ("cut", cut, f"{len(keep)} of its {blocks} blocks kept (highest Block Influence), not trained"),
            ("distilled", distilled, f"the same {len(keep)} blocks after distillation ({spec.student})"),
        )
        for name, model, described in shown:
            quality = _quality(model, reference)
            if name == "teacher":
                reference.top = quality["top"]
            speed, sample = _continued(model, reference, spec.new_tokens)
            yield {
                "name": name,
                "described": described,
                "parameters": model_structure.parameter_count(model),
                "size_mb": _serialized_mb(model),
                "tokens_per_second": speed,
                "perplexity": quality["perplexity"],
                "greedy_agreement": quality["greedy_agreement"],
                "sample": sample,
            }


def student_comparison(handle: Any, spec: StudentSpec) -> list[dict[str, Any]]:
    return list(measure_student(handle, spec))


# --- adapters at inference ---------------------------------------------------------------------


@dataclass(frozen=True)
class AdapterCostSpec:
    """The adapters compared: LoRA's rank and the bottleneck adapter's width."""

    lora_r: int = knob(8, help="LoRA rank, on every linear layer of the blocks", label="LoRA rank", low=1, high=256)
    bottleneck: int = knob(
        64,
        help="the bottleneck adapter's inner width (Houlsby et al. 2019)",
        label="Bottleneck width",
        low=1,
        high=1024,
    )
    new_tokens: int = knob(32, help="tokens generated greedily to time each", label="Timed tokens", low=4, high=256)
    prompt: str = _prompt_knob("the prompt each continues greedily")

    def __post_init__(self) -> None:
        knobs.check(self)
        _check_prompt(self.prompt, "each model")


class Bottleneck:
    """Houlsby et al. 2019's adapter after a sublayer: h + W_up(GELU(W_down(h))), W_up zero at first
    so the model starts unchanged. Added to a block's attention and MLP outputs by forward hooks:
    no library for transformers 5 ships this adapter (peft has none; AdapterHub needs transformers 4)."""

    def __init__(self, hidden: int, width: int) -> None:
        import torch

        self.down = torch.nn.Linear(hidden, width)
        self.up = torch.nn.Linear(width, hidden)
        torch.nn.init.zeros_(self.up.weight)
        torch.nn.init.zeros_(self.up.bias)

    def parameters(self) -> int:
        return sum(p.numel() for layer in (self.down, self.up) for p in layer.parameters())

    def hook(self, _module: Any, _inputs: Any, output: Any) -> Any:
        import torch

        hidden = output[0] if isinstance(output, tuple) else output
        changed = hidden + self.up(torch.nn.functional.gelu(self.down(hidden)))
        return (changed, *output[1:]) if isinstance(output, tuple) else changed


def _with_bottlenecks(model: Any, width: int) -> tuple[int, list[Any]]:
    """Bottleneck adapters after every block's attention and MLP; (their parameters, the hooks)."""
    hidden = int(model.config.hidden_size)
    count, hooks = 0, []
    for layer in model_structure.decoder_blocks(model):
        for sublayer in (layer.self_attn, layer.mlp):
            adapter = Bottleneck(hidden, width)
            count += adapter.parameters()
            hooks.append(sublayer.register_forward_hook(adapter.hook))
    return count, hooks


def measure_adapters(handle: Any, spec: AdapterCostSpec) -> Iterator[dict[str, Any]]:
    """The base model, LoRA unmerged and merged, and bottleneck adapters: what each trains and what
    it costs per generated token. All start as the identity (LoRA's B and the adapters' W_up are
    zero), so the texts agree and only the speed differs."""
    from peft import LoraConfig, get_peft_model

    from pipelines.train.training import DEFAULT_TARGETS

    with _exclusive():
        reference = _reference(handle, spec.prompt, None)
        base = reference.model
        total = model_structure.parameter_count(base)
        speed, sample = _continued(base, reference, spec.new_tokens)
        yield {"name": "base", "trainable": 0, "share": 0.0, "tokens_per_second": speed, "sample": sample}
        targets = model_structure.linear_layer_types(base, DEFAULT_TARGETS)  # every linear layer type, as Fine-tune
        config = LoraConfig(r=spec.lora_r, lora_alpha=2 * spec.lora_r, target_modules=targets)
        lora = get_peft_model(copy.deepcopy(base), config)
        trainable = sum(p.numel() for p in lora.parameters() if p.requires_grad)
        speed, sample = _continued(lora, reference, spec.new_tokens)
        yield {
            "name": f"LoRA r={spec.lora_r}, unmerged",
            "trainable": trainable,
            "share": trainable / total,
            "tokens_per_second": speed,
            "sample": sample,
        }
        merged = lora.merge_and_unload()
        speed, sample = _continued(merged, reference, spec.new_tokens)
        yield {
            "name": f"LoRA r={spec.lora_r}, merged into the weights",
            "trainable": trainable,
            "share": trainable / total,
            "tokens_per_second": speed,
            "sample": sample,
        }
        del merged, lora
        count, hooks = _with_bottlenecks(base, spec.bottleneck)
        try:
            speed, sample = _continued(base, reference, spec.new_tokens)
        finally:
            for hook in hooks:
                hook.remove()
        yield {
            "name": f"bottleneck adapters, width {spec.bottleneck} (Houlsby)",
            "trainable": count,
            "share": count / total,
            "tokens_per_second": speed,
            "sample": sample,
        }


def adapter_costs(handle: Any, spec: AdapterCostSpec) -> list[dict[str, Any]]:
    return list(measure_adapters(handle, spec))
