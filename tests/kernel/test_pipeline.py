"""The capture path end to end: the `netmon --json` process, the rates written
back into anomaly_map, and the dropped-flow count of a full flow table."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from typing import IO

import pytest

from netmon.jsonl import loads
from netmon.live_feed import LiveFeed
from netmon.metrics import MetricsEngine

from .conftest import open_source

LINE_TIMEOUT_S = 60  # compiling the BPF program takes a few seconds


def _read_line(stream: IO[str], timeout: float = LINE_TIMEOUT_S) -> str:
    """One line from a pipe, or fail when none arrives within `timeout`."""
    ready, _, _ = select.select([stream], [], [], timeout)
    if not ready:
        raise TimeoutError("netmon wrote no line in time")
    return stream.readline()


def _tcp_exchange(client_bytes: int, server_bytes: int) -> int:
    """Loopback TCP in this process; returns the server's port."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            server, _ = listener.accept()
            with server:
                client.sendall(b"c" * client_bytes)
                got = 0
                while got < client_bytes:
                    got += len(server.recv(65536))
                server.sendall(b"s" * server_bytes)
                got = 0
                while got < server_bytes:
                    got += len(client.recv(65536))
    return port


def test_json_process_reports_exact_bytes_and_final_object_on_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "netmon", "--json", "--numeric", "--interval", "200"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = loads(_read_line(proc.stdout))  # probes are attached from here on
        assert first.interval_s == 0.0
        port = _tcp_exchange(client_bytes=30000, server_bytes=7000)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=LINE_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    lines = [line for line in out.splitlines() if line]
    snapshots = [loads(line, n) for n, line in enumerate(lines, start=2)]
    assert snapshots, "no final object after SIGTERM"
    final = json.loads(lines[-1])
    assert set(final) >= {"ts", "interval_s", "flows", "processes", "protocols", "dropped"}

    mine = {(f["role"], f["port"]): f for f in final["flows"] if f["pid"] == os.getpid()}
    client, server = mine[("client", port)], mine[("server", port)]
    assert (client["bytes_sent"], client["bytes_recv"]) == (30000, 7000)
    assert (server["bytes_sent"], server["bytes_recv"]) == (7000, 30000)
    assert client["protocol"] == "TCP" and client["remote_ip"] == "127.0.0.1"
    assert client["comm"] == server["comm"] != ""
    process = next(p for p in final["processes"] if p["pid"] == os.getpid())
    assert process["bytes_sent"] >= 37000 and process["bytes_recv"] >= 37000
    assert final["protocols"]["TCP"] >= 2 * 37000


@pytest.mark.parametrize("mode", ["socket", "syscalls"])
def test_smoothed_rates_are_written_back_to_anomaly_map(mode: str) -> None:
    src = open_source(mode)
    try:
        engine = MetricsEngine(alpha=1.0, threshold_bps=1.0, nominal_interval_s=1.0)
        now = [0.0]
        feed = LiveFeed(src, engine, interval_s=1.0, clock=lambda: now[0])
        assert feed.poll(now[0]) is not None
        port = _tcp_exchange(client_bytes=50000, server_bytes=1000)
        now[0] += 1.0
        snap = feed.poll(now[0])
        assert snap is not None
        mine = {f.key: f for f in snap.flows if f.key.pid == os.getpid() and f.key.port == port}
        assert len(mine) == 2
        assert all(f.rate_bps > 0 and f.anomaly for f in mine.values())
        published = src.read_published_rates()
        for key, flow in mine.items():
            assert published[key] == int(flow.rate_bps)
    finally:
        src.close()


def test_full_flow_table_counts_what_it_dropped() -> None:
    max_flows, flows = 32, 200
    from netmon.sources.live import LiveSource

    src = LiveSource.open(probes="socket", max_flows=max_flows)
    try:
        before = src.read()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            # One flow per destination port; nothing needs to listen for
            # an unconnected UDP send to succeed.
            base = 20000
            for port in range(base, base + flows):
                assert sender.sendto(b"x", ("127.0.0.1", port)) == 1
        after = src.read()
        present = [k for k in after.flows if k.pid == os.getpid() and k.protocol == "UDP"]
        assert len(after.flows) <= max_flows
        assert after.dropped - before.dropped >= flows - len(present)
    finally:
        src.close()


def test_flows_created_during_reads_are_not_counted_as_dropped() -> None:
    """New flows keep appearing while the maps are read, far below the table's
    size: `dropped` must stay where it was (the creation counter is read
    before the flow map, so a flow created meanwhile is never "missing")."""
    src = open_source("socket")
    stop = threading.Event()

    def new_flows() -> None:  # one new flow per destination port
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            port = 20000
            while not stop.is_set() and port < 24000:
                sender.sendto(b"x", ("127.0.0.1", port))
                port += 1

    try:
        first = src.read()
        sender = threading.Thread(target=new_flows)
        sender.start()
        drops = []
        while sender.is_alive():
            sample = src.read()
            drops.append(sample.dropped)
        sender.join()
        assert len(drops) >= 3, "the reads did not overlap the flow creation"
        assert set(drops) == {first.dropped}, drops
    finally:
        stop.set()
        src.close()
