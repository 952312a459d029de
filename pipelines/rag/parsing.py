"""Turning uploaded files into text: PDF (page by page), DOCX, HTML, Markdown, plain text.

Every failure is a `ParseError` whose message says why, per file, so a batch upload reports
each bad file and ingests the rest. Parsers run on untrusted input, so only text comes out:
scripts and styles are dropped from HTML, nothing is executed or fetched.

What a file claims is not what it costs: a 1 MB DOCX can inflate to 1 GiB, a 7 KB PDF whose
pages share one content stream took 138 s and produced 18 M characters. So a DOCX's zip members
are measured before anything is inflated, and every file is parsed in a child process
(`python -m pipelines.rag.parsing`) with a CPU-time, memory and wall-clock limit and a cap on the
characters it may return; the app's own memory never sees the file's inflated form.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.errors import PlaygroundError

MAX_FILE_BYTES = 20_000_000
MAX_DOCUMENT_CHARS = 3_000_000  # a 1,000-page book is ~2 M characters
PARSE_CPU_SECONDS = 60
PARSE_MEMORY_BYTES = 1_500_000_000  # the child's address space (interpreter and libraries included)
ZIP_MAX_MEMBERS = 5_000
ZIP_MAX_INFLATED = 200_000_000  # all members together, as the zip's directory declares them
ZIP_MAX_RATIO = 200  # a member may inflate at most 200x (deflated XML reaches ~20x)
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


class ParseError(PlaygroundError, ValueError):
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


class _Budget:
    """Characters a document may still produce; extraction stops, with a clear error, when spent."""

    def __init__(self, name: str, limit: int | None = None) -> None:
        self.name, self.limit = name, limit or MAX_DOCUMENT_CHARS
        self.left = self.limit

    def take(self, text: str) -> str:
        self.left -= len(text)
        if self.left < 0:
            raise ParseError(
                f"{self.name} has more than {self.limit:,} characters of text; split it into smaller files"
            )
        return text


def _pdf(path: Path, name: str) -> list[Section]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    budget = _Budget(name)
    try:
        reader = PdfReader(str(path), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise ParseError(f"{name} is password-protected")
        pages = [budget.take(_clean(page.extract_text() or "")) for page in reader.pages]
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


def check_zip(path: Path, name: str) -> None:
    """Refuse a zip (DOCX) whose members would inflate beyond the limits, before inflating any.

    Python's zipfile never inflates a member past the size its directory declares, so the
    declared sizes are what reading can cost.
    """
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise ParseError(f"{name} is not a readable Word document (not a valid zip)") from error
    if len(members) > ZIP_MAX_MEMBERS:
        raise ParseError(f"{name} holds {len(members):,} files; a Word document has a few dozen")
    inflated = sum(m.file_size for m in members)
    if inflated > ZIP_MAX_INFLATED:
        raise ParseError(f"{name} inflates to {inflated / 1e6:,.0f} MB; the limit is {ZIP_MAX_INFLATED / 1e6:,.0f} MB")
    for member in members:
        if member.file_size > 1_000_000 and member.file_size > ZIP_MAX_RATIO * max(member.compress_size, 1):
            raise ParseError(
                f"{name}: {member.filename[:80]} inflates {member.file_size / max(member.compress_size, 1):,.0f}x "
                f"(a zip bomb?); the limit is {ZIP_MAX_RATIO}x"
            )


def _docx(path: Path, name: str) -> list[Section]:
    import zipfile

    from docx import Document

    try:
        document = Document(str(path))
    except (zipfile.BadZipFile, KeyError, ValueError) as error:
        raise ParseError(f"{name} is not a readable Word document") from error
    except Exception as error:  # noqa: BLE001 - python-docx surfaces lxml and zip errors of many kinds
        raise ParseError(f"{name} is not a readable Word document ({type(error).__name__})") from error
    budget = _Budget(name)
    parts = [budget.take(p.text) for p in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            parts.append(budget.take(" | ".join(cell.text for cell in row.cells)))
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
    """Extract the text of one file (the display `name` decides the type), in a bounded child process."""
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
    with path.open("rb") as handle:
        head = handle.read(4)
    if kind == "pdf" and not head.startswith(b"%PDF"):
        raise ParseError(f"{name} is not a PDF file (wrong header)")
    if kind == "docx":
        if not head.startswith(b"PK"):
            raise ParseError(f"{name} is not a Word document (not a .docx zip)")
        check_zip(path, name)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    sections = _parse_in_child(path, name)
    return ParsedDocument(name=name, kind=kind, sections=sections, sha256=digest)


def _parse_in_child(path: Path, name: str) -> list[Section]:
    """Run `parse_here` in `python -m pipelines.rag.parsing` under CPU, memory and time limits."""
    root = Path(__file__).resolve().parent.parent.parent
    # the wall-clock backstop leaves room for the child's own start (imports) on a busy machine, so
    # a CPU-bound parse meets its CPU limit first: twice the CPU budget, and at least 10 s more
    wall_seconds = max(PARSE_CPU_SECONDS * 2, PARSE_CPU_SECONDS + 10)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pipelines.rag.parsing",
                str(path),
                name,
                str(PARSE_CPU_SECONDS),
                str(PARSE_MEMORY_BYTES),
                str(MAX_DOCUMENT_CHARS),
            ],
            capture_output=True,
            env=env,
            timeout=wall_seconds,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as error:
        raise ParseError(f"{name} took longer than {wall_seconds} s to read; it was stopped") from error
    try:
        answer = json.loads(done.stdout.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        answer = None
    if done.returncode < 0 or not isinstance(answer, dict):
        import signal

        how = {
            -signal.SIGXCPU: f"used more than {PARSE_CPU_SECONDS} s of CPU",
            -signal.SIGKILL: f"used more than {PARSE_CPU_SECONDS} s of CPU or its memory limit",
        }.get(done.returncode)
        if b"MemoryError" in done.stderr[-4000:]:
            how = f"needed more than {PARSE_MEMORY_BYTES // 1_000_000:,} MB of memory"
        raise ParseError(f"{name} could not be read within the limits" + (f": it {how}" if how else ""))
    if "error" in answer:
        raise ParseError(str(answer["error"]))
    return [Section(str(text), page) for text, page in answer["sections"]]


def parse_here(path: Path, name: str) -> list[Section]:
    """The parsing itself, in this process: what the child runs (tests may call it directly)."""
    kind = kind_of(name)
    data = path.read_bytes()
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
    if sum(len(s.text) for s in sections) > MAX_DOCUMENT_CHARS:
        raise ParseError(f"{name} has more than {MAX_DOCUMENT_CHARS:,} characters of text; split it into smaller files")
    return sections


def _child_main(argv: list[str]) -> int:
    """`python -m pipelines.rag.parsing PATH NAME CPU_S MEMORY MAX_CHARS`: limits, parse, one JSON line."""
    import resource

    global MAX_DOCUMENT_CHARS
    path, name, cpu, memory, MAX_DOCUMENT_CHARS = Path(argv[0]), argv[1], int(argv[2]), int(argv[3]), int(argv[4])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    answer: dict[str, Any]
    try:
        answer = {"sections": [[s.text, s.page] for s in parse_here(path, name)]}
    except ParseError as error:
        answer = {"error": str(error)}
    except MemoryError:
        answer = {"error": f"{name} needs more than {PARSE_MEMORY_BYTES // 1_000_000:,} MB of memory to read"}
    sys.stdout.write(json.dumps(answer, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(_child_main(sys.argv[1:]))
