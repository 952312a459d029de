"""The sandbox's child: lock a fresh process down with the kernel's own tools, then run the program.

Started by `pipelines.sandbox` as `python -I -S -B child.py PROGRAM REPORT_FD LIMITS_JSON`
in a new session, with an empty environment and a scratch directory as working directory. It
imports nothing from the project: it runs before, and under, the restrictions.

It holds whether the app runs as root or, as on a Space or a laptop, as an ordinary user -- the
same user as this process, who can otherwise reach every other process of that user (set their
limits, nice value, affinity, scheduler; connect to their sockets; watch their files). Two
processes take part:

- the *warden* (this process) makes the namespaces -- user (when not root), network, mount, PID --
  mounts a private tmpfs with a size and inode quota over the scratch directory, sets the
  resource limits, forks the *prisoner*, waits for it, and writes the report on REPORT_FD. Only
  the warden holds that descriptor, so the program cannot write or forge the report;
- the *prisoner* (PID 1 of the new PID namespace, so no other process of the host has a number it
  can name) drops root or its namespace capabilities, then Landlock (read-only interpreter and
  system libraries, the scratch directory only if it has a quota, no TCP, no abstract sockets or
  signals outside), then a default-deny seccomp allow-list: what pure Python computation needs,
  process-wide calls (limits, priority, affinity, scheduling, signals) only on itself, threads
  but no processes, no sockets of any family, no inotify, no namespaces, mounts or tracing. It
  reports what held before the program's first line, then runs the program and sends its result
  to the warden, which decides `ok` from the prisoner's exit status and the frames it sent.

Whatever the host lacks (user namespaces, Landlock) is skipped and named in `protections`; without
a quota'd tmpfs the scratch directory is read-only, so a program can never fill the disk.
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
    "math",
    "cmath",
    "fractions",
    "decimal",
    "statistics",
    "itertools",
    "functools",
    "operator",
    "collections",
    "datetime",
    "re",
    "string",
    "random",
    "heapq",
    "bisect",
    "numbers",
    "calendar",
    "textwrap",
)
for _name in ALLOWED_MODULES:
    __import__(_name)

LIBC = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1
NOBODY = 65534
MAX_FRAME_BYTES = 10_000_000

# --- Landlock (include/uapi/linux/landlock.h) -----------------------------------------------------
SYS_LANDLOCK = {"x86_64": (444, 445, 446), "aarch64": (444, 445, 446)}
FS_EXECUTE, FS_WRITE_FILE, FS_READ_FILE, FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
FS_ALL_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1, 5: (1 << 16) - 1}
NET_ALL = (1 << 0) | (1 << 1)  # bind_tcp, connect_tcp (ABI 4)
SCOPE_ALL = (1 << 0) | (1 << 1)  # abstract unix sockets, signals (ABI 6)

# --- seccomp: a default-deny allow-list (numbers from the kernel's unistd tables) --------------------
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
SYSCALLS = {
    "x86_64": {
        "read": 0,
        "write": 1,
        "open": 2,
        "close": 3,
        "stat": 4,
        "fstat": 5,
        "lstat": 6,
        "poll": 7,
        "lseek": 8,
        "mmap": 9,
        "mprotect": 10,
        "munmap": 11,
        "brk": 12,
        "rt_sigaction": 13,
        "rt_sigprocmask": 14,
        "rt_sigreturn": 15,
        "ioctl": 16,
        "pread64": 17,
        "pwrite64": 18,
        "readv": 19,
        "writev": 20,
        "access": 21,
        "pipe": 22,
        "select": 23,
        "sched_yield": 24,
        "mremap": 25,
        "msync": 26,
        "mincore": 27,
        "madvise": 28,
        "dup": 32,
        "dup2": 33,
        "pause": 34,
        "nanosleep": 35,
        "getitimer": 36,
        "alarm": 37,
        "setitimer": 38,
        "getpid": 39,
        "exit": 60,
        "uname": 63,
        "fcntl": 72,
        "flock": 73,
        "fsync": 74,
        "fdatasync": 75,
        "truncate": 76,
        "ftruncate": 77,
        "getdents": 78,
        "getcwd": 79,
        "chdir": 80,
        "fchdir": 81,
        "rename": 82,
        "mkdir": 83,
        "rmdir": 84,
        "creat": 85,
        "link": 86,
        "unlink": 87,
        "symlink": 88,
        "readlink": 89,
        "chmod": 90,
        "fchmod": 91,
        "umask": 95,
        "gettimeofday": 96,
        "getrlimit": 97,
        "getrusage": 98,
        "sysinfo": 99,
        "times": 100,
        "getuid": 102,
        "getgid": 104,
        "geteuid": 107,
        "getegid": 108,
        "getppid": 110,
        "getpgrp": 111,
        "getgroups": 115,
        "getresuid": 118,
        "getresgid": 120,
        "getpgid": 121,
        "getsid": 124,
        "sigaltstack": 131,
        "statfs": 137,
        "fstatfs": 138,
        "getpriority": 140,
        "prctl": 157,
        "arch_prctl": 158,
        "gettid": 186,
        "time": 201,
        "futex": 202,
        "sched_getaffinity": 204,
        "set_tid_address": 218,
        "getdents64": 217,
        "restart_syscall": 219,
        "clock_gettime": 228,
        "clock_getres": 229,
        "clock_nanosleep": 230,
        "exit_group": 231,
        "epoll_wait": 232,
        "epoll_ctl": 233,
        "openat": 257,
        "mkdirat": 258,
        "newfstatat": 262,
        "unlinkat": 263,
        "renameat": 264,
        "linkat": 265,
        "symlinkat": 266,
        "readlinkat": 267,
        "fchmodat": 268,
        "faccessat": 269,
        "pselect6": 270,
        "ppoll": 271,
        "set_robust_list": 273,
        "utimensat": 280,
        "epoll_pwait": 281,
        "eventfd2": 290,
        "epoll_create1": 291,
        "dup3": 292,
        "pipe2": 293,
        "preadv": 295,
        "pwritev": 296,
        "getrandom": 318,
        "statx": 332,
        "rseq": 334,
        "faccessat2": 439,
        "epoll_pwait2": 441,
        "futex_waitv": 449,
        "sched_getparam": 143,
        "sched_getscheduler": 145,
        "getcpu": 309,
        "fadvise64": 221,
        "rt_sigpending": 127,
        "rt_sigtimedwait": 128,
        "rt_sigsuspend": 130,
        "close_range": 436,
        "copy_file_range": 326,
        "fallocate": 285,
        "getxattr": 191,
        "lgetxattr": 192,
        "fgetxattr": 193,
        "listxattr": 194,
        "llistxattr": 195,
        "flistxattr": 196,
        "renameat2": 316,
        "sched_get_priority_max": 146,
        "sched_get_priority_min": 147,
        "clone": 56,
        "clone3": 435,
        "kill": 62,
        "tkill": 200,
        "tgkill": 234,
        "prlimit64": 302,
        "setpriority": 141,
        "sched_setaffinity": 203,
        "sched_setscheduler": 144,
        "sched_setparam": 142,
        "sched_setattr": 314,
        "openat2": 437,
        "capset": 126,
    },
    "aarch64": {
        "read": 63,
        "write": 64,
        "close": 57,
        "fstat": 80,
        "lseek": 62,
        "mmap": 222,
        "mprotect": 226,
        "munmap": 215,
        "brk": 214,
        "rt_sigaction": 134,
        "rt_sigprocmask": 135,
        "rt_sigreturn": 139,
        "ioctl": 29,
        "pread64": 67,
        "pwrite64": 68,
        "readv": 65,
        "writev": 66,
        "sched_yield": 124,
        "mremap": 216,
        "msync": 227,
        "mincore": 232,
        "madvise": 233,
        "dup": 23,
        "nanosleep": 101,
        "getitimer": 102,
        "setitimer": 103,
        "getpid": 172,
        "exit": 93,
        "uname": 160,
        "fcntl": 25,
        "flock": 32,
        "fsync": 82,
        "fdatasync": 83,
        "truncate": 45,
        "ftruncate": 46,
        "getcwd": 17,
        "chdir": 49,
        "fchdir": 50,
        "fchmod": 52,
        "umask": 166,
        "gettimeofday": 169,
        "getrlimit": 163,
        "getrusage": 165,
        "sysinfo": 179,
        "times": 153,
        "getuid": 174,
        "getgid": 176,
        "geteuid": 175,
        "getegid": 177,
        "getppid": 173,
        "getgroups": 158,
        "getresuid": 148,
        "getresgid": 150,
        "getpgid": 155,
        "getsid": 156,
        "sigaltstack": 132,
        "statfs": 43,
        "fstatfs": 44,
        "getpriority": 141,
        "prctl": 167,
        "gettid": 178,
        "futex": 98,
        "sched_getaffinity": 123,
        "set_tid_address": 96,
        "getdents64": 61,
        "restart_syscall": 128,
        "clock_gettime": 113,
        "clock_getres": 114,
        "clock_nanosleep": 115,
        "exit_group": 94,
        "epoll_ctl": 21,
        "openat": 56,
        "mkdirat": 34,
        "newfstatat": 79,
        "unlinkat": 35,
        "renameat": 38,
        "linkat": 37,
        "symlinkat": 36,
        "readlinkat": 78,
        "fchmodat": 53,
        "faccessat": 48,
        "pselect6": 72,
        "ppoll": 73,
        "set_robust_list": 99,
        "utimensat": 88,
        "epoll_pwait": 22,
        "eventfd2": 19,
        "epoll_create1": 20,
        "dup3": 24,
        "pipe2": 59,
        "preadv": 69,
        "pwritev": 70,
        "getrandom": 278,
        "statx": 291,
        "rseq": 293,
        "faccessat2": 439,
        "epoll_pwait2": 441,
        "futex_waitv": 449,
        "sched_getparam": 121,
        "sched_getscheduler": 120,
        "getcpu": 168,
        "fadvise64": 223,
        "rt_sigpending": 136,
        "rt_sigtimedwait": 137,
        "rt_sigsuspend": 133,
        "close_range": 436,
        "copy_file_range": 285,
        "fallocate": 47,
        "getxattr": 8,
        "lgetxattr": 9,
        "fgetxattr": 10,
        "listxattr": 11,
        "llistxattr": 12,
        "flistxattr": 13,
        "renameat2": 276,
        "sched_get_priority_max": 125,
        "sched_get_priority_min": 126,
        "clone": 220,
        "clone3": 435,
        "kill": 129,
        "tkill": 130,
        "tgkill": 131,
        "prlimit64": 261,
        "setpriority": 140,
        "sched_setaffinity": 122,
        "sched_setscheduler": 119,
        "sched_setparam": 118,
        "sched_setattr": 274,
        "openat2": 437,
        "capset": 91,
    },
}
# allowed only on the calling process itself: the first argument must be 0 (= self) or its own pid --
# the ones that change another process, and the ones that read another's scheduling or session
ON_SELF = (
    "prlimit64",
    "sched_setaffinity",
    "sched_setscheduler",
    "sched_setparam",
    "sched_setattr",
    "sched_getaffinity",
    "sched_getparam",
    "sched_getscheduler",
    "getpgid",
    "getsid",
)
SIGNALS = ("kill", "tkill", "tgkill")  # only to its own pid (never 0: that is the whole process group)
PRIORITY = ("setpriority", "getpriority")  # only PRIO_PROCESS on itself: PRIO_USER reaches every process of the uid
PRIO_PROCESS = 0
# fcntl commands that make the kernel signal another process when a descriptor is ready (F_SETOWN names
# it, F_SETSIG picks the signal: SIGKILL reached the app's processes where Landlock's signal scope is missing)
F_SETOWN, F_SETSIG, F_SETOWN_EX = 8, 10, 15
# ioctl requests with the same effect, or that reach a terminal: FIOSETOWN, SIOCSPGRP, TIOCSPGRP, TIOCSCTTY, TIOCSTI
IOCTL_REFUSED = (0x8901, 0x8902, 0x5410, 0x540E, 0x5412)
FS_WRITES = (
    "rename",
    "mkdir",
    "rmdir",
    "creat",
    "link",
    "unlink",
    "symlink",
    "chmod",
    "fchmod",
    "truncate",
    "mkdirat",
    "unlinkat",
    "renameat",
    "linkat",
    "symlinkat",
    "fchmodat",
    "utimensat",
    "fallocate",
    "renameat2",
)
SPECIAL = {"clone", "clone3", "openat2", "open", "openat", "capset", "fcntl", "ioctl", *PRIORITY, *ON_SELF, *SIGNALS}
ALLOWED = [name for name in SYSCALLS["x86_64"] if name not in SPECIAL and name not in FS_WRITES]
O_WRITE_FLAGS = 0o1 | 0o2 | 0o100 | 0o1000 | 0o2000  # O_WRONLY O_RDWR O_CREAT O_TRUNC O_APPEND
CLONE_THREAD = 0x00010000
RET_ALLOW, RET_KILL = 0x7FFF0000, 0x80000000
RET_EPERM, RET_ENOSYS = 0x00050000 | errno.EPERM, 0x00050000 | errno.ENOSYS

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x10000000, 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 1 << 14, 1 << 18


# --- the warden: namespaces, quota, limits ---------------------------------------------------------


def _write(path, text):
    with open(path, "w") as handle:
        handle.write(text)


def _namespaces(scratch, limits):
    """(protections, scratch writable): user/net/mount/PID namespaces and a quota'd tmpfs scratch."""
    root = os.geteuid() == 0
    uid, gid = os.geteuid(), os.getegid()
    if not limits.get("namespaces", True):
        return ["namespaces: off (as configured); scratch directory read-only"], False
    full = CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWPID | (0 if root else CLONE_NEWUSER)
    if LIBC.unshare(full) != 0:
        reason = os.strerror(ctypes.get_errno())
        fallback = CLONE_NEWNET | (0 if root else CLONE_NEWUSER)
        if LIBC.unshare(fallback) == 0:
            return [f"network namespace (no mount/PID namespace: {reason}); scratch directory read-only"], False
        return [f"namespaces: unavailable ({reason}); scratch directory read-only"], False
    notes = ["network namespace", "PID namespace"]
    if not root:
        try:
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/uid_map", f"0 {uid} 1")
            _write("/proc/self/gid_map", f"0 {gid} 1")
        except OSError as error:
            return notes + [f"user namespace: no id map ({error.strerror}); scratch directory read-only"], False
        notes.insert(0, "user namespace")
    owner = NOBODY if root else 0  # the prisoner's uid as this mount namespace sees it
    options = (
        f"size={int(limits['disk_bytes'])},nr_inodes={int(limits['files']) + 1},mode=0700,uid={owner},gid={owner}"
    ).encode()
    if (
        LIBC.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0
        or LIBC.mount(b"tmpfs", scratch.encode(), b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, options) != 0
    ):
        return notes + [
            f"tmpfs quota: unavailable ({os.strerror(ctypes.get_errno())}); scratch directory read-only"
        ], False
    os.chdir(scratch)  # into the tmpfs now mounted over it
    notes.append(f"scratch quota: {int(limits['disk_bytes']) // 1000:,} kB, {int(limits['files'])} files")
    return notes, True


def _limits(limits):
    cpu = int(limits["cpu_seconds"])
    memory = int(limits["memory_mb"]) * 1024 * 1024
    settings = [
        (resource.RLIMIT_CPU, (cpu, cpu + 1)),
        (resource.RLIMIT_AS, (memory, memory)),
        (resource.RLIMIT_FSIZE, (limits["file_bytes"], limits["file_bytes"])),
        (resource.RLIMIT_NOFILE, (64, 64)),
        (resource.RLIMIT_CORE, (0, 0)),
    ]
    if os.geteuid() == 0:  # counted per user: only meaningful for `nobody`, never for the app's own user
        settings.append((resource.RLIMIT_NPROC, (limits["processes"], limits["processes"])))
    for which, value in settings:
        try:
            resource.setrlimit(which, value)
        except (ValueError, OSError):
            pass
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writing past the limit then fails with EFBIG instead of killing
    return "rlimits"


# --- the prisoner: identity, Landlock, seccomp --------------------------------------------------------


def _drop_privileges():
    """Root of the host becomes `nobody`; root of our own user namespace (or anyone) keeps no capabilities."""
    arch = platform.machine()
    if os.geteuid() == 0 and _real_root():
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        return "ran as nobody"
    if arch in SYSCALLS:  # namespace root or an ordinary user: no capabilities of any kind
        header = struct.pack("II", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
        data = ctypes.create_string_buffer(24)  # two zeroed __user_cap_data_struct: effective, permitted, inheritable
        if LIBC.syscall(SYSCALLS[arch]["capset"], ctypes.create_string_buffer(header, 8), data) != 0:
            return f"capabilities: not dropped ({os.strerror(ctypes.get_errno())})"
    return "no capabilities"


def _real_root():
    """Root of the host, not of a user namespace this process made."""
    try:
        with open("/proc/self/uid_map") as handle:
            first = handle.read().split()
        return first[:2] == ["0", "0"]
    except OSError:
        return False


def _landlock(scratch, read_paths, writable, abi_wanted=7):
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
    read_only = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR
    file_rights = FS_EXECUTE | FS_READ_FILE | FS_WRITE_FILE | (1 << 14 if abi >= 3 else 0)
    rules = [(path, read_only) for path in read_paths]
    rules += [
        (scratch, handled_fs if writable else FS_READ_FILE | FS_READ_DIR),
        ("/dev/null", FS_READ_FILE | FS_WRITE_FILE),
    ]
    for path, rights in rules:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            continue
        if not os.path.isdir(path):  # a file accepts file rights only
            rights &= file_rights
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


def bpf_program(arch, pid, writable):
    """The allow-list as (code, jt, jf, k): each rule is a short block right after its syscall test,
    so no jump is longer than a few instructions (classic BPF jumps reach 255)."""
    table = SYSCALLS[arch]
    LD, JEQ, JSET, RET = 0x20, 0x15, 0x45, 0x06
    NR, ARCH = 0, 4

    def arg(n):  # low word of args[n] in struct seccomp_data (little-endian)
        return 16 + 8 * n

    out = [(LD, 0, 0, ARCH), (JEQ, 1, 0, AUDIT_ARCH[arch]), (RET, 0, 0, RET_KILL), (LD, 0, 0, NR)]
    if arch == "x86_64":  # the x32 ABI reuses numbers with bit 30 set: refuse it outright
        out += [(JSET, 0, 1, 0x40000000), (RET, 0, 0, RET_KILL)]

    def rule(name, block):
        number = table.get(name)
        if number is not None:
            out.append((JEQ, 0, len(block), number))
            out.extend(block)

    allow, eperm = (RET, 0, 0, RET_ALLOW), (RET, 0, 0, RET_EPERM)

    def refuse_values(n, values):  # argument n equal to any of `values`: EPERM; anything else: allowed
        tests = [(JEQ, len(values) - i, 0, value) for i, value in enumerate(values)]
        return [(LD, 0, 0, arg(n)), *tests, allow, eperm]

    for name in ALLOWED:
        rule(name, [allow])
    if writable:
        for name in FS_WRITES:
            rule(name, [allow])
    for name, flags_arg in (("open", 1), ("openat", 2)):
        rule(name, [allow] if writable else [(LD, 0, 0, arg(flags_arg)), (JSET, 0, 1, O_WRITE_FLAGS), eperm, allow])
    rule("clone", [(LD, 0, 0, arg(0)), (JSET, 0, 1, CLONE_THREAD), allow, eperm])  # threads, never processes
    rule("clone3", [(RET, 0, 0, RET_ENOSYS)])  # glibc then falls back to clone, whose flags can be read
    rule("openat2", [(RET, 0, 0, RET_ENOSYS)])  # its flags are behind a pointer: fall back to openat
    for name in PRIORITY:  # (which, who): which == PRIO_PROCESS and who is 0 or itself
        rule(
            name,
            [
                (LD, 0, 0, arg(0)),
                (JEQ, 0, 3, PRIO_PROCESS),
                (LD, 0, 0, arg(1)),
                (JEQ, 2, 0, 0),
                (JEQ, 1, 0, pid),
                eperm,
                allow,
            ],
        )
    for name in ON_SELF:
        rule(name, [(LD, 0, 0, arg(0)), (JEQ, 2, 0, 0), (JEQ, 1, 0, pid), eperm, allow])
    rule("fcntl", refuse_values(1, (F_SETOWN, F_SETSIG, F_SETOWN_EX)))
    rule("ioctl", refuse_values(1, IOCTL_REFUSED))
    for name in SIGNALS:
        rule(name, [(LD, 0, 0, arg(0)), (JEQ, 1, 0, pid), eperm, allow])
    out.append(eperm)  # everything else: sockets, inotify, ptrace, namespaces, mounts, keys, bpf, io_uring...
    return out


def _seccomp(writable):
    arch = platform.machine()
    if arch not in SYSCALLS:
        return f"seccomp: not on {arch}"
    program = bpf_program(arch, os.getpid(), writable)
    filters = (_SockFilter * len(program))(*[_SockFilter(op, jt, jf, k) for op, jt, jf, k in program])
    fprog = _SockFprog(len(program), filters)
    if LIBC.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
        return f"seccomp: failed ({os.strerror(ctypes.get_errno())})"
    return "seccomp allow-list"


def _describe_error(error):
    if isinstance(error, MemoryError):
        return "memory limit exceeded"
    if isinstance(error, RecursionError):
        return "recursion too deep"
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return "the scratch directory's quota is full (no space left)"
    if isinstance(error, PermissionError) or (
        isinstance(error, OSError) and error.errno in (errno.EPERM, errno.EACCES)
    ):
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


def _frame(pipe_fd, payload):
    data = (json.dumps(payload) + "\n").encode()
    view = memoryview(data)
    while view:
        view = view[os.write(pipe_fd, view) :]


def _prisoner(source, pipe_fd, scratch, limits, writable):
    """Lock down, report what held, run the program, send its result as a second frame."""
    protections = [_drop_privileges()]
    # dies with the warden (after the identity change, which clears a death signal set before it); if the
    # warden died first, the report frame below finds no reader and the program never runs
    LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    LIBC.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS: required by Landlock and seccomp without privileges
    protections.append(_landlock(scratch, limits["read_paths"], writable))
    protections.append(_seccomp(writable))
    _frame(pipe_fd, {"protections": protections})

    def finish(ok, result=None, error=None):
        payload = {"ok": ok, "result": result, "error": error}
        try:
            _frame(pipe_fd, payload)
        except (TypeError, ValueError, RecursionError):
            _frame(
                pipe_fd,
                {
                    "ok": False,
                    "result": None,
                    "error": f"solution() returned a {type(result).__name__}, which is not JSON-serialisable",
                },
            )

    namespace = {"__name__": "__sandbox__", "__builtins__": __builtins__}
    try:
        code = compile(source, "<program>", "exec")
    except SyntaxError as error:
        return finish(False, error=f"syntax error: line {error.lineno}: {error.msg}")
    except ValueError as error:  # null bytes
        return finish(False, error=f"syntax error: {error}")
    try:
        exec(code, namespace)
        solution = namespace.get("solution")
        if not callable(solution):
            return finish(False, error="the program defines no solution() function")
        value = _jsonable(solution())
    except BaseException as error:  # noqa: BLE001 -- everything the program raises is its own failure
        if isinstance(error, SystemExit):
            return finish(False, error=f"the program called exit({error.code})")
        return finish(False, error=_describe_error(error))
    finish(True, value)


# --- the warden's verdict -----------------------------------------------------------------------------


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _drain(sources):
    """Read every pipe to its end at once (no writer ever blocks), keeping at most `keep` bytes of each
    and passing those on to `forward` as they come: {name: (kept bytes, total bytes)}. A flood of output
    is read and dropped here, in the sandbox's own process, so it never costs the app more than what is kept."""
    import selectors

    selector = selectors.DefaultSelector()
    kept, totals = {}, {}
    for name, (fd, keep, forward) in sources.items():
        selector.register(fd, selectors.EVENT_READ, (name, keep, forward))
        kept[name], totals[name] = bytearray(), 0
    while selector.get_map():
        for key, _ in selector.select():
            name, keep, forward = key.data
            block = os.read(key.fd, 65536)
            if not block:
                selector.unregister(key.fd)
                os.close(key.fd)
                continue
            if len(kept[name]) < keep:
                part = block[: keep - len(kept[name])]
                kept[name] += part
                if forward is not None:
                    _write_all(forward, part)
            totals[name] += len(block)
    return {name: (bytes(kept[name]), totals[name]) for name in kept}


def _frames(raw, total):
    if total > MAX_FRAME_BYTES:
        return None
    frames = []
    for line in raw.split(b"\n"):
        if not line:
            continue
        try:
            frames.append(json.loads(line.decode("utf-8", errors="replace")))
        except (ValueError, RecursionError):
            return None
    return frames


def _signal_error(number, limits):
    if number in (signal.SIGXCPU, signal.SIGKILL):
        return f"CPU time limit exceeded ({limits['cpu_seconds']} s)"
    if number == signal.SIGSEGV:
        return "the program crashed (segmentation fault: recursion too deep, or memory limit)"
    if number == signal.SIGSYS:
        return "forbidden operation (blocked system call)"
    try:
        return f"the program was killed by signal {signal.Signals(number).name}"
    except ValueError:
        return f"the program was killed by signal {number}"


def verdict(frames, status, limits):
    """(ok, result, error, prisoner's protections) from the prisoner's frames and exit status."""
    if frames is None:
        return False, None, "the program flooded or garbled its result channel", []
    first = frames[0] if frames else None
    protections = first.get("protections") if isinstance(first, dict) else None
    if not isinstance(protections, list) or not all(isinstance(p, str) for p in protections):
        return False, None, "the sandbox did not come up", []
    if os.WIFSIGNALED(status):
        return False, None, _signal_error(os.WTERMSIG(status), limits), protections
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
    outcome = frames[1] if len(frames) == 2 else None
    if not isinstance(outcome, dict) or set(outcome) != {"ok", "result", "error"}:
        if len(frames) > 2:
            return False, None, "the program wrote to the sandbox's result channel", protections
        return False, None, f"the program ended without a result (exit status {code})", protections
    if code != 0:
        return False, None, f"the program ended with exit status {code} after sending a result", protections
    ok = outcome["ok"] is True
    error = None if ok else str(outcome.get("error") or "the program failed")[:2000]
    return ok, outcome["result"] if ok else None, error, protections


def main():
    program_path, report_fd, limits = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
    # the warden dies with the app's process that started it (its prisoner then dies with it): a program must
    # not outlive a caller that was killed; a caller already gone before this line leaves nothing to run for
    LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if limits.get("parent") and os.getppid() != limits["parent"]:
        os._exit(1)
    report = os.fdopen(report_fd, "w")
    with open(program_path, encoding="utf-8", errors="surrogateescape") as handle:
        source = handle.read()
    scratch = os.getcwd()
    protections, writable = _namespaces(scratch, limits)
    protections.append(_limits(limits))
    read_end, write_end = os.pipe()
    out_read, out_write = os.pipe()  # the program's stdout and stderr come through the warden, capped
    err_read, err_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the prisoner: never returns into the warden's code
        try:
            os.dup2(out_write, 1)
            os.dup2(err_write, 2)
            for fd in (read_end, report_fd, out_read, out_write, err_read, err_write):
                os.close(fd)
            _prisoner(source, write_end, scratch, limits, writable)
        finally:
            for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
                try:
                    stream.flush()  # what the program printed; os._exit skips the interpreter's own flush
                except Exception:  # noqa: BLE001 - a program may have replaced or closed them
                    pass
            os._exit(0)
    for fd in (write_end, out_write, err_write):
        os.close(fd)
    output = int(limits.get("output_bytes", 40_000))
    got = _drain(
        {
            "frames": (read_end, MAX_FRAME_BYTES, None),
            "stdout": (out_read, output, 1),
            "stderr": (err_read, 4_000, 2),
        }
    )
    frames = _frames(*got["frames"])
    _, status = os.waitpid(pid, 0)
    ok, result, error, prisoner = verdict(frames, status, limits)
    payload = {
        "ok": ok,
        "result": result,
        "error": error,
        "protections": protections + prisoner,
        "stdout_bytes": got["stdout"][1],
    }
    try:
        text = json.dumps(payload)
    except (TypeError, ValueError, RecursionError):
        text = json.dumps({**payload, "ok": False, "result": None, "error": "the result cannot be sent back as JSON"})
    report.write(text)
    report.flush()


if __name__ == "__main__":
    main()
