"""DNS wire format, answer logic, resolv.conf/hosts text, and the resolver process on loopback
(a high port, so no root is needed; the only upstream is a fake one on 127.0.0.1)."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from engine import dnsserver as w
from engine.dns import hosts_file, parse_resolv_conf, resolv_conf


def test_query_round_trip_lowercases_the_name() -> None:
    data = w.build_query("Web.Example.", w.TYPE_AAAA, qid=0x1234)
    q = w.parse_query(data)
    assert (q.id, q.name, q.qtype, q.qclass) == (0x1234, "web.example", w.TYPE_AAAA, 1)
    assert q.flags & 0x0100  # RD


def test_compressed_names_and_pointer_loops() -> None:
    msg = b"\x00" * 12 + b"\x03www\x07example\x00" + b"\x03api\xc0\x10"
    name, end = w.read_name(msg, 12 + 13)
    assert name == "api.example" and end == len(msg)
    with pytest.raises(w.WireError, match="loop"):
        w.read_name(b"\x00" * 12 + b"\xc0\x0c", 12)
    with pytest.raises(w.WireError):
        w.parse_query(b"\x00\x01")
    with pytest.raises(w.WireError, match="not a query"):
        w.parse_query(struct.pack("!HHHHHH", 1, 0x8000, 1, 0, 0, 0) + b"\x00\x00\x01\x00\x01")


def test_response_carries_answers_and_truncates_to_512() -> None:
    q = w.parse_query(w.build_query("web", qid=7))
    ips = [f"10.0.{i // 250}.{i % 250 + 1}" for i in range(60)]
    data = w.build_response(q, w.NOERROR, [(w.TYPE_A, socket.inet_aton(ip)) for ip in ips])
    qid, flags, answers = w.parse_response(data)
    assert qid == 7 and flags & 0x8000 and flags & 0x0400  # QR, AA
    assert flags & 0x0200 and len(data) <= 512  # TC: 60 records do not fit
    assert [socket.inet_ntoa(a[3]) for a in answers] == ips[: len(answers)]
    assert all(a[0] == "web" and a[1] == w.TYPE_A and a[2] == w.TTL for a in answers)
    full = w.build_response(q, w.NOERROR, [(w.TYPE_A, socket.inet_aton(ip)) for ip in ips],
                            limit=65535)
    assert len(w.parse_response(full)[2]) == 60


def test_error_response_keeps_the_id() -> None:
    data = w.error_response(b"\xab\xcd\x01\x00" + b"\x00" * 8 + b"\xff", w.FORMERR)
    assert data is not None and data[:2] == b"\xab\xcd" and data[3] & 0xF == w.FORMERR
    assert w.error_response(b"\x00", w.FORMERR) is None


def _view() -> w.View:
    return w.View.load({
        "id": "n1", "name": "Net",
        "names": {"web": ["10.0.0.2", "10.0.0.3"], "db": ["10.0.0.4"]},
        "ptr": {"10.0.0.4": "db.net"},
        "links": {"10.0.0.2": {"database": ["10.0.0.4"]}},
    })


def _ask(view: w.View, name: str, qtype: int = w.TYPE_A, source: str = "10.0.0.9"):
    return w.answer(view, w.parse_query(w.build_query(name, qtype)), source)


def test_answers_from_the_network_records() -> None:
    view = _view()
    rcode, answers = _ask(view, "WEB")
    first = [socket.inet_ntoa(a[1]) for a in answers]
    _, answers = _ask(view, "web")
    second = [socket.inet_ntoa(a[1]) for a in answers]
    assert rcode == w.NOERROR and sorted(first) == ["10.0.0.2", "10.0.0.3"]
    assert second == first[1:] + first[:1]  # replicas take turns at the front
    assert _ask(view, "web", w.TYPE_AAAA) == (w.NOERROR, [])
    assert _ask(view, "db.net")[1] == [(w.TYPE_A, socket.inet_aton("10.0.0.4"))]
    assert _ask(view, "example.org") is None  # forwarded
    ptr = _ask(view, w.reverse_name("10.0.0.4"), w.TYPE_PTR)
    assert ptr == (w.NOERROR, [(w.TYPE_PTR, w.encode_name("db.net"))])
    assert _ask(view, w.reverse_name("10.9.9.9"), w.TYPE_PTR) is None


def test_link_aliases_are_per_source_container() -> None:
    view = _view()
    assert _ask(view, "database", source="10.0.0.2")[1] == \
        [(w.TYPE_A, socket.inet_aton("10.0.0.4"))]
    assert _ask(view, "database", source="10.0.0.3") is None


def test_resolv_conf_points_at_the_gateway() -> None:
    host = "nameserver 10.1.1.1\nnameserver 127.0.0.53\nsearch corp.example\noptions edns0\n"
    assert parse_resolv_conf(host) == (["10.1.1.1", "127.0.0.53"], ["corp.example"], ["edns0"])
    assert resolv_conf("172.18.0.1", host=host) == \
        "nameserver 172.18.0.1\nsearch corp.example\n"
    assert resolv_conf("172.18.0.1", dns_search=["a.test"], dns_opt=["ndots:2"], host=host) == \
        "nameserver 172.18.0.1\nsearch a.test\noptions ndots:2\n"
    assert resolv_conf(None, dns=["9.9.9.9"], host=host) == \
        "nameserver 9.9.9.9\nsearch corp.example\noptions edns0\n"


def test_hosts_file() -> None:
    text = hosts_file("web", "example.test", ["172.18.0.2"],
                      ["db:10.0.0.5", "gw=host-gateway", "v6:[::1]"], host_gateway="172.18.0.1")
    lines = text.splitlines()
    assert lines[0] == "127.0.0.1\tlocalhost"
    assert lines[-4:] == ["10.0.0.5\tdb", "172.18.0.1\tgw", "::1\tv6",
                          "172.18.0.2\tweb.example.test web"]
    assert hosts_file("h", ips=["1.2.3.4"], extra_hosts={"x": ["5.6.7.8", "5.6.7.9"]})\
        .splitlines()[-3:] == ["5.6.7.8\tx", "5.6.7.9\tx", "1.2.3.4\th"]


# ------------------------------------------------------------------ the resolver process

def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeUpstream:
    """Answers example.test with 192.0.2.55 and everything else with NXDOMAIN."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.seen: list[str] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                data, addr = self.sock.recvfrom(4096)
            except OSError:
                return
            q = w.parse_query(data)
            self.seen.append(q.name)
            if q.name == "example.test":
                reply = w.build_response(q, w.NOERROR,
                                         [(w.TYPE_A, socket.inet_aton("192.0.2.55"))])
            else:
                reply = w.build_response(q, w.NXDOMAIN)
            self.sock.sendto(reply, addr)

    def close(self) -> None:
        self.sock.close()


def _records(path: Path, port: int, upstream: int, names: dict) -> None:
    doc = {"port": port, "upstreams": [["127.0.0.1", upstream]],
           "networks": {"127.0.0.1": {"id": "n1", "name": "net", "names": names,
                                      "ptr": {}, "links": {}, "upstreams": {}}} if names else {}}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)


def _control(rundir: Path) -> dict:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(str(rundir / "control.sock"))
        s.sendall(b"reload\n")
        return json.loads(s.makefile().readline())


def _udp(port: int, name: str, qtype: int = w.TYPE_A):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(w.build_query(name, qtype, qid=99), ("127.0.0.1", port))
        qid, flags, answers = w.parse_response(s.recv(4096))
    assert qid == 99
    return flags & 0xF, sorted(socket.inet_ntoa(a[3]) for a in answers if a[1] == w.TYPE_A)


def _tcp(port: int, name: str):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        q = w.build_query(name, qid=5)
        s.sendall(struct.pack("!H", len(q)) + q)
        head = s.recv(2, socket.MSG_WAITALL)
        data = s.recv(struct.unpack("!H", head)[0], socket.MSG_WAITALL)
    _, flags, answers = w.parse_response(data)
    return flags & 0xF, sorted(socket.inet_ntoa(a[3]) for a in answers)


@pytest.fixture
def resolver(tmp_path):
    upstream = FakeUpstream()
    port = _free_port()
    _records(tmp_path / "records.json", port, upstream.port,
             {"web": ["10.0.0.2", "10.0.0.3"], "db": ["10.0.0.4"]})
    proc = subprocess.Popen([sys.executable, "-I", "-S", w.__file__, "--daemon", str(tmp_path)],
                            stdout=subprocess.PIPE)
    ready, _, _ = select.select([proc.stdout], [], [], 10)
    state = json.loads(proc.stdout.readline()) if ready else {}
    proc.wait(5)
    assert state.get("networks") == 1, state
    yield tmp_path, port, upstream, state["pid"]
    upstream.close()
    try:
        os.kill(state["pid"], signal.SIGTERM)
    except ProcessLookupError:
        pass


def test_resolver_answers_forwards_and_reloads(resolver) -> None:
    rundir, port, upstream, pid = resolver
    assert _udp(port, "web") == (w.NOERROR, ["10.0.0.2", "10.0.0.3"])
    assert _tcp(port, "db") == (w.NOERROR, ["10.0.0.4"])
    assert _udp(port, "db", w.TYPE_AAAA) == (w.NOERROR, [])
    assert _udp(port, "example.test") == (w.NOERROR, ["192.0.2.55"])
    assert upstream.seen == ["example.test"]
    _records(rundir / "records.json", port, upstream.port, {"web": ["10.0.0.2"]})
    assert _control(rundir)["networks"] == 1
    assert _udp(port, "db") == (w.NXDOMAIN, [])  # no longer ours: the upstream says so
    assert _udp(port, "web") == (w.NOERROR, ["10.0.0.2"])
    # A dead upstream: SERVFAIL, quickly (loopback refuses at once).
    _records(rundir / "records.json", port, _free_port(), {"web": ["10.0.0.2"]})
    _control(rundir)
    start = time.monotonic()
    assert _udp(port, "nothing.test") == (w.SERVFAIL, [])
    assert time.monotonic() - start < 1.0
    # With no network left the resolver says so and exits.
    _records(rundir / "records.json", port, upstream.port, {})
    assert _control(rundir)["exiting"] is True
    deadline = time.monotonic() + 3
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not Path(f"/proc/{pid}/cmdline").exists() or \
        not Path(f"/proc/{pid}/cmdline").read_bytes()
    assert not (rundir / "control.sock").exists()


def test_resolver_reloads_on_sighup_ignores_unknown_commands_and_ends_on_sigterm(
        resolver) -> None:
    rundir, port, upstream, pid = resolver
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(str(rundir / "control.sock"))
        s.sendall(b"dance\n")
        assert json.loads(s.makefile().readline()) == {"error": "unknown command"}
    with socket.socket(socket.AF_UNIX) as idle:  # a client that says nothing holds no one up
        idle.connect(str(rundir / "control.sock"))
        before = (rundir / "records.json").stat()
        _records(rundir / "records.json", port, upstream.port, {"web": ["10.0.0.9"]})
        # the same mtime: the resolver's backstop (a look at it every second) sees nothing
        os.utime(rundir / "records.json", ns=(before.st_atime_ns, before.st_mtime_ns))
        os.kill(pid, signal.SIGHUP)
        deadline = time.monotonic() + 3
        while _udp(port, "web") != (w.NOERROR, ["10.0.0.9"]):
            assert time.monotonic() < deadline, "SIGHUP did not reload the records"
            time.sleep(0.02)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 3
    while (rundir / "control.sock").exists():
        assert time.monotonic() < deadline, "SIGTERM did not end the resolver"
        time.sleep(0.02)


def test_resolver_survives_a_name_dns_cannot_carry_and_an_endless_control_line(
        resolver) -> None:
    rundir, port, _upstream, pid = resolver
    doc = json.loads((rundir / "records.json").read_text())
    doc["networks"]["127.0.0.1"]["ptr"] = {"10.0.0.2": "x" * 70 + ".net"}  # a 70-byte label
    (rundir / "records.json.tmp").write_text(json.dumps(doc))
    os.replace(rundir / "records.json.tmp", rundir / "records.json")
    assert _control(rundir)["networks"] == 1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(w.build_query("2.0.0.10.in-addr.arpa", w.TYPE_PTR, qid=7), ("127.0.0.1", port))
        qid, flags, answers = w.parse_response(s.recv(4096))
    assert (qid, flags & 0xF, answers) == (7, w.SERVFAIL, [])
    with socket.socket(socket.AF_UNIX) as endless:
        endless.settimeout(5)
        endless.connect(str(rundir / "control.sock"))
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            for _ in range(64):  # no command is that long: the resolver hangs up
                endless.sendall(b"r" * 4096)
                time.sleep(0.01)
    assert _udp(port, "db") == (w.NOERROR, ["10.0.0.4"])
    assert _control(rundir)["pid"] == pid


def test_resolver_keeps_its_names_when_records_json_is_not_what_the_engine_writes(
        resolver) -> None:
    rundir, port, _upstream, pid = resolver
    (rundir / "records.json.tmp").write_text("[]")  # valid JSON, not the engine's document
    os.replace(rundir / "records.json.tmp", rundir / "records.json")
    os.kill(pid, signal.SIGHUP)
    time.sleep(0.3)  # (the reload, and then the 1 s backstop, both see it)
    assert _udp(port, "db") == (w.NOERROR, ["10.0.0.4"])  # alive, with the names it had
    time.sleep(1.0)
    assert _udp(port, "web") == (w.NOERROR, ["10.0.0.2", "10.0.0.3"])
    assert (rundir / "control.sock").exists()
