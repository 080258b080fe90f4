"""Egress and isolation for bridge networks, with nftables (through libnftables, plain
text in, JSON out: `engine.nftables`).

One table per engine root, `inet shipyard_<hash of root>`, holds two base chains:
- `postrouting` (nat): masquerade a non-internal network's subnet when it leaves through any
  interface but its own bridge;
- `forward` (filter): drop traffic between two Shipyard bridges (networks are isolated from
  each other, as Docker's are), and for internal networks drop everything that would be
  forwarded into or out of the bridge.
Every rule carries the comment `sy:<network id prefix>`, so a network's rules are removed
exactly; the table goes with the last rule. Without nftables the stack still runs, with a
warning, but containers cannot reach beyond the host.

`net.ipv4.ip_forward` is set to 1 while this root has a network with egress rules; the value
found before is remembered in the run directory and put back when no Shipyard bridge is left
on the host.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from ipaddress import IPv4Network
from pathlib import Path

from engine import nftables, sha256
from engine.errors import Unavailable, warn
from engine.layout import Layout

IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
BRIDGE_PREFIX = "sy-"


class Egress:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        digest = sha256.hexdigest(str(layout.root))[:10]
        self.table = f"shipyard_{digest}"
        self._warned = False

    @property
    def available(self) -> bool:
        return nftables.available()

    def add(self, network_id: str, bridge: str, subnet: IPv4Network, *, internal: bool,
            masquerade: bool = True) -> bool:
        """Installs the network's rules. Returns False (after one warning) without `nft`."""
        if not self.available:
            if not self._warned:
                warn("nftables (Debian package nftables) is not installed: containers get "
                     "no egress beyond the host and networks are not isolated from "
                     "each other by the firewall")
                self._warned = True
            return False
        tag = _tag(network_id)
        t = f"inet {self.table}"
        rules = [
            # Isolation: nothing is forwarded from this bridge into another Shipyard bridge.
            f'add rule {t} forward iifname "{bridge}" oifname "{BRIDGE_PREFIX}*" '
            f'oifname != "{bridge}" drop comment "{tag}"',
        ]
        if internal:
            rules += [
                f'add rule {t} forward iifname "{bridge}" oifname != "{bridge}" drop '
                f'comment "{tag}"',
                f'add rule {t} forward oifname "{bridge}" iifname != "{bridge}" drop '
                f'comment "{tag}"',
            ]
        elif masquerade:
            rules.append(f'add rule {t} postrouting ip saddr {subnet} oifname != "{bridge}" '
                         f'masquerade comment "{tag}"')
        script = "\n".join([
            f"table {t} {{",
            "  chain postrouting { type nat hook postrouting priority srcnat; policy accept; }",
            "  chain forward { type filter hook forward priority filter; policy accept; }",
            "}",
            *rules,
        ]) + "\n"
        with self._locked():
            nftables.run(script)
        if not internal and masquerade:
            self._enable_forwarding()
        return True

    def rules(self) -> list[dict]:
        """The table's rules as nft JSON objects ({"family", "table", "chain", "handle",
        "comment", "expr"}); empty when the table does not exist."""
        if not self.available:
            return []
        try:
            out = nftables.run(f"list table inet {self.table}", json=True, handles=True)
        except Unavailable:
            return []  # no such table
        items = json.loads(out).get("nftables", [])
        return [item["rule"] for item in items if "rule" in item]

    def remove(self, network_id: str) -> None:
        """Removes the network's rules, and the table when none is left (idempotent)."""
        if not self.available:
            return
        tag = _tag(network_id)
        with self._locked():  # two removals at once must not each leave the other's rule
            rules = self.rules()
            mine = [r for r in rules if r.get("comment") == tag]
            if len(mine) == len(rules):  # the last network's rules (or an empty table)
                with contextlib.suppress(Unavailable):  # no table: nothing to delete
                    nftables.run(f"delete table inet {self.table}\n")
            elif mine:
                nftables.run("".join(f"delete rule inet {self.table} {r['chain']} handle "
                                     f"{r['handle']}\n" for r in mine))
        self._restore_forwarding()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialises this root's rule changes across threads and processes."""
        self.layout.run.mkdir(parents=True, exist_ok=True, mode=0o711)
        fd = os.open(self.layout.run / "egress.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                     0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- net.ipv4.ip_forward

    @property
    def _saved(self) -> Path:
        return self.layout.run / "ip_forward.saved"

    def _enable_forwarding(self) -> None:
        try:
            before = IP_FORWARD.read_text().strip()
            if before == "1":
                return
            self.layout.run.mkdir(parents=True, exist_ok=True, mode=0o711)
            if not self._saved.exists():
                self._saved.write_text(before)
            IP_FORWARD.write_text("1")
            warn(f"set net.ipv4.ip_forward=1 (was {before}) so containers reach beyond the "
                 "host; it is put back when the last Shipyard network is removed")
        except OSError as exc:
            warn(f"could not enable net.ipv4.ip_forward: {exc}")

    def _restore_forwarding(self) -> None:
        if not self._saved.exists() or _bridges_left():
            return
        try:
            IP_FORWARD.write_text(self._saved.read_text().strip() or "0")
            self._saved.unlink()
        except OSError as exc:
            warn(f"could not restore net.ipv4.ip_forward: {exc}")


def _tag(network_id: str) -> str:
    return f"sy:{network_id[:12]}"


def _bridges_left() -> bool:
    return any(p.name.startswith(BRIDGE_PREFIX) for p in Path("/sys/class/net").iterdir())
