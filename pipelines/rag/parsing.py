"""Turning uploaded files into text: PDF (page by page), DOCX, HTML, Markdown, plain text.

Every failure is a `ParseError` whose message says why, per file, so a batch upload reports
each bad file and ingests the rest. Parsers run on untrusted input, so only text comes out:
scripts and styles are dropped from HTML, nothing is executed or fetched.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

MAX_FILE_BYTES = 20_000_000
KINDS = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".html": "html",
    ".htm": "html",
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".text": "text",
}


class ParseError(ValueError):
    """A file cannot be turned into text; the message is shown to the user."""


@dataclass(frozen=True)
class Section:
    text: str
    page: int | None  # 1-based page of a PDF; None for formats without pages


@dataclass(frozen=True)
class ParsedDocument:
    name: str
    kind: str
    sections: list[Section]
    sha256: str

    @property
    def characters(self) -> int:
        return sum(len(s.text) for s in self.sections)


def kind_of(name: str) -> str:
    suffix = Path(name).suffix.lower()
    if suffix not in KINDS:
        raise ParseError(f"unsupported file type {suffix or '(none)'}; supported: PDF, DOCX, HTML, Markdown, TXT")
    return KINDS[suffix]


def _clean(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = re.sub(r"[ \t\f\v]+", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def decode_text(data: bytes, name: str) -> str:
    """UTF-8 first (with or without BOM), then the best-guess encoding, never a crash."""
    if b"\x00" in data[:8192]:
        raise ParseError(f"{name} looks like a binary file, not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    matches = list(from_bytes(data))
    if matches:
        # Western text decodes cleanly as several single-byte code pages and the detector's first
        # pick is often cp1250; prefer Windows-1252 (the commonest legacy encoding) when it is as
        # plausible as the best. Cyrillic, Greek, CJK... are not candidates for it, so they keep theirs.
        least_chaos = min(m.chaos for m in matches)
        western = [m for m in matches if m.encoding in ("cp1252", "latin_1", "iso8859_15") and m.chaos <= least_chaos]
        return str((western or matches)[0])
    return data.decode("cp1252", errors="replace")


def _pdf(path: Path, name: str) -> list[Section]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(str(path), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise ParseError(f"{name} is password-protected")
        pages = [_clean(page.extract_text() or "") for page in reader.pages]
    except ParseError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, OSError) as error:
        raise ParseError(f"{name} is not a readable PDF ({type(error).__name__}: {str(error)[:120]})") from error
    except Exception as error:  # noqa: BLE001 - malformed PDFs raise arbitrary errors deep in pypdf
        raise ParseError(f"{name} is not a readable PDF ({type(error).__name__})") from error
    sections = [Section(text, number) for number, text in enumerate(pages, start=1) if text]
    if not sections:
        raise ParseError(f"{name} has no extractable text (a scanned PDF needs OCR first)")
    return sections


def _docx(path: Path, name: str) -> list[Section]:
    import zipfile

    from docx import Document

    try:
        document = Document(str(path))
    except (zipfile.BadZipFile, KeyError, ValueError) as error:
        raise ParseError(f"{name} is not a readable Word document") from error
    except Exception as error:  # noqa: BLE001 - python-docx surfaces lxml and zip errors of many kinds
        raise ParseError(f"{name} is not a readable Word document ({type(error).__name__})") from error
    parts = [p.text for p in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            parts.append(" | ".join(cell.text for cell in row.cells))
    return [Section(_clean("\n\n".join(parts)), None)]


def _html(data: bytes, name: str) -> list[Section]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(decode_text(data, name), "html.parser")
    for hidden in soup(["script", "style", "noscript", "template", "head", "svg", "iframe", "object"]):
        hidden.decompose()
    blocks = soup.find_all(["p", "li", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "td", "th", "blockquote"])
    text = "\n\n".join(b.get_text(" ", strip=True) for b in blocks) if blocks else soup.get_text("\n")
    return [Section(_clean(text), None)]


def parse(path: str | Path, name: str | None = None) -> ParsedDocument:
    """Extract the text of one file (the display `name` decides the type)."""
    path = Path(path)
    name = name or path.name
    kind = kind_of(name)
    try:
        size = path.stat().st_size
    except OSError as error:
        raise ParseError(f"{name} could not be read") from error
    if size == 0:
        raise ParseError(f"{name} is empty")
    if size > MAX_FILE_BYTES:
        raise ParseError(f"{name} is {size / 1e6:.1f} MB; the limit is {MAX_FILE_BYTES / 1e6:.0f} MB")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if kind == "pdf":
        if not data.startswith(b"%PDF"):
            raise ParseError(f"{name} is not a PDF file (wrong header)")
        sections = _pdf(path, name)
    elif kind == "docx":
        if not data.startswith(b"PK"):
            raise ParseError(f"{name} is not a Word document (not a .docx zip)")
        sections = _docx(path, name)
    elif kind == "html":
        sections = _html(data, name)
    else:
        sections = [Section(_clean(decode_text(data, name)), None)]
    sections = [s for s in sections if s.text]
    if not sections:
        raise ParseError(f"{name} contains no text")
    return ParsedDocument(name=name, kind=kind, sections=sections, sha256=digest)
