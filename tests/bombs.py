"""Small files that cost a lot to read: what a hostile visitor uploads (issue 17's list, at test size)."""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from pathlib import Path

ZEROS = b"\0" * (1 << 20)


def docx_bomb(path: Path, inflated_mb: int = 300) -> Path:
    """A real Word document plus a media part of `inflated_mb` MB of zeros (a ~0.3 MB file)."""
    from docx import Document

    buffer = io.BytesIO()
    document = Document()
    document.add_paragraph("An innocent-looking report.")
    document.save(buffer)
    with zipfile.ZipFile(buffer, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("word/media/image1.png", "w", force_zip64=True) as member:
            for _ in range(inflated_mb):
                member.write(ZEROS)
    path.write_bytes(buffer.getvalue())
    return path


def pdf_bomb(path: Path, pages: int = 20, chars_per_page: int = 1_000_000) -> Path:
    """A few-KB PDF whose pages all share one compressed content stream of `chars_per_page` characters."""
    content = b"BT /F1 1 Tf 0 0 Td " + (b"(" + b"A" * 1000 + b") Tj ") * (chars_per_page // 1000) + b" ET"
    stream = zlib.compress(content, 9)
    kids = " ".join(f"{10 + i} 0 R" for i in range(pages))
    objects = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode(),
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        4: b"<< /Length " + str(len(stream)).encode() + b" /Filter /FlateDecode >>\nstream\n" + stream + b"\nendstream",
    }
    for i in range(pages):
        objects[10 + i] = (
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
            b"/Resources << /Font << /F1 3 0 R >> >> >>"
        )
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = {}
    for number in sorted(objects):
        offsets[number] = out.tell()
        out.write(f"{number} 0 obj\n".encode() + objects[number] + b"\nendobj\n")
    xref, size = out.tell(), max(objects) + 1
    out.write(f"xref\n0 {size}\n".encode() + b"0000000000 65535 f \n")
    for number in range(1, size):
        out.write((f"{offsets[number]:010d} 00000 n \n" if number in offsets else "0000000000 65535 f \n").encode())
    out.write(f"trailer << /Root 1 0 R /Size {size} >>\nstartxref\n{xref}\n%%EOF\n".encode())
    path.write_bytes(out.getvalue())
    return path


def parquet_bomb(path: Path, rows: int = 5_000_000, columns: tuple[str, ...] = ("prompt", "response")) -> Path:
    """A ~50 KB Parquet file of `rows` dictionary-encoded rows: tiny on disk, gigabytes as Python objects."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    indices = pa.array(np.zeros(rows, dtype=np.int32))
    column = pa.DictionaryArray.from_arrays(indices, pa.array(["the same long-ish text " * 4]))
    pq.write_table(pa.table({name: column for name in columns}), str(path), compression="zstd")
    return path


def deep_json(depth: int = 100_000) -> str:
    """One JSON value nested `depth` levels deep (json.loads raised RecursionError)."""
    return "[" * depth + "]" * depth


def deep_jsonl(path: Path, good: dict, depth: int = 100_000) -> Path:
    """A good row, a row nested `depth` deep, a good row: the bad row must not sink the file."""
    path.write_text(json.dumps(good) + "\n" + deep_json(depth) + "\n" + json.dumps(good) + "\n", encoding="utf-8")
    return path


def unbroken_text(path: Path, chars: int = 100_000) -> Path:
    path.write_text("A short introduction. " + "x" * chars + " The end.\n", encoding="utf-8")
    return path
