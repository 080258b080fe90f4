"""The default seccomp profile as data, and loading an OCI seccomp profile via libseccomp.

The profile is Docker's default in spirit, written as a deny list: the syscalls below fail
with EPERM (clone3 with ENOSYS, so libc falls back to clone, whose namespace flags are
filtered), unless the container holds the capability that makes them legitimate.
`profile(caps)` builds the OCI `linux.seccomp` object (runc applies the same), `program`
turns a profile into a BPF program through libseccomp.so.2 (ctypes; stdlib only), once per
profile, and `install` attaches such a program to the calling process (`load` = both).
"""

from __future__ import annotations

import ctypes
import errno
import os

EPERM = errno.EPERM
ENOSYS = errno.ENOSYS

# (syscall names, errno, capability that lifts the ban or None)
DENY = (
    (("acct",), EPERM, "CAP_SYS_PACCT"),
    (("add_key", "keyctl", "request_key"), EPERM, None),
    (("bpf",), EPERM, "CAP_SYS_ADMIN"),
    (("clock_adjtime", "clock_settime", "settimeofday", "stime"), EPERM, "CAP_SYS_TIME"),
    (("create_module", "delete_module", "finit_module", "init_module", "get_kernel_syms",
      "query_module"), EPERM, "CAP_SYS_MODULE"),
    (("get_mempolicy", "mbind", "set_mempolicy", "move_pages"), EPERM, "CAP_SYS_NICE"),
    (("ioperm", "iopl"), EPERM, "CAP_SYS_RAWIO"),
    (("kcmp", "process_vm_readv", "process_vm_writev", "ptrace"), EPERM, "CAP_SYS_PTRACE"),
    (("kexec_file_load", "kexec_load", "reboot"), EPERM, "CAP_SYS_BOOT"),
    (("lookup_dcookie", "perf_event_open", "quotactl", "quotactl_fd"), EPERM, "CAP_SYS_ADMIN"),
    (("mount", "umount", "umount2", "pivot_root", "setns", "unshare", "name_to_handle_at",
      "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr",
      "syslog"), EPERM, "CAP_SYS_ADMIN"),
    (("open_by_handle_at",), EPERM, "CAP_DAC_READ_SEARCH"),
    (("nfsservctl", "sysfs", "_sysctl", "uselib", "ustat", "vm86", "vm86old",
      "userfaultfd"), EPERM, None),
    (("swapon", "swapoff"), EPERM, "CAP_SYS_ADMIN"),
    (("clone3",), ENOSYS, "CAP_SYS_ADMIN"),
)

# clone(2) flags that make namespaces: refused without CAP_SYS_ADMIN.
CLONE_NS_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000,
                  0x40000000)

ARCHITECTURES = {
    "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
}


def profile(caps: list[str] | tuple[str, ...], machine: str = "x86_64") -> dict:
    """The OCI `linux.seccomp` object for a container holding `caps` (pure)."""
    held = set(caps)
    rules: list[dict] = []
    for names, err, lifting_cap in DENY:
        if lifting_cap is not None and lifting_cap in held:
            continue
        rules.append({"names": list(names), "action": "SCMP_ACT_ERRNO", "errnoRet": err})
    if "CAP_SYS_ADMIN" not in held:
        for flag in CLONE_NS_FLAGS:
            rules.append({"names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM,
                          "args": [{"index": 0, "value": flag, "valueTwo": flag,
                                    "op": "SCMP_CMP_MASKED_EQ"}]})
    return {"defaultAction": "SCMP_ACT_ALLOW",
            "architectures": list(ARCHITECTURES.get(machine, [])),
            "syscalls": rules}


# ---- loading (libseccomp) ----------------------------------------------------------------

_ACTIONS = {"SCMP_ACT_KILL": 0x00000000, "SCMP_ACT_KILL_THREAD": 0x00000000,
            "SCMP_ACT_KILL_PROCESS": 0x80000000, "SCMP_ACT_TRAP": 0x00030000,
            "SCMP_ACT_ERRNO": 0x00050000, "SCMP_ACT_TRACE": 0x7FF00000,
            "SCMP_ACT_LOG": 0x7FFC0000, "SCMP_ACT_ALLOW": 0x7FFF0000}
_OPS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
        "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}
_ARCH_TOKENS = {"SCMP_ARCH_X86": 0x40000003, "SCMP_ARCH_X86_64": 0xC000003E,
                "SCMP_ARCH_X32": 0x4000003E, "SCMP_ARCH_ARM": 0x40000028,
                "SCMP_ARCH_AARCH64": 0xC00000B7}
_FLTATR_CTL_NNP = 3
_FLTATR_CTL_OPTIMIZE = 8


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


def _action(name: str, errno_ret: int | None) -> int:
    base = _ACTIONS[name]
    if name in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"):
        return base | ((EPERM if errno_ret is None else errno_ret) & 0xFFFF)
    return base


_lib: ctypes.CDLL | None = None


def preload() -> ctypes.CDLL:
    """Opens libseccomp now (before pivot_root or setns into a mount namespace, where the
    host's library is out of sight) and keeps it for `program`."""
    global _lib
    if _lib is None:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
        lib.seccomp_init.restype = ctypes.c_void_p
        lib.seccomp_init.argtypes = [ctypes.c_uint32]
        lib.seccomp_release.argtypes = [ctypes.c_void_p]
        lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                               ctypes.c_uint, ctypes.POINTER(_ArgCmp)]
        lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
        lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
        lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
        _lib = lib
    return _lib


def program(spec: dict) -> bytes:
    """The OCI seccomp profile `spec` as a classic BPF program (struct sock_filter array),
    built by libseccomp once per profile and process tree: the result is remembered, so
    the fork server's and the shim's children, restarts and healthchecks reuse it. Raises
    OSError."""
    # Identity first (a shim's restarts and probes pass the same dict), then equality (a
    # fork server's children match the default profile it built): no copy, no key string,
    # so few of the server's pages get written in each child.
    for known, code in _programs:
        if known is spec:
            return code
    for known, code in _programs:
        if known == spec:
            _programs.append((spec, code))
            return code
    code = _build(spec)
    _programs.append((spec, code))
    return code


_programs: list[tuple[dict, bytes]] = []


def _build(spec: dict) -> bytes:
    lib = preload()
    ctx = lib.seccomp_init(_action(spec.get("defaultAction", "SCMP_ACT_ALLOW"),
                                   spec.get("defaultErrnoRet")))
    if not ctx:
        raise OSError(errno.EINVAL, "seccomp_init failed")
    try:
        def check(rc: int, what: str) -> None:
            if rc < 0 and rc != -errno.EEXIST:
                raise OSError(-rc, f"seccomp: {what}: {errno.errorcode.get(-rc, rc)}")

        # no_new_privs is the loader's business (`install`), not the program's
        check(lib.seccomp_attr_set(ctx, _FLTATR_CTL_NNP, 0), "no_new_privs attribute")
        # A binary tree of syscall numbers rather than a list: the same decisions, but
        # the kernel attaches it ~4x faster (on attach it runs the program for every
        # syscall number to cache the always-allowed ones) and each syscall of the
        # container walks ~log n compares instead of n. libseccomp < 2.5 lacks it.
        lib.seccomp_attr_set(ctx, _FLTATR_CTL_OPTIMIZE, 2)
        for arch in spec.get("architectures") or ():
            if arch in _ARCH_TOKENS:
                check(lib.seccomp_arch_add(ctx, _ARCH_TOKENS[arch]), f"arch {arch}")
        for rule in spec.get("syscalls") or ():
            action = _action(rule["action"], rule.get("errnoRet"))
            args = rule.get("args") or []
            array = (_ArgCmp * max(1, len(args)))()
            for i, a in enumerate(args):
                array[i] = _ArgCmp(a["index"], _OPS[a["op"]], a.get("value", 0),
                                   a.get("valueTwo", 0))
            for name in rule["names"]:
                nr = lib.seccomp_syscall_resolve_name(name.encode())
                if nr < 0:  # not a syscall on this architecture
                    continue
                check(lib.seccomp_rule_add_array(ctx, action, nr, len(args), array),
                      f"rule for {name}")
        fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
        try:
            check(lib.seccomp_export_bpf(ctx, fd), "export")
            size = os.lseek(fd, 0, os.SEEK_END)
            code = os.pread(fd, size, 0)
        finally:
            os.close(fd)
    finally:
        lib.seccomp_release(ctx)
    if not code or len(code) % 8 or len(code) // 8 > 0xFFFF:
        raise OSError(errno.EINVAL, f"seccomp: unusable program of {len(code)} bytes")
    return code


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2


def install(code: bytes, set_no_new_privs: bool = False) -> None:
    """Attaches the BPF program `code` (from `program`) to this process, as libseccomp's
    seccomp_load does by default (no flags). Without no_new_privs the caller must hold
    CAP_SYS_ADMIN. Raises OSError."""
    try:
        from . import syscalls
    except ImportError:  # imported by path from the shim
        import syscalls  # type: ignore[no-redef]

    def prctl(what: str, *args: int) -> None:
        try:
            syscalls.prctl(*args)
        except OSError as e:
            raise OSError(e.errno, f"seccomp: {what}: {errno.errorcode.get(e.errno, e.errno)}") \
                from None

    if set_no_new_privs:
        prctl("no_new_privs", syscalls.PR_SET_NO_NEW_PRIVS, 1)
    buffer = ctypes.create_string_buffer(code, len(code))
    fprog = _SockFprog(len(code) // 8, ctypes.addressof(buffer))
    prctl("load", _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(fprog))


def load(spec: dict, set_no_new_privs: bool = False) -> None:
    """Installs the OCI seccomp profile `spec` in this process. Without no_new_privs the
    caller must still hold CAP_SYS_ADMIN. Raises OSError."""
    install(program(spec), set_no_new_privs)
