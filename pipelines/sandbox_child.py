"""The sandbox's child: lock this fresh process down with the kernel's own tools, then run the program.

Started by `pipelines.sandbox` as `python -I -S -B sandbox_child.py PROGRAM RESULT_FD LIMITS_JSON`
in a new session, with an empty environment and a scratch directory as working directory. It
must import nothing from the project: it runs before, and under, the restrictions. Order
matters, each step needs the privileges the next one removes:

1. network namespace (root, or an unprivileged user namespace): no interface but a down loopback;
2. resource limits: CPU seconds, address space, file size, open files, processes, no core dumps;
3. pre-import the modules a solution may use: after step 4 the interpreter's own files may be
   unreadable (a Python under /root, say), so what is not imported now is not importable;
4. as root, become `nobody` (no supplementary groups);
5. `no_new_privs`, then Landlock: read-only access to the interpreter and system libraries,
   read-write only below the scratch directory, no TCP bind/connect, no signals to processes
   outside the sandbox;
6. seccomp: no new processes (threads are allowed), no sockets but AF_UNIX, no signals to
   other processes, no ptrace, namespaces, mounts, keyrings, bpf or perf.

Whatever is unavailable on the host (an old kernel without Landlock, a container that forbids
namespaces) is skipped and named in the result's `protections`, so the caller can see exactly
what held. The program's result goes back as JSON on RESULT_FD; its stdout/stderr are pipes.
"""

import ctypes
import errno
import json
import os
import platform
import resource
import signal
import struct
import sys
import traceback

ALLOWED_MODULES = (
    "math", "cmath", "fractions", "decimal", "statistics", "itertools", "functools", "operator", "collections",
    "datetime", "re", "string", "random", "heapq", "bisect", "numbers", "calendar", "textwrap",
)
for _name in ALLOWED_MODULES:
    __import__(_name)

LIBC = ctypes.CDLL(None, use_errno=True)
NOBODY = 65534

# --- Landlock (include/uapi/linux/landlock.h) -----------------------------------------------------
SYS_LANDLOCK = {"x86_64": (444, 445, 446), "aarch64": (444, 445, 446)}
FS_EXECUTE, FS_WRITE_FILE, FS_READ_FILE, FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
FS_ALL_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1, 5: (1 << 16) - 1}
NET_ALL = (1 << 0) | (1 << 1)  # bind_tcp, connect_tcp (ABI 4)
SCOPE_ALL = (1 << 0) | (1 << 1)  # abstract unix sockets, signals (ABI 6)

# --- seccomp ----------------------------------------------------------------------------------------
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
SYSCALLS = {
    "x86_64": {"socket": 41, "kill": 62, "tkill": 200, "tgkill": 234, "clone": 56, "clone3": 435, "fork": 57, "vfork": 58,
               "deny": [101, 112, 109, 272, 308, 165, 166, 310, 311, 321, 298, 250, 248, 249, 425, 323, 135, 155, 161, 169]},
    # ptrace setsid setpgid unshare setns mount umount2 process_vm_readv/writev bpf perf_event_open keyctl add_key
    # request_key io_uring_setup userfaultfd personality pivot_root chroot reboot
    "aarch64": {"socket": 198, "kill": 129, "tkill": 130, "tgkill": 131, "clone": 220, "clone3": 435, "fork": None, "vfork": None,
                "deny": [117, 157, 154, 97, 268, 40, 39, 270, 271, 280, 241, 219, 217, 218, 425, 282, 92, 41, 51, 142]},
}
CLONE_THREAD = 0x00010000
RET_ALLOW, RET_KILL = 0x7FFF0000, 0x80000000
RET_EPERM, RET_ENOSYS = 0x00050000 | errno.EPERM, 0x00050000 | errno.ENOSYS


def _landlock(scratch, read_paths, abi_wanted=7):
    arch = platform.machine()
    if arch not in SYS_LANDLOCK:
        return f"landlock: not on {arch}"
    create, add_rule, restrict = SYS_LANDLOCK[arch]
    abi = LIBC.syscall(create, None, 0, 1)  # LANDLOCK_CREATE_RULESET_VERSION
    if abi < 1:
        return "landlock: not available in this kernel"
    abi = min(abi, abi_wanted)
    handled_fs = FS_ALL_BY_ABI.get(abi, FS_ALL_BY_ABI[5])
    attr = struct.pack("QQQ", handled_fs, NET_ALL if abi >= 4 else 0, SCOPE_ALL if abi >= 6 else 0)
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    buffer = ctypes.create_string_buffer(attr[:size], size)
    ruleset = LIBC.syscall(create, buffer, ctypes.c_size_t(size), 0)
    if ruleset < 0:
        return f"landlock: create_ruleset failed ({os.strerror(ctypes.get_errno())})"
    file_rights = FS_EXECUTE | FS_READ_FILE | FS_WRITE_FILE | (1 << 14 if abi >= 3 else 0)
    rules = [(path, FS_EXECUTE | FS_READ_FILE | FS_READ_DIR) for path in read_paths] + [(scratch, handled_fs), ("/dev/null", 0)]
    for path, rights in rules:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            continue
        if not os.path.isdir(path):  # a file accepts file rights only
            rights = (rights or (FS_READ_FILE | FS_WRITE_FILE)) & file_rights
        rule = ctypes.create_string_buffer(struct.pack("=Qi", rights, fd), 12)
        LIBC.syscall(add_rule, ruleset, 1, rule, 0)  # LANDLOCK_RULE_PATH_BENEATH
        os.close(fd)
    if LIBC.syscall(restrict, ruleset, 0) != 0:
        return f"landlock: restrict_self failed ({os.strerror(ctypes.get_errno())})"
    os.close(ruleset)
    return f"landlock ABI {abi}"


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def _bpf_program(arch, pid):
    """A seccomp filter as (code, jt, jf, k) tuples; jumps are resolved from labels."""
    table = SYSCALLS[arch]
    LD, JEQ, JSET, RET = 0x20, 0x15, 0x45, 0x06
    NR, ARCH, ARG0 = 0, 4, 16  # offsets in struct seccomp_data (little-endian: low word of args[0])
    code = []  # entries: (op, k, true_label, false_label) or ("label", name)

    def ins(op, k, jt=None, jf=None):
        code.append((op, k, jt, jf))

    ins(LD, ARCH)
    ins(JEQ, AUDIT_ARCH[arch], None, "kill")
    ins(LD, NR)
    ins(JEQ, table["socket"], "socket", None)
    for name in ("kill", "tkill", "tgkill"):
        ins(JEQ, table[name], "signal", None)
    ins(JEQ, table["clone"], "clone", None)
    ins(JEQ, table["clone3"], "enosys", None)  # glibc then falls back to clone, whose flags can be read
    for name in ("fork", "vfork"):
        if table[name] is not None:
            ins(JEQ, table[name], "eperm", None)
    for number in table["deny"]:
        ins(JEQ, number, "eperm", None)
    ins(RET, RET_ALLOW)
    code.append(("label", "socket"))
    ins(LD, ARG0)
    ins(JEQ, 1, "allow", "eperm")  # AF_UNIX only
    code.append(("label", "signal"))  # only to itself or its own process group
    ins(LD, ARG0)
    ins(JEQ, 0, "allow", None)
    ins(JEQ, pid, "allow", None)
    ins(JEQ, (-pid) & 0xFFFFFFFF, "allow", "eperm")
    code.append(("label", "clone"))
    ins(LD, ARG0)
    ins(JSET, CLONE_THREAD, "allow", "eperm")
    code.append(("label", "allow"))
    ins(RET, RET_ALLOW)
    code.append(("label", "eperm"))
    ins(RET, RET_EPERM)
    code.append(("label", "enosys"))
    ins(RET, RET_ENOSYS)
    code.append(("label", "kill"))
    ins(RET, RET_KILL)

    positions, index = {}, 0
    for entry in code:
        if entry[0] == "label":
            positions[entry[1]] = index
        else:
            index += 1
    out, index = [], 0
    for entry in code:
        if entry[0] == "label":
            continue
        op, k, jt, jf = entry
        rel = lambda label: 0 if label is None else positions[label] - index - 1  # noqa: E731
        out.append((op, rel(jt), rel(jf), k))
        index += 1
    return out


def _seccomp():
    arch = platform.machine()
    if arch not in SYSCALLS:
        return f"seccomp: not on {arch}"
    program = _bpf_program(arch, os.getpid())
    filters = (_SockFilter * len(program))(*[_SockFilter(op, jt, jf, k) for op, jt, jf, k in program])
    fprog = _SockFprog(len(program), filters)
    if LIBC.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
        return f"seccomp: failed ({os.strerror(ctypes.get_errno())})"
    return "seccomp"


def _network_namespace():
    CLONE_NEWNET, CLONE_NEWUSER = 0x40000000, 0x10000000
    flags = CLONE_NEWNET if os.geteuid() == 0 else CLONE_NEWNET | CLONE_NEWUSER
    if LIBC.unshare(flags) == 0:
        return "network namespace"
    return f"network namespace: unavailable ({os.strerror(ctypes.get_errno())})"


def _limits(limits):
    cpu = int(limits["cpu_seconds"])
    memory = int(limits["memory_mb"]) * 1024 * 1024
    settings = [
        (resource.RLIMIT_CPU, (cpu, cpu + 1)),
        (resource.RLIMIT_AS, (memory, memory)),
        (resource.RLIMIT_FSIZE, (limits["file_bytes"], limits["file_bytes"])),
        (resource.RLIMIT_NOFILE, (64, 64)),
        (resource.RLIMIT_CORE, (0, 0)),
        (resource.RLIMIT_NPROC, (limits["processes"], limits["processes"])),
    ]
    for which, value in settings:
        try:
            resource.setrlimit(which, value)
        except (ValueError, OSError):
            pass
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writing past the limit then fails with EFBIG instead of killing
    return "rlimits"


def _drop_root():
    if os.geteuid() != 0:
        return "unprivileged user"
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)
    return "ran as nobody"


def _describe_error(error):
    if isinstance(error, MemoryError):
        return "memory limit exceeded"
    if isinstance(error, RecursionError):
        return "recursion too deep"
    if isinstance(error, PermissionError) or (isinstance(error, OSError) and error.errno in (errno.EPERM, errno.EACCES)):
        return f"forbidden operation: {error}"
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename == "<program>"]
    where = f" (line {frames[-1].lineno})" if frames else ""
    return f"{type(error).__name__}: {error}{where}"


def _jsonable(value):
    import decimal
    import fractions

    if isinstance(value, (fractions.Fraction, decimal.Decimal)):
        return float(value)
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def main():
    program_path, result_fd, limits = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
    result_pipe = os.fdopen(result_fd, "w")
    with open(program_path, encoding="utf-8") as handle:
        source = handle.read()
    scratch = os.getcwd()
    protections = [_network_namespace(), _limits(limits)]
    protections.append(_drop_root())
    LIBC.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS: required by Landlock and seccomp without privileges
    protections.append(_landlock(scratch, limits["read_paths"]))
    protections.append(_seccomp())

    def finish(ok, result=None, error=None):
        payload = {"ok": ok, "result": result, "error": error, "protections": protections}
        try:
            text = json.dumps(payload)
        except (TypeError, ValueError):
            payload.update(ok=False, result=None, error=f"solution() returned a {type(result).__name__}, which is not JSON-serialisable")
            text = json.dumps(payload)
        result_pipe.write(text)
        result_pipe.flush()

    namespace = {"__name__": "__sandbox__", "__builtins__": __builtins__}
    try:
        code = compile(source, "<program>", "exec")
    except SyntaxError as error:
        finish(False, error=f"syntax error: line {error.lineno}: {error.msg}")
        return
    except ValueError as error:  # null bytes
        finish(False, error=f"syntax error: {error}")
        return
    try:
        exec(code, namespace)
        solution = namespace.get("solution")
        if not callable(solution):
            finish(False, error="the program defines no solution() function")
            return
        value = _jsonable(solution())
    except BaseException as error:  # noqa: BLE001 -- everything the program raises is its own failure
        if isinstance(error, SystemExit):
            finish(False, error=f"the program called exit({error.code})")
        else:
            finish(False, error=_describe_error(error))
        return
    finish(True, value)


if __name__ == "__main__":
    main()
