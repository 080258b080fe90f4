"""Linux capabilities as data: names, numbers, Docker's default set, and set arithmetic.

Pure and stdlib only (the shim and the container's init import it by path). Applying a set
to a process is `init.py`'s job.
"""

from __future__ import annotations

# Capability numbers from <linux/capability.h>.
NUMBERS = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3,
    "CAP_FSETID": 4, "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21, "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25, "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27,
    "CAP_LEASE": 28, "CAP_AUDIT_WRITE": 29, "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32, "CAP_MAC_ADMIN": 33, "CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36, "CAP_AUDIT_READ": 37, "CAP_PERFMON": 38, "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}

# Docker's default capability set (moby's oci/caps defaults).
DEFAULT = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)


class UnknownCapability(ValueError):
    """A capability name that Linux does not define."""


def normalize(name: str) -> str:
    """'net_admin', 'NET_ADMIN' and 'CAP_NET_ADMIN' all mean CAP_NET_ADMIN; 'ALL' stays."""
    upper = name.strip().upper()
    if upper == "ALL":
        return upper
    full = upper if upper.startswith("CAP_") else "CAP_" + upper
    if full not in NUMBERS:
        raise UnknownCapability(name)
    return full


def resolve(cap_add: tuple[str, ...] | list[str] = (), cap_drop: tuple[str, ...] | list[str] = (),
            privileged: bool = False) -> list[str]:
    """The container's capability list, Docker's rules: start from the default set (or all,
    when privileged), add cap_add ("ALL" = every capability), then remove cap_drop ("ALL" =
    everything not explicitly added). Raises UnknownCapability."""
    adds = [normalize(c) for c in cap_add]
    drops = [normalize(c) for c in cap_drop]
    if privileged:
        return sorted(NUMBERS, key=NUMBERS.__getitem__)
    base = set(NUMBERS) if "ALL" in adds else set(DEFAULT) | set(adds)
    if "ALL" in drops:
        base = {c for c in adds if c != "ALL"}
    else:
        base -= set(drops)
    return sorted(base, key=NUMBERS.__getitem__)


def mask(names: list[str] | tuple[str, ...], last_cap: int = 63) -> int:
    """Bit mask of the known names whose number is at most last_cap (unknown names ignored:
    a newer spec may name capabilities this kernel lacks)."""
    bits = 0
    for name in names:
        number = NUMBERS.get(name)
        if number is not None and number <= last_cap:
            bits |= 1 << number
    return bits


def names(bits: int) -> list[str]:
    return [n for n, v in sorted(NUMBERS.items(), key=lambda kv: kv[1]) if bits >> v & 1]
