"""What a capsule holds, how it is sealed, written and read back.

A capsule is made from what actually ran: the prompt's token ids (not only its text, so a changed
tokenizer or template is caught instead of silently giving other tokens), the seed the generator
was given (a fresh one is recorded too), the sampler chain in the order `sampling.process_logits`
applies it, the base weights' SHA-256, the adapter's files' SHA-256, the engine that decoded, and
the machine kind and thread count (float sums differ between AVX2 and AVX-512 kernels, and between
thread counts). The seal is a SHA-256 over the rest, so an edited capsule is refused instead of
replayed as if it were the original.
"""

from __future__ import annotations

import hashlib
import json
import platform
import threading
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from pipelines.errors import PlaygroundError
from pipelines.store.snapshots import sha256_of

FORMAT = 1
# "command": a deterministic view or evaluation of the CLI (inspect, compress, scale, reward eval|score,
# align eval, reason bench), kept as its arguments, its input files' SHA-256 and the JSON it printed
# "comparison": Generate's two settings side by side on one prompt, decoded in one batch
KINDS = ("generate", "chat", "rag", "reasoning", "job", "command", "comparison")
MAX_BYTES = 16 * 2**20  # a capsule holds prompt ids and results: a few hundred KB at most in practice
LIBRARIES = ("torch", "transformers", "peft", "trl", "tokenizers", "gradio", "sentence-transformers", "faiss-cpu")


class CapsuleError(PlaygroundError, ValueError):
    """A capsule that cannot be read or trusted, or one this app cannot replay; the message says which."""


# --- facts about what ran ------------------------------------------------------------------------

_digests: dict[tuple[int, str], str] = {}
_digest_lock = threading.Lock()


def weights_sha256(handle: Any) -> str:
    """SHA-256 over the base model's tensors (`training.weights_digest`: names, dtypes, shapes, bytes),
    adapters' layers left out.

    Computed once per loaded model (~0.5 s for 135M parameters): a capsule names the weights, not
    a file, so a converted copy of the same weights is the same model and a fine-tuned one is not.
    """
    key = (id(handle.model), handle.name)
    with _digest_lock:
        if key not in _digests:
            from pipelines.train.training import weights_digest

            model = handle.model
            base = model.get_base_model() if hasattr(model, "get_base_model") else model
            tensors = {
                name: tensor
                for name, tensor in base.state_dict().items()
                if not any(part in name for part in ("lora_", "modules_to_save", "prompt_encoder"))
            }
            _digests[key] = weights_digest(tensors)
        return _digests[key]


def files_sha256(folder: Path) -> str:
    """SHA-256 over a folder's files (relative names and bytes), in name order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def weights_files_sha256(folder: Path) -> str:
    """SHA-256 over a result folder's weight files (*.safetensors): its metadata (dates, timings) left out."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*.safetensors")):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + sha256_of(path).encode())
    return digest.hexdigest()


def adapter_facts(name: str | None) -> dict[str, str] | None:
    if not name:
        return None
    from pipelines.engine import adapters

    return {"name": name, "sha256": files_sha256(adapters.get(name).path)}


def template_sha256(tokenizer: Any) -> str | None:
    template = getattr(tokenizer, "chat_template", None)
    return hashlib.sha256(template.encode()).hexdigest() if isinstance(template, str) else None


def machine() -> dict[str, Any]:
    """What decides the floating-point sums: the CPU's vector kind, the thread count, the device."""
    import torch

    from pipelines.engine import hardware

    hw = hardware.detect()
    flags = hw.cpu_flags
    kind = (
        "avx512-bf16"
        if hw.cpu_native_bf16
        else "avx512"
        if "avx512f" in flags
        else "avx2"
        if "avx2" in flags
        else hw.arch or "unknown"
    )
    return {
        "arch": hw.arch,
        "cpu_kind": kind,
        "cuda": hw.cuda_name or None,
        "threads": torch.get_num_threads(),
    }


def libraries() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def model_facts(handle: Any) -> dict[str, Any]:
    if handle is None:  # a command that never loaded the model (scale's arithmetic)
        return {"id": None, "weights_sha256": None}
    plan = handle.plan
    return {
        "id": handle.name,
        "weights_sha256": weights_sha256(handle),
        "device": plan.device,
        "dtype": plan.dtype_name,
        "fast_decode": bool(plan.fast_decode),
    }


def sampler(params: Any) -> dict[str, Any]:
    """Every sampling value, and the chain in the order it is applied to each position's logits."""
    from pipelines.engine.sampling import CHAIN

    values = params.to_dict()
    return {"chain": [{"step": step, "value": values[step]} for step in CHAIN], "params": values}


def make(kind: str, handle: Any, *, adapter: str | None, engine: str, inputs: dict, result: dict) -> dict[str, Any]:
    """A sealed capsule of one result (`inputs` and `result` are the kind's own fields)."""
    if kind not in KINDS:
        raise CapsuleError(f"unknown capsule kind {kind!r}")
    document = {
        "capsule": FORMAT,
        "kind": kind,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": model_facts(handle),
        "adapter": adapter_facts(adapter),
        "engine": engine,
        "chat_template_sha256": template_sha256(handle.tokenizer) if handle is not None else None,
        "machine": machine(),
        "libraries": libraries(),
        "inputs": inputs,
        "result": result,
    }
    return seal(document)


# --- sealing, writing, reading --------------------------------------------------------------------


def _canonical(document: dict) -> bytes:
    return json.dumps(document, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def seal(document: dict) -> dict:
    body = {k: v for k, v in document.items() if k != "sha256"}
    return {**body, "sha256": hashlib.sha256(_canonical(body)).hexdigest()}


def write(path: str | Path, document: dict) -> Path:
    from pipelines.store.files import write_atomic

    target = Path(path)
    if target.is_dir():
        raise CapsuleError(f"--capsule: {target} is a directory; give a file name")
    if not target.parent.is_dir():
        raise CapsuleError(f"--capsule: no such directory {str(target.parent)!r}")
    return write_atomic(target, json.dumps(document, ensure_ascii=False, indent=1) + "\n")


def read(path: str | Path) -> dict:
    """A capsule read back and checked: its size, JSON, format, kind and seal."""
    source = Path(path)
    if not source.is_file():
        raise CapsuleError(f"no such capsule file {str(source)!r}")
    if source.stat().st_size > MAX_BYTES:
        raise CapsuleError(f"{source.name} is larger than {MAX_BYTES // 2**20} MB: not a capsule")
    return checked(source.read_bytes(), source.name)


def checked(raw: str | bytes, name: str = "the capsule") -> dict:
    from pipelines.store.rows import RowsError, loads

    try:
        document = loads(raw, source=name)
    except RowsError as error:
        raise CapsuleError(str(error)) from error
    return verified(document, name)


def verified(document: Any, name: str = "the capsule") -> dict:
    """The document, if it is a capsule of a known format and kind whose seal matches its content."""
    if not isinstance(document, dict) or "capsule" not in document:
        raise CapsuleError(f"{name} is not a capsule (a JSON object with a 'capsule' format field)")
    if document.get("capsule") != FORMAT:
        raise CapsuleError(f"{name} has capsule format {document.get('capsule')!r}; this app reads format {FORMAT}")
    if document.get("kind") not in KINDS:
        raise CapsuleError(f"{name} has kind {document.get('kind')!r}; one of {', '.join(KINDS)} was expected")
    if seal(document)["sha256"] != document.get("sha256"):
        raise CapsuleError(
            f"{name} was changed after it was made (its SHA-256 seal does not match its content): "
            "an edited capsule is not a record of what ran"
        )
    for field in ("model", "inputs", "result", "machine"):
        if not isinstance(document.get(field), dict):
            raise CapsuleError(f"{name} has no {field!r} object")
    return document
