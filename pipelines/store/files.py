"""Uploaded files: safe names, size limits, copies that outlive the upload's temp file."""

from __future__ import annotations

import os
import re
import shutil
import threading
import unicodedata
from pathlib import Path

from pipelines.errors import PlaygroundError

MAX_NAME = 100


class UploadError(PlaygroundError, ValueError):
    """An upload was refused; the message says why."""


def write_atomic(path: Path, content: str | bytes) -> Path:
    """Replace `path` with `content` in one rename, flushed to disk first: a reader (or a crash)
    sees the old file or the new one, never half of one. The temporary name is unique per
    process and thread, so two writers never write into the same temporary file."""
    path = Path(path)
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}-{threading.get_ident()}")
    data = content.encode("utf-8") if isinstance(content, str) else content
    try:
        with tmp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def safe_filename(name: str, default: str = "upload") -> str:
    """A file name that cannot escape a directory: no separators, no NULs, no leading dots."""
    name = unicodedata.normalize("NFKC", str(name or "")).replace("\x00", "")
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = re.sub(r"[^\w.\- ]+", "_", name, flags=re.UNICODE).strip(" .")
    if not name or name in {".", ".."}:
        name = default
    if len(name) > MAX_NAME:
        stem, dot, suffix = name.rpartition(".")
        name = (stem[: MAX_NAME - len(suffix) - 1] + dot + suffix) if dot and len(suffix) < 12 else name[:MAX_NAME]
    return name


def copy_upload(
    source: str | Path, directory: Path, *, max_bytes: int, allowed_suffixes: tuple[str, ...], name: str | None = None
) -> Path:
    """Copy an uploaded file into `directory` under a sanitised name, enforcing type and size."""
    source = Path(source)
    if not source.is_file():
        raise UploadError("the uploaded file is missing")
    display = safe_filename(name or source.name)
    if not display.lower().endswith(allowed_suffixes):
        raise UploadError(f"{display}: unsupported file type; allowed: {', '.join(allowed_suffixes)}")
    size = source.stat().st_size
    if size > max_bytes:
        raise UploadError(f"{display} is {size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB")
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / display
    shutil.copyfile(source, target)
    return target
