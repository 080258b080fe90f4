"""The seccomp BPF programs the runtime builds, run in a classic-BPF interpreter (no root,
no kernel): the binary-tree layout decides every syscall exactly as libseccomp's plain
list does, and the remembered programs are reused, not rebuilt."""

from __future__ import annotations

import ctypes.util
import errno
import struct

import pytest

from engine.runtime import caps, seccomp

pytestmark = pytest.mark.skipif(ctypes.util.find_library("seccomp") is None,
                                reason="libseccomp is missing")

AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_I386 = 0x40000003
AUDIT_ARCH_AARCH64 = 0xC00000B7
X32_BIT = 0x40000000
RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000
CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET, SIGCHLD = 0x20000, 0x10000000, 0x40000000, 17


ALU = {0x00: lambda a, b: a + b, 0x10: lambda a, b: a - b, 0x20: lambda a, b: a * b,
       0x40: lambda a, b: a | b, 0x50: lambda a, b: a & b, 0x60: lambda a, b: a << b,
       0x70: lambda a, b: a >> b, 0x80: lambda a, _b: -a, 0xA0: lambda a, b: a ^ b}


def run_bpf(code: bytes, nr: int, arch: int, args: tuple[int, ...] = ()) -> int:
    """Classic BPF as the kernel runs a seccomp filter over struct seccomp_data."""
    args = tuple(args) + (0,) * (6 - len(args))
    data = struct.pack("<iIQ6Q", nr, arch, 0, *args)
    insns = [struct.unpack_from("<HBBI", code, i) for i in range(0, len(code), 8)]
    a = x = 0
    mem = [0] * 16
    pc = 0
    while True:
        op, jt, jf, k = insns[pc]
        pc += 1
        cls = op & 0x07
        if cls == 0x00:  # LD
            mode = op & 0xE0
            if mode == 0x20:
                a = struct.unpack_from("<I", data, k)[0]
            elif mode == 0x00:
                a = k
            elif mode == 0x60:
                a = mem[k]
            else:
                raise AssertionError(f"unknown LD mode {op:#x}")
        elif cls == 0x01:  # LDX
            x = mem[k] if op & 0xE0 == 0x60 else k
        elif cls == 0x02:  # ST
            mem[k] = a
        elif cls == 0x03:  # STX
            mem[k] = x
        elif cls == 0x04:  # ALU
            a = ALU[op & 0xF0](a, x if op & 0x08 else k) & 0xFFFFFFFF
        elif cls == 0x05:  # JMP
            src = x if op & 0x08 else k
            jmp = op & 0xF0
            if jmp == 0x00:
                pc += k
                continue
            taken = {0x10: a == src, 0x20: a > src, 0x30: a >= src, 0x40: bool(a & src)}[jmp]
            pc += jt if taken else jf
        elif cls == 0x06:  # RET
            return a if op & 0x18 == 0x10 else k
        elif cls == 0x07:  # MISC
            if op & 0xF8 == 0x00:
                x = a
            else:
                a = x
        else:
            raise AssertionError(f"unknown opcode {op:#x}")


def cases() -> list[tuple[int, int, tuple[int, ...]]]:
    out: list[tuple[int, int, tuple[int, ...]]] = []
    flags = (0, SIGCHLD, CLONE_NEWNS, CLONE_NEWUSER | SIGCHLD, CLONE_NEWNET, 0x7E020000)
    for nr in range(0, 470):
        out.append((nr, AUDIT_ARCH_X86_64, ()))
        out.append((nr, AUDIT_ARCH_I386, ()))
        out.append((nr | X32_BIT, AUDIT_ARCH_X86_64, ()))
    for nr, arch in ((56, AUDIT_ARCH_X86_64), (120, AUDIT_ARCH_I386)):  # clone
        out += [(nr, arch, (f, 1 << 40 | f)) for f in flags]
    out.append((0, AUDIT_ARCH_AARCH64, ()))
    return out


@pytest.mark.parametrize("held", [list(caps.DEFAULT), [*caps.DEFAULT, "CAP_SYS_ADMIN"], []],
                         ids=["default", "sys_admin", "none"])
def test_tree_layout_decides_like_the_plain_list(held: list[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    profile = seccomp.profile(held, "x86_64")
    tree = seccomp._build(profile)
    monkeypatch.setattr(seccomp, "_FLTATR_CTL_OPTIMIZE", seccomp._FLTATR_CTL_NNP)  # no-op
    plain = seccomp._build(profile)
    assert tree != plain  # the layouts differ...
    for nr, arch, args in cases():  # ...the decisions do not
        assert run_bpf(tree, nr, arch, args) == run_bpf(plain, nr, arch, args), (nr, arch, args)


def test_default_program_denies_and_allows() -> None:
    code = seccomp.program(seccomp.profile(list(caps.DEFAULT), "x86_64"))
    unshare, keyctl, clone3, getpid, clone = 272, 250, 435, 39, 56
    assert run_bpf(code, unshare, AUDIT_ARCH_X86_64) == RET_ERRNO | errno.EPERM
    assert run_bpf(code, keyctl, AUDIT_ARCH_X86_64) == RET_ERRNO | errno.EPERM
    assert run_bpf(code, clone3, AUDIT_ARCH_X86_64) == RET_ERRNO | errno.ENOSYS
    assert run_bpf(code, getpid, AUDIT_ARCH_X86_64) == RET_ALLOW
    assert run_bpf(code, clone, AUDIT_ARCH_X86_64, (SIGCHLD,)) == RET_ALLOW
    assert run_bpf(code, clone, AUDIT_ARCH_X86_64, (CLONE_NEWNS | SIGCHLD,)) == \
        RET_ERRNO | errno.EPERM
    assert run_bpf(code, 26, AUDIT_ARCH_I386) == RET_ERRNO | errno.EPERM  # i386 ptrace
    assert run_bpf(code, 0, AUDIT_ARCH_AARCH64) & 0xFFFF0000 != RET_ALLOW  # foreign arch


def test_programs_are_remembered_by_identity_and_content() -> None:
    profile = seccomp.profile(list(caps.DEFAULT), "x86_64")
    first = seccomp.program(profile)
    assert seccomp.program(profile) is first
    copy = {**profile, "syscalls": [dict(r) for r in profile["syscalls"]]}
    assert seccomp.program(copy) is first  # equal content: no second build
    other = seccomp.profile([*caps.DEFAULT, "CAP_SYS_ADMIN"], "x86_64")
    assert seccomp.program(other) != first
