"""A small team-written corpus in every supported format, and questions with known sources."""

from __future__ import annotations

import json
from pathlib import Path

LIGHTHOUSE_PAGES = [
    "The Brightwater lighthouse stands on Gull Point. It was designed by the engineer Ada Pell and first lit in 1872. "
    "Its tower is 38 metres tall and painted with red and white bands.",
    "The keeper's duties included winding the clockwork of the lens every four hours and sounding the foghorn during "
    "storms. The last keeper, Tomas Ward, left in 1968 when the light was automated.",
]
BAKERY = [
    "The Marlow Street bakery opens at six in the morning.",
    "Its sourdough starter, called Hercules, is more than forty years old.",
    "On Saturdays the bakery sells cardamom buns.",
]
VOLCANO_HTML = """<!doctype html><html><head><title>Keria</title><style>.x { color: red }</style>
<script>var secret = "SECRET_SCRIPT_TEXT";</script></head><body>
<h1>Mount Keria</h1>
<p>Mount Keria is a stratovolcano on the island of Sola. Its last eruption was in 1991, when ash reached the capital.</p>
<p>Scientists monitor Keria with seismometers and gas sensors.</p>
<noscript>NOSCRIPT_TEXT</noscript></body></html>"""
ORCHARD_MD = """# The Hillside Orchard

The orchard grows an apple called Russet Queen. Harvest starts in the second week of October.

The orchard was planted in 1951 by Mira Lenz."""
RAILWAY_TXT = "The Vale narrow-gauge railway opened in 1903. It is 14 km long. Its steam locomotive is called Grey Heron. The café at the station sells crêpes."

QUESTIONS = [
    {"question": "Who designed the Brightwater lighthouse?", "source": "lighthouse.pdf", "page": 1},
    {"question": "When was the lighthouse first lit?", "source": "lighthouse.pdf", "page": 1},
    {"question": "How often did the keeper wind the clockwork of the lens?", "source": "lighthouse.pdf", "page": 2},
    {"question": "Who was the last lighthouse keeper?", "source": "lighthouse.pdf", "page": 2},
    {"question": "What time does the bakery open in the morning?", "source": "bakery.docx"},
    {"question": "What is the sourdough starter called?", "source": "bakery.docx"},
    {"question": "When did Mount Keria last erupt?", "source": "volcano.html"},
    {"question": "How do scientists monitor the volcano?", "source": "volcano.html"},
    {"question": "Which apple variety does the orchard grow?", "source": "orchard.md"},
    {"question": "Who planted the orchard?", "source": "orchard.md"},
    {"question": "How long is the narrow-gauge railway?", "source": "railway.txt"},
    {"question": "What is the steam locomotive called?", "source": "railway.txt"},
]


def pdf(path: Path, pages: list[str]) -> Path:
    from fpdf import FPDF

    document = FPDF()
    document.set_font("Helvetica", size=12)
    for text in pages:
        document.add_page()
        document.multi_cell(0, 8, text)
    document.output(str(path))
    return path


def docx(path: Path, paragraphs: list[str]) -> Path:
    from docx import Document

    document = Document()
    for text in paragraphs:
        document.add_paragraph(text)
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = "Rye loaf", "4.50"
    document.save(str(path))
    return path


def write_corpus(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = [
        pdf(folder / "lighthouse.pdf", LIGHTHOUSE_PAGES),
        docx(folder / "bakery.docx", BAKERY),
        folder / "volcano.html",
        folder / "orchard.md",
        folder / "railway.txt",
    ]
    files[2].write_text(VOLCANO_HTML, encoding="utf-8")
    files[3].write_text(ORCHARD_MD, encoding="utf-8")
    files[4].write_bytes(RAILWAY_TXT.encode("latin-1"))  # not UTF-8 on purpose
    return files


def write_questions(path: Path) -> Path:
    path.write_text("\n".join(json.dumps(q) for q in QUESTIONS) + "\n", encoding="utf-8")
    return path


def bad_files(folder: Path) -> dict[str, str]:
    """name -> a fragment of the expected error."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corrupt.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> garbage without xref")
    pdf(folder / "scanned.pdf", [""])
    (folder / "empty.txt").write_bytes(b"")
    (folder / "binary.txt").write_bytes(b"\x00\x01\x02\xff" * 100)
    (folder / "program.exe").write_bytes(b"MZ\x90\x00")
    (folder / "fake.docx").write_bytes(b"this is not a zip")
    (folder / "broken.docx").write_bytes(b"PK\x03\x04 truncated zip")
    (folder / "whitespace.md").write_text("   \n\n  \t ")
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    writer.encrypt("secret")
    with (folder / "locked.pdf").open("wb") as handle:
        writer.write(handle)
    return {
        "corrupt.pdf": "not a readable PDF",
        "scanned.pdf": "no extractable text",
        "empty.txt": "is empty",
        "binary.txt": "binary",
        "program.exe": "unsupported file type",
        "fake.docx": "not a Word document",
        "broken.docx": "not a readable Word document",
        "whitespace.md": "contains no text",
        "locked.pdf": "password-protected",
    }


def passages(*texts: str):
    """Retrieval hits for `texts`, numbered [1].. as a prompt shows them, best first."""
    from pipelines.rag.retrieval import Hit
    from pipelines.rag.store import ChunkRecord

    return [
        Hit(ChunkRecord(i, f"d{i}", f"doc{i}.txt", None, 0, len(t), t), 1.0 - i / 10, i + 1)
        for i, t in enumerate(texts)
    ]
