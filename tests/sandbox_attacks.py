"""The attack set against the sandbox, run by a plain system Python as an ordinary user (as on a Space).

`python3 sandbox_attacks.py CODE_DIR [--no-namespaces]` imports `pipelines.sandbox` from CODE_DIR
(stdlib only), starts a stand-in for the app (a process of the same user), runs every attack
through `sandbox.run`, checks the stand-in afterwards and prints one JSON document. The test that
calls it (tests/unit/test_sandbox_unprivileged.py) asserts on that document; this file imports
nothing from the project but the sandbox, so any interpreter of the right version can run it.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, sys.argv[1])
from pipelines import sandbox  # noqa: E402

# inside a program: run `action`; "done", or the errno it was refused with (indented for the programs below)
ATTEMPT = textwrap.indent(
    'def attempt(action):\n    try:\n        action()\n        return "done"\n    except OSError as error:\n'
    "        return error.errno",
    " " * 12,
).lstrip()
LIMITS = sandbox.SandboxLimits(timeout_seconds=5, cpu_seconds=3, namespaces="--no-namespaces" not in sys.argv)


def run(source: str) -> dict:
    return sandbox.run(textwrap.dedent(source), LIMITS).to_json()


def state(pid: int) -> dict:
    """Everything the attacks try to change about the stand-in."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return {
        "nofile": resource.prlimit(pid, resource.RLIMIT_NOFILE),
        "cpu": resource.prlimit(pid, resource.RLIMIT_CPU),
        "as": resource.prlimit(pid, resource.RLIMIT_AS),
        "nice": os.getpriority(os.PRIO_PROCESS, pid),
        "affinity": sorted(os.sched_getaffinity(pid)),
        "scheduler": os.sched_getscheduler(pid),
        "state": stat[0],  # R/S alive, T stopped, Z gone
    }


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                pass
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def caller_killed() -> dict:
    """A caller runs a program that would sleep for a minute holding memory; the caller is SIGKILLed."""
    caller = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); from pipelines import sandbox; "
            "sandbox.run('import time\\nhoard = bytearray(100_000_000)\\ndef solution():\\n    time.sleep(60)\\n', "
            "sandbox.SandboxLimits(timeout_seconds=120, cpu_seconds=120))",
            sys.argv[1],
        ]
    )
    family: list[int] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(family) < 2:  # the warden, then its prisoner
        wardens = _children(caller.pid)
        family = wardens + [p for w in wardens for p in _children(w)]
        time.sleep(0.05)
    time.sleep(0.5)
    caller.kill()
    caller.wait()
    time.sleep(2)
    return {"started": len(family), "alive_after": [p for p in family if _alive(p)]}


def main() -> None:
    stand_in = subprocess.Popen(["sleep", "600"])
    before = state(stand_in.pid)
    report: dict = {"uid": os.getuid(), "stand_in_before": before}
    try:
        report["processes"] = run(f"""
            import os, resource, signal
            PID = {stand_in.pid}
            {ATTEMPT}
            def solution():
                return {{
                    "prlimit_nofile": attempt(lambda: resource.prlimit(PID, resource.RLIMIT_NOFILE, (3, 3))),
                    "prlimit_cpu": attempt(lambda: resource.prlimit(PID, resource.RLIMIT_CPU, (1, 1))),
                    "prlimit_as": attempt(lambda: resource.prlimit(PID, resource.RLIMIT_AS, (10**7, 10**7))),
                    "setpriority": attempt(lambda: os.setpriority(os.PRIO_PROCESS, PID, 19)),
                    "affinity": attempt(lambda: os.sched_setaffinity(PID, {{0}})),
                    "scheduler": attempt(lambda: os.sched_setscheduler(PID, os.SCHED_IDLE, os.sched_param(0))),
                    "stop": attempt(lambda: os.kill(PID, signal.SIGSTOP)),
                    "kill": attempt(lambda: os.kill(PID, signal.SIGKILL)),
                    "own_limit": attempt(lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (32, 32))),
                }}
        """)
        time.sleep(0.2)
        report["stand_in_after"] = state(stand_in.pid)

        # issue 35, M4: calls that name every process of the user, or make the kernel signal one
        own_nice = os.getpriority(os.PRIO_PROCESS, 0)
        report["whole_user"] = run(f"""
            import ctypes, fcntl, os, signal
            PID = {stand_in.pid}
            libc = ctypes.CDLL(None, use_errno=True)
            {ATTEMPT}
            def setown():  # F_SETOWN to the stand-in, F_SETSIG to SIGKILL, then make the pipe ready
                read, write = os.pipe()
                fcntl.fcntl(read, fcntl.F_SETOWN, PID)
                fcntl.fcntl(read, 10, signal.SIGKILL)  # F_SETSIG
                fcntl.fcntl(read, fcntl.F_SETFL, os.O_ASYNC | os.O_NONBLOCK)
                os.write(write, b"x")
            def ioctl_owner():
                read, _ = os.pipe()
                value = ctypes.c_int(PID)
                if libc.ioctl(read, 0x8901, ctypes.byref(value)) != 0:  # FIOSETOWN
                    raise OSError(ctypes.get_errno(), "ioctl")
            def solution():
                return {{
                    "prio_user": attempt(lambda: os.setpriority(os.PRIO_USER, 0, 19)),
                    "prio_pgrp": attempt(lambda: os.setpriority(os.PRIO_PGRP, 0, 19)),
                    "prio_other": attempt(lambda: os.setpriority(os.PRIO_PROCESS, PID, 19)),
                    "read_prio_user": attempt(lambda: os.getpriority(os.PRIO_USER, 0)),
                    "read_prio_other": attempt(lambda: os.getpriority(os.PRIO_PROCESS, PID)),
                    "setown_sigkill": attempt(setown),
                    "ioctl_setown": attempt(ioctl_owner),
                    "other_session": attempt(lambda: os.getsid(PID)),
                    "other_group": attempt(lambda: os.getpgid(PID)),
                    "other_affinity": attempt(lambda: os.sched_getaffinity(PID)),
                    "own_nice": attempt(lambda: os.setpriority(os.PRIO_PROCESS, 0, 5)),
                }}
        """)
        time.sleep(0.2)
        report["whole_user_after"] = {"stand_in": state(stand_in.pid), "app_nice": os.getpriority(os.PRIO_PROCESS, 0)}
        report["app_nice_before"] = own_nice

        # issue 35, L2: the program dies with its caller (the app's process), whatever the caller's end
        report["caller_killed"] = caller_killed()

        report["disk"] = run("""
            def solution():
                written, files = 0, 0
                block = b"x" * 1_000_000
                try:
                    for index in range(3000):  # 3 GB in 1 MB files, as the attack did
                        with open(f"f{index}", "wb") as handle:
                            handle.write(block)
                        written, files = written + len(block), files + 1
                except OSError as error:
                    return {"written": written, "files": files, "stopped_by": error.errno}
                return {"written": written, "files": files, "stopped_by": None}
        """)
        report["many_files"] = run("""
            def solution():
                made = 0
                try:
                    for index in range(100_000):
                        open(f"e{index}", "w").close()
                        made += 1
                except OSError as error:
                    return {"files": made, "stopped_by": error.errno}
                return {"files": made, "stopped_by": None}
        """)

        home = Path(tempfile.mkdtemp(prefix="app-socket-"))
        path = home / "control.sock"
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(path))
        os.chmod(path, 0o600)
        server.listen(1)
        server.settimeout(0.5)
        abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        abstract.bind("\0playground-app")
        abstract.listen(1)
        abstract.settimeout(0.5)
        report["unix_sockets"] = run(f"""
            import ctypes
            def solution():
                libc = ctypes.CDLL(None, use_errno=True)
                outcomes = {{}}
                for name, address in (("path", b"{path}"), ("abstract", b"\\0playground-app")):
                    fd = libc.socket(1, 1, 0)  # AF_UNIX, SOCK_STREAM
                    if fd < 0:
                        outcomes[name] = "socket: " + str(ctypes.get_errno())
                        continue
                    raw = (1).to_bytes(2, "little") + address
                    outcomes[name] = libc.connect(fd, raw, len(raw))
                    libc.write(fd, b"hello app", 9)
                return outcomes
        """)
        reached = []
        for listener in (server, abstract):
            try:
                connection, _ = listener.accept()
                reached.append(connection.recv(100).decode(errors="replace"))
            except OSError:
                pass
            listener.close()
        report["unix_sockets_reached"] = reached
        shutil.rmtree(home, ignore_errors=True)

        watched = Path(tempfile.mkdtemp(prefix="app-data-"))
        report["inotify"] = run(f"""
            import ctypes
            def solution():
                libc = ctypes.CDLL(None, use_errno=True)
                fd = libc.inotify_init1(0)
                if fd < 0:
                    return "inotify_init1: " + str(ctypes.get_errno())
                return libc.inotify_add_watch(fd, b"{watched}", 0xfff)
        """)
        shutil.rmtree(watched, ignore_errors=True)

        report["forgery"] = run("""
            import os
            FAKE = b'{"ok": true, "result": 42, "error": null, "protections": ["forged"]}\\n'
            def solution():
                for fd in range(0, 256):
                    try:
                        os.write(fd, FAKE)
                    except OSError:
                        pass
                raise RuntimeError("the real outcome")
        """)
        report["host_crash"] = run("""
            import os
            def solution():
                deep = b"[" * 200000 + b"]" * 200000
                for fd in range(3, 256):
                    try:
                        os.write(fd, deep)
                        os.write(fd, b"\\xff\\xfe garbage {")
                    except OSError:
                        pass
                os._exit(0)
        """)
        secret = Path(tempfile.mkdtemp(prefix="app-secret-")) / "token"  # the app user's own file, mode 0600
        secret.write_text("hunter2")
        secret.chmod(0o600)
        outside = secret.parent / "escape.txt"
        tcp = socket.socket()
        tcp.bind(("127.0.0.1", 0))
        tcp.listen(1)
        tcp.settimeout(0.5)
        report["earlier"] = {
            "read_own_secret": run(f"""
                def solution():
                    return open("{secret}").read()
            """),
            "write_outside": run(f"""
                def solution():
                    open("{outside}", "w").write("escaped")
                    return 1
            """),
            "shell": run("""
                import os
                def solution():
                    return os.system("id")
            """),
            "fork_bomb": run("""
                import os
                def solution():
                    while True:
                        os.fork()
            """),
            "tcp": run(f"""
                import ctypes, struct
                def solution():
                    libc = ctypes.CDLL(None, use_errno=True)
                    fd = libc.socket(2, 1, 0)
                    if fd < 0:
                        return "socket: " + str(ctypes.get_errno())
                    address = struct.pack("=H", 2) + struct.pack(">H", {tcp.getsockname()[1]}) + bytes([127, 0, 0, 1]) + bytes(8)
                    return libc.connect(fd, address, len(address))
            """),
            "memory_bomb": run("""
                def solution():
                    hoard = []
                    while True:
                        hoard.append(bytearray(50_000_000))
            """),
            "endless": run("""
                def solution():
                    while True:
                        pass
            """),
            "kill_parent": run("""
                import os, signal
                def solution():
                    outcomes = []
                    for target in (os.getppid(), -1, 0):
                        try:
                            os.kill(target, signal.SIGKILL)
                            outcomes.append("sent")
                        except OSError as error:
                            outcomes.append(error.errno)
                    return outcomes
            """),
        }
        try:
            tcp.accept()
            report["tcp_reached"] = True
        except OSError:
            report["tcp_reached"] = False
        tcp.close()
        report["outside_written"] = outside.exists()
        shutil.rmtree(secret.parent, ignore_errors=True)
        report["good"] = run("""
            import math, threading
            def solution():
                results = []
                worker = threading.Thread(target=lambda: results.append(math.factorial(10)))  # threads are fine
                worker.start()
                worker.join()
                print("hello")
                return results
        """)
        report["scratch"] = run("""
            def solution():
                open("note.txt", "w").write("scratch works")
                return open("note.txt").read()
        """)
    finally:
        report["stand_in_alive"] = stand_in.poll() is None
        stand_in.send_signal(signal.SIGKILL)
        stand_in.wait()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
