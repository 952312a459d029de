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
    pq.write_table(pa.table(dict.fromkeys(columns, column)), str(path), compression="zstd")
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


def parquet_shared_string_bomb(path: Path, rows: int = 100_000, string_mb: int = 1, column: str = "prompt") -> Path:
    """~1 KB of Parquet whose rows all point at one dictionary entry of `string_mb` MB: metadata says 1 MB, rows decode to 100 GB."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    value = pa.array(["x" * (string_mb << 20)])
    shared = pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, dtype=np.int32)), value)
    pq.write_table(pa.table({column: shared, "response": shared}), str(path), compression="zstd")
    return path


def parquet_shared_messages_bomb(path: Path, rows: int = 20_000, string_kb: int = 512) -> Path:
    """The same trick one level down: a conversational `messages` column whose contents share one string."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    text = "y" * (string_kb << 10)
    batch = pa.table({"messages": [[{"role": "user", "content": text}, {"role": "assistant", "content": text}]] * 50})
    with pq.ParquetWriter(str(path), batch.schema, compression="zstd") as writer:
        for _ in range(rows // 50):
            writer.write_table(batch)
    return path


def json_list_of_empty_objects(path: Path, count: int = 16_000_000) -> Path:
    """A ~49 MB `.json` list of `{}`: parsed whole, 16 million dicts (+2.2 GB)."""
    with path.open("w") as handle:
        handle.write("[")
        chunk = "{}," * 100_000
        for _ in range(count // 100_000 - 1):
            handle.write(chunk)
        handle.write("{}," * 99_999 + "{}]")
    return path


def jsonl_of_many_lists(path: Path, rows: int = 60, lists: int = 250_000) -> Path:
    """JSON Lines whose rows sit just under the length limit, each a quarter of a million empty lists."""
    line = json.dumps({"prompt": "Hi", "response": "x"})[:-1] + ', "pad": [' + ",".join(["[]"] * lists) + "]}\n"
    with path.open("w") as handle:
        for _ in range(rows):
            handle.write(line)
    return path


def csv_wide_header(path: Path, columns: int = 2_000_000) -> Path:
    path.write_text(",".join(f"c{i}" for i in range(columns)) + "\nprompt,response\n")
    return path
