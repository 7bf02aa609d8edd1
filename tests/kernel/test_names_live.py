"""Peer names with real lookups: netmon runs in a private mount namespace
whose /etc/hosts and /etc/resolv.conf are the test's, the traffic goes to
loopback aliases (127.0.0.0/8 is all on `lo`), and what netmon wrote is
compared with what the generators moved.

The resolver that never answers is a UDP socket bound to port 53 on a
loopback alias: it receives netmon's queries (so the lookups really are
stuck) and replies to none."""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from netmon.jsonl import loads
from netmon.model import Snapshot

from .traffic import Conn, payload, set_recv_timeout, sink_server, tell

REPO = Path(__file__).resolve().parents[2]
INTERVAL_MS = 250
WAIT_S = 90  # compiling the probes takes a few seconds, more on a busy machine
NAMED = {"127.0.0.7": "seven.netmon.test", "127.0.0.8": "eight.netmon.test"}
UNNAMED = "127.0.0.9"  # not in the test's hosts file; DNS is refused at once
DEAD_DNS = "127.83.0.53"  # where the resolver that never answers listens
STUCK = [f"127.0.0.{n}" for n in range(20, 41)]  # more peers than lookup threads


def in_private_etc(tmp_path: Path, hosts: str, resolv: str) -> list[str]:
    """An argv prefix: run the command in a private mount namespace, with
    these texts over /etc/hosts and /etc/resolv.conf."""
    hosts_file, resolv_file = tmp_path / "hosts", tmp_path / "resolv.conf"
    hosts_file.write_text(hosts)
    resolv_file.write_text(resolv)
    script = (
        'mount --bind "$1" /etc/hosts && mount --bind "$2" /etc/resolv.conf && shift 2 && exec "$@"'
    )
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
            str(hosts_file), str(resolv_file)]  # fmt: skip


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


class Lines:
    """netmon's stdout as JSON objects, read as they come (no buffering
    that select() would not see)."""

    def __init__(self, proc: subprocess.Popen[bytes], stderr: Path) -> None:
        assert proc.stdout is not None
        self.fd = proc.stdout.fileno()
        self.stderr = stderr
        self.buffer = b""

    def until(
        self, done: Callable[[dict[str, Any]], bool], what: str, timeout: float = WAIT_S
    ) -> list[dict[str, Any]]:
        """Objects up to the first for which `done` holds; fails after
        `timeout` seconds without one."""
        objects: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\n", 1)
                objects.append(json.loads(line))
                if done(objects[-1]):
                    return objects
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.fd], [], [], max(left, 0))
            chunk = os.read(self.fd, 1 << 20) if ready else b""
            if not chunk:
                problem = "timed out" if not ready else "netmon exited"
                raise AssertionError(
                    f"{problem} waiting for {what}; last: {objects[-1:]}; "
                    f"stderr: {self.stderr.read_text()[-2000:]}"
                )
            self.buffer += chunk

    def next(self) -> dict[str, Any]:
        return self.until(lambda o: True, "the next object", timeout=30)[0]


@contextlib.contextmanager
def netmon_json(tmp_path: Path, argv_prefix: list[str]) -> Iterator[Lines]:
    stderr = tmp_path / "stderr"
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            [*argv_prefix, sys.executable, "-m", "netmon", "--json", "--interval",
             str(INTERVAL_MS)],
            stdout=subprocess.PIPE, stderr=err, env=env(), cwd=REPO,
        )  # fmt: skip
    try:
        yield Lines(proc, stderr)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def tcp_to_peers(ctl: Conn, port: int, peers: list[str], n: int) -> dict[str, int]:
    """n bytes over TCP to `port` at each of `peers`; stays alive (so its
    flows stay in netmon's output) until told to go."""
    sent = {}
    for ip in peers:
        with socket.create_connection((ip, port)) as s:
            s.sendall(payload(n))
            sent[ip] = n
    tell(ctl, sent)
    ctl.recv()
    return sent


def udp_to_peers(ctl: Conn, peers: list[str]) -> int:
    """One datagram to each peer at each request of the test (a sink bound
    here receives them), so that the test can see the table move."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("0.0.0.0", 0))
    set_recv_timeout(sink)
    port = sink.getsockname()[1]
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rounds = 0
    while True:
        size = ctl.recv()
        if size is None:
            return rounds
        for ip in peers:
            out.sendto(payload(size), (ip, port))
            sink.recv(65536)
        rounds += 1
        tell(ctl, rounds)


def flows_of(obj: dict[str, Any], pid: int) -> dict[str, dict[str, Any]]:
    """The flows of `pid` to a peer (its UDP sink, bound to port 0, is a
    client flow without one), by peer."""
    return {
        f["remote_ip"]: f
        for f in obj["flows"]
        if f["pid"] == pid and f["role"] == "client" and f["remote_ip"] is not None
    }


def test_remote_names_from_the_hosts_file(tmp_path: Path, spawn: Any) -> None:
    hosts = "127.0.0.1 localhost\n" + "".join(f"{ip} {n}\n" for ip, n in NAMED.items())
    prefix = in_private_etc(tmp_path, hosts, "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    peers = [*NAMED, UNNAMED]
    size = 40_009
    with netmon_json(tmp_path, prefix) as out:
        out.until(lambda o: True, "netmon to attach")
        server = spawn("names-sink", sink_server, "0.0.0.0", len(peers), size)
        port = server.recv()
        client = spawn("names-client", tcp_to_peers, port, peers, size)
        sent = client.recv()
        server.result()

        def named(obj: dict[str, Any]) -> bool:
            mine = flows_of(obj, client.pid)
            return all(mine.get(ip, {}).get("remote_name") for ip in NAMED)

        objects = out.until(named, "the names of the peers")
        client.send("go")
        client.result()
    last = flows_of(objects[-1], client.pid)
    assert sorted(last) == sorted(peers)
    for ip in peers:
        flow = last[ip]
        assert (flow["family"], flow["port"], flow["remote_ip"]) == ("IPv4", port, ip)
        assert (flow["bytes_sent"], flow["bytes_recv"]) == (sent[ip], 0)
        assert flow["remote_name"] == NAMED.get(ip)
    # A name never shows for the address without one, and the ones shown are exact.
    for obj in objects:
        for ip, flow in flows_of(obj, client.pid).items():
            assert flow["remote_name"] in (None, NAMED.get(ip)), flow


@pytest.fixture
def dead_dns() -> Iterator[socket.socket]:
    """A DNS server that receives and never replies."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((DEAD_DNS, 53))
    sock.setblocking(False)
    yield sock
    sock.close()


def queries(sock: socket.socket) -> list[bytes]:
    got = []
    with contextlib.suppress(BlockingIOError):
        while True:
            got.append(sock.recv(4096))
    return got


def dead_resolver_etc(tmp_path: Path) -> list[str]:
    # Each lookup may wait 5 x 30 s: far longer than the test.
    resolv = f"nameserver {DEAD_DNS}\noptions timeout:30 attempts:5\n"
    return in_private_etc(tmp_path, "127.0.0.1 localhost\n", resolv)


def assert_cadence(timestamps: list[float]) -> None:
    """The objects came at the interval: a lookup stuck for 30 s would have
    held one up for that long (the bounds are generous for a busy machine)."""
    gaps = [b - a for a, b in pairwise(timestamps)]
    interval = INTERVAL_MS / 1000
    assert max(gaps) < 20 * interval, gaps  # 5 s; a stuck lookup waits 30 s
    assert 0.5 * interval < statistics.median(gaps) < 2 * interval, gaps


def test_a_resolver_that_never_answers_does_not_hold_up_the_json(
    tmp_path: Path, spawn: Any, dead_dns: socket.socket
) -> None:
    with netmon_json(tmp_path, dead_resolver_etc(tmp_path)) as out:
        out.until(lambda o: True, "netmon to attach")
        client = spawn("stuck-client", udp_to_peers, STUCK)
        client.send(100)
        assert client.recv() == 1
        first = out.until(lambda o: len(flows_of(o, client.pid)) == len(STUCK), "the flows")[-1]
        # Lookups are stuck from here on; the stream keeps its pace.
        objects = [first]
        while objects[-1]["ts"] < first["ts"] + 20 * INTERVAL_MS / 1000:
            objects.append(out.next())
        client.send(None)
        client.result()
    asked = queries(dead_dns)
    assert asked, "netmon never asked the resolver: the test proves nothing"
    assert any(b"in-addr" in q for q in asked), asked
    assert_cadence([o["ts"] for o in objects])
    for obj in objects:
        for ip, flow in flows_of(obj, client.pid).items():
            assert ip in STUCK and flow["remote_name"] is None, flow
    final = flows_of(objects[-1], client.pid)
    assert {ip: f["bytes_sent"] for ip, f in final.items()} == dict.fromkeys(STUCK, 100)


def recorded_with(recording: Path, pid: int) -> list[Snapshot]:
    """The recorded snapshots that have flows of `pid`."""
    with recording.open(encoding="utf-8") as f:
        lines = [line for line in f if line.endswith("\n")]  # whole lines only
    snapshots = (loads(line) for line in lines)
    return [s for s in snapshots if any(fl.key.pid == pid for fl in s.flows)]


def test_a_resolver_that_never_answers_does_not_hold_up_the_table(
    tmp_path: Path, spawn: Any, dead_dns: socket.socket
) -> None:
    from ui.ptyterm import Terminal

    recording = tmp_path / "rec.jsonl"
    argv = [*dead_resolver_etc(tmp_path), sys.executable, "-m", "netmon",
            "--interval", str(INTERVAL_MS), "--record", str(recording)]  # fmt: skip
    with Terminal(argv, 160, 50, env={"PYTHONPATH": str(REPO)}) as t:
        t.wait_for(
            lambda t: t.lines()[-1].startswith(("⚠ ALERT", "✓ No anomalies")),
            timeout=WAIT_S,
            what="netmon to attach and draw",
        )
        client = spawn("stuck-table", udp_to_peers, STUCK)
        t.send("c")  # no SERVICE column: the columns below are counted by word
        t.send(f"/{client.pid}\r")

        def rows(t: Terminal) -> dict[str, list[str]]:
            cells = (line.split() for line in t.lines()[3:-1])
            # (Its UDP sink, bound to port 0, is a row without a peer: "-".)
            return {
                r[4]: r
                for r in cells
                if r[:1] == [str(client.pid)] and len(r) > 4 and r[4] != "-"
            }

        for size, shown in ((100, ["100", "B"]), (1000, ["1.1", "KB"])):
            client.send(size)
            client.recv()
            # Every peer's row, by address (no name comes), with what was sent so far.
            t.wait_for(
                lambda t, shown=shown: (
                    sorted(rows(t)) == sorted(STUCK)  # type: ignore[misc]
                    and all(r[5:7] == shown for r in rows(t).values())
                ),
                timeout=30,
                what=f"the rows of {len(STUCK)} peers showing {shown}",
            )
        # The table goes on refreshing (and recording) while lookups are stuck.
        t.wait_for(
            lambda t: len(recorded_with(recording, client.pid)) >= 20,
            timeout=60,
            what="20 refreshes showing the client",
        )
        assert queries(dead_dns), "netmon never asked the resolver: the test proves nothing"
        t.send("n")  # addresses either way
        t.send("q")
        assert t.wait_exit(timeout=30) == 0  # exiting does not wait for stuck lookups
        client.send(None)
        client.result()
    mine = recorded_with(recording, client.pid)
    assert len(mine) >= 20
    assert_cadence([s.ts for s in mine])
    assert all(fl.remote_name is None for s in mine for fl in s.flows if fl.key.pid == client.pid)
