"""Running model-written Python with the operating system's limits, never in the app's process.

Each program runs in a fresh interpreter (`pipelines/sandbox/child.py`: a warden process makes
user, network, mount and PID namespaces and a quota'd scratch tmpfs, then forks the prisoner that
runs the program under Landlock and a seccomp allow-list) in its own session and process group,
with an empty environment and a scratch directory removed afterwards. It holds when the app runs
as an ordinary user, as on a Space: the program cannot name, limit, reprioritise or signal any
other process of that user. A wall-clock timer kills the whole process group; the group is killed
again after a normal exit, so nothing the program started survives it. The report comes from the
warden on a descriptor the program never holds, and is parsed here as untrusted bytes anyway.
Nothing here inspects the source for bad words: the program may try anything, the kernel says no.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.errors import InvalidParameter

CHILD = Path(__file__).with_name("child.py")
NOBODY = 65534
MAX_SOURCE_CHARS = 100_000


@dataclass(frozen=True)
class SandboxLimits:
    timeout_seconds: float = 5.0  # wall clock, the whole process group
    cpu_seconds: int = 5
    memory_mb: int = 256  # address space: the interpreter itself needs ~30 MB
    file_bytes: int = 1_000_000  # largest file the program may write (in its scratch directory)
    disk_bytes: int = 4_000_000  # all its files together (a tmpfs quota; without one the scratch is read-only)
    files: int = 64  # how many files and directories it may create
    processes: int = 16
    output_chars: int = 10_000  # stdout kept, the rest dropped with a marker
    namespaces: bool = True  # False: what a host without user namespaces gets (seccomp and Landlock alone)

    def __post_init__(self) -> None:
        if not 0.1 <= self.timeout_seconds <= 600:
            raise InvalidParameter("timeout", f"must be between 0.1 and 600 seconds, got {self.timeout_seconds}")


@dataclass
class SandboxResult:
    ok: bool
    result: Any = None
    stdout: str = ""
    error: str | None = None
    seconds: float = 0.0
    protections: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "result": self.result,
            "stdout": self.stdout,
            "error": self.error,
            "seconds": round(self.seconds, 3),
            "protections": self.protections,
        }


def _read_paths() -> list[str]:
    """What the sandboxed interpreter may read: its standard library and the system's shared libraries."""
    paths = {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]}
    paths |= {"/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/share/zoneinfo", "/etc/ld.so.cache", "/etc/localtime"}
    return sorted(p for p in paths if p and os.path.exists(p))


class _Capped:
    """Reads a pipe to the end (so the writer never blocks) but keeps only the first `limit` chars."""

    def __init__(self, stream, limit: int) -> None:
        self.chunks: list[bytes] = []
        self.size, self.limit, self.dropped = 0, limit * 4, False
        self.thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self.thread.start()

    def _pump(self, stream) -> None:
        while True:
            block = stream.read(65536)
            if not block:
                return
            if self.size < self.limit:
                self.chunks.append(block[: self.limit - self.size])
            self.dropped |= self.size + len(block) > self.limit
            self.size += len(block)

    def text(self, chars: int, total: int | None = None) -> str:
        """What was kept, marked when more was written (`total`: the warden's count of everything written)."""
        self.thread.join(timeout=1)
        text = b"".join(self.chunks).decode("utf-8", errors="replace")
        if total is not None and total > self.size:
            return text[:chars] + f"\n… [output truncated: {total:,} bytes in all]"
        if len(text) > chars or self.dropped or self.size >= self.limit:  # the warden passes on `limit` at most
            return text[:chars] + f"\n… [output truncated at {min(self.size, self.limit):,} bytes]"
        return text


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run(source: str, limits: SandboxLimits | None = None) -> SandboxResult:
    """Run `source` and call its `solution()`; every failure comes back in the result, never raised."""
    limits = limits or SandboxLimits()
    if not isinstance(source, str) or not source.strip():
        return SandboxResult(False, error="the program is empty")
    if len(source) > MAX_SOURCE_CHARS:
        return SandboxResult(
            False, error=f"the program is {len(source):,} characters; the limit is {MAX_SOURCE_CHARS:,}"
        )
    scratch = Path(tempfile.mkdtemp(prefix="sandbox-"))
    started = time.monotonic()
    read_fd, write_fd = os.pipe()
    process = None
    try:
        program = scratch / "program.py"
        program.write_text(source, encoding="utf-8", errors="surrogatepass")
        if os.geteuid() == 0:  # the child becomes nobody: it must still own its scratch directory
            os.chown(scratch, NOBODY, NOBODY)
            os.chown(program, NOBODY, NOBODY)
        child_limits = {
            "cpu_seconds": limits.cpu_seconds,
            "memory_mb": limits.memory_mb,
            "file_bytes": limits.file_bytes,
            "disk_bytes": limits.disk_bytes,
            "files": limits.files,
            "processes": limits.processes,
            "namespaces": limits.namespaces,
            "read_paths": _read_paths(),
            "parent": os.getpid(),
            "output_bytes": limits.output_chars * 4,
        }
        process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-B", str(CHILD), str(program), str(write_fd), json.dumps(child_limits)],
            cwd=scratch,
            env={},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(write_fd,),
            start_new_session=True,
        )
        os.close(write_fd)
        write_fd = -1
        stdout, stderr = _Capped(process.stdout, limits.output_chars), _Capped(process.stderr, 4000)
        payload: list[bytes] = []
        reader = threading.Thread(target=lambda: payload.append(_read_all(read_fd)), daemon=True)
        reader.start()
        timed_out = False
        try:
            process.wait(timeout=limits.timeout_seconds)
        except subprocess.TimeoutExpired:
            timed_out = True
        _kill_group(process.pid)  # the program's leftovers too (the group id outlives its leader)
        process.wait()
        reader.join(timeout=2)
        seconds = time.monotonic() - started
        report = None if timed_out else _report(payload[0] if payload else b"")
        out = stdout.text(limits.output_chars, report[4] if report else None)
        if timed_out:
            return SandboxResult(
                False, stdout=out, error=f"timed out after {limits.timeout_seconds:g} s", seconds=seconds
            )
        if report is not None:
            ok, result, error, protections, _ = report
            return SandboxResult(ok, result, out, error, seconds, protections)
        # the warden reports every way the program can end; without a report the warden itself failed
        how = f"signal {-process.returncode}" if process.returncode < 0 else f"exit status {process.returncode}"
        detail = stderr.text(400).strip().splitlines()
        return SandboxResult(
            False,
            stdout=out,
            seconds=seconds,
            error=f"the sandbox ended without a report ({how})" + (f": {detail[-1]}" if detail else ""),
        )
    except OSError as error:
        return SandboxResult(False, error=f"could not start the sandbox: {error}")
    finally:
        if write_fd >= 0:
            os.close(write_fd)
        if process is not None and process.poll() is None:
            _kill_group(process.pid)
            process.wait()
        shutil.rmtree(scratch, ignore_errors=True)


def _report(raw: bytes) -> tuple[bool, Any, str | None, list[str], int | None] | None:
    """(ok, result, error, protections, bytes the program wrote to stdout) from the warden's report,
    checked as untrusted bytes; None if unusable."""
    if not raw or len(raw) >= 10_000_000:
        return None
    try:
        data = json.loads(raw.decode("utf-8", errors="replace"))
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("protections"), list):
        return None
    protections = [str(p)[:200] for p in data["protections"]][:20]
    ok = data.get("ok") is True
    error = data.get("error")
    written = data.get("stdout_bytes")
    return (
        ok,
        data.get("result") if ok else None,
        None if ok else str(error or "the program failed")[:2000],
        protections,
        written if isinstance(written, int) and not isinstance(written, bool) else None,
    )


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    kept = 0
    with os.fdopen(fd, "rb") as pipe:
        while block := pipe.read(65536):
            if kept < 10_000_000:  # read to the end (the writer must not block), keep the first 10 MB
                chunks.append(block)
                kept += len(block)
    return b"".join(chunks)
