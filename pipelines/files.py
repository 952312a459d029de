"""Uploaded files: safe names, size limits, copies that outlive the upload's temp file."""

from __future__ import annotations

import re
import shutil
import unicodedata
from pathlib import Path

from .errors import PlaygroundError

MAX_NAME = 100


class UploadError(PlaygroundError, ValueError):
    """An upload was refused; the message says why."""


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
