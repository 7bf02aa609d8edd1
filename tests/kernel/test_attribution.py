"""Who moved the bytes: short-lived processes, sockets opened before the
source, inherited and duplicated sockets, threads."""

from __future__ import annotations

import random
import select
from typing import Any

import pytest

from .conftest import MODES, open_source
from .flows import assert_no_problems, flow_mismatches, pid_deltas
from .traffic import (
    Child,
    dup_client,
    inherit_client,
    inherit_server,
    short_lived_sender,
    sink_server,
    tcp_client,
    tcp_server,
    threaded_client,
    udp_client,
    udp_server,
    udp_sink,
)

SHORT_LIVED = 300
CONCURRENT = 24


def test_short_lived_processes(live: Any, spawn: Any) -> None:
    """Hundreds of processes, each named, each sending a few KB and exiting:
    all attributed to their pid with their own name and exact bytes."""
    host = "127.0.0.1"
    rng = random.Random()
    before = live.read()
    sink = spawn("nm-sl-sink", udp_sink, host)
    port = sink.recv()
    done: list[Child] = []
    running: list[Child] = []
    for i in range(SHORT_LIVED):
        sizes = tuple(rng.randrange(200, 1500) for _ in range(rng.randrange(2, 5)))
        running.append(
            spawn(f"nm-sl-{live.mode[:2]}-{i:03d}", short_lived_sender, host, port, sizes)
        )
        if len(running) >= CONCURRENT:
            _finish_one(running, done)
    while running:
        _finish_one(running, done)
    ledgers = {c.pid: c.result() for c in done}
    datagrams = sum(t.packets_sent for ledger in ledgers.values() for t in ledger.flows.values())
    sink.send(datagrams)
    sink_ledger = sink.result()
    after = live.read()

    problems: list[str] = []
    for child in done:
        problems += flow_mismatches(
            before, after, child.pid, ledgers[child.pid], child.comm, "short-lived"
        )
    problems += flow_mismatches(before, after, sink.pid, sink_ledger, sink.comm, "sink")
    missing = sum(1 for c in done if not pid_deltas(before, after, c.pid))
    if problems:
        problems.insert(0, f"{missing} of {len(done)} short-lived processes have no flow at all")
    assert_no_problems(problems, live)


def _finish_one(running: list[Child], done: list[Child]) -> None:
    """Collect whichever child finishes next."""
    fds = {c.fileno(): c for c in running}
    ready, _, _ = select.select(list(fds), [], [], 60)
    if not ready:
        raise TimeoutError("short-lived senders stopped answering")
    child = fds[ready[0]]
    child.result()
    running.remove(child)
    done.append(child)


@pytest.mark.parametrize("mode", MODES)
def test_sockets_opened_before_the_source(mode: str, spawn: Any) -> None:
    """Connections set up before the source opens: a TCP client and its
    accepted server socket, a connected UDP client and a UDP server bound to
    an explicit port below the ephemeral range. Roles come from the kernel's
    socket tables; bytes only move after the source is open."""
    host = "127.0.0.1"
    tcp_srv = spawn("nm-pre-tsrv", tcp_server, host, "send", "recv", 70_001, 30_003, True)
    tport = tcp_srv.recv()
    tcp_cli = spawn("nm-pre-tcli", tcp_client, host, tport, "send", "recv", 70_001, 30_003, True)
    sizes = (10, 1000, 5000)
    udp_srv = spawn("nm-pre-usrv", udp_server, host, "send", sizes, True)
    uport = udp_srv.recv()
    udp_cli = spawn("nm-pre-ucli", udp_client, host, uport, "send", sizes, True)
    udp_srv.send(udp_cli.recv())
    udp_cli.send(udp_srv.recv())
    children = (tcp_srv, tcp_cli, udp_srv, udp_cli)
    for child in children:
        assert child.recv() == "gated"

    src = open_source(mode)
    try:
        before = src.read()
        for child in children:
            child.send("go")
        ledgers = {c.pid: c.result() for c in (tcp_cli, udp_srv, udp_cli)}
        tcp_srv.send("close")
        ledgers[tcp_srv.pid] = tcp_srv.result()
        after = src.read()
        problems: list[str] = []
        for child in children:
            problems += flow_mismatches(
                before, after, child.pid, ledgers[child.pid], child.comm, child.comm
            )
        assert_no_problems(problems, src)
    finally:
        src.close()


def test_child_writes_on_inherited_socket(live: Any, spawn: Any) -> None:
    """fork() after connect: the child's bytes are the child's, the parent's the parent's."""
    host = "127.0.0.1"
    sizes = (40_000, 25_001, 9_999)
    before = live.read()
    server = spawn("nm-inh-sink", sink_server, host, 1, sum(sizes))
    port = server.recv()
    client = spawn("nm-inh-parent", inherit_client, host, port, sizes)
    res = client.result()
    server_ledger = server.result()
    after = live.read()
    problems = flow_mismatches(before, after, client.pid, res["parent"], client.comm, "parent")
    problems += flow_mismatches(before, after, res["kid_pid"], res["kid"], "nm-inh-kid", "child")
    problems += flow_mismatches(before, after, server.pid, server_ledger, server.comm, "server")
    assert_no_problems(problems, live)


def test_child_answers_on_inherited_accepted_socket(live: Any, spawn: Any) -> None:
    """fork() after accept: the child's replies are role server on the listening port."""
    host = "::1"
    sizes = (12_345, 30_000, 7_777)
    before = live.read()
    server = spawn("nm-inhs-parent", inherit_server, host, sizes)
    port = server.recv()
    client = spawn("nm-inhs-cli", tcp_client, host, port, "send", "recv", sizes[0], sum(sizes[1:]))
    client_ledger = client.result()
    server.send("close")
    res = server.result()
    after = live.read()
    problems = flow_mismatches(before, after, server.pid, res["parent"], server.comm, "parent")
    problems += flow_mismatches(before, after, res["kid_pid"], res["kid"], "nm-inh-srvkid", "child")
    problems += flow_mismatches(before, after, client.pid, client_ledger, client.comm, "client")
    assert_no_problems(problems, live)


def test_duplicated_socket(live: Any, spawn: Any) -> None:
    """Bytes written through dup() and dup2() copies land in the socket's one flow."""
    host = "127.0.0.1"
    sizes = (10_000, 20_000, 30_001)
    before = live.read()
    server = spawn("nm-dup-sink", sink_server, host, 1, sum(sizes))
    port = server.recv()
    client = spawn("nm-dup", dup_client, host, port, sizes)
    client_ledger = client.result()
    server_ledger = server.result()
    after = live.read()
    problems = flow_mismatches(before, after, client.pid, client_ledger, client.comm, "client")
    problems += flow_mismatches(before, after, server.pid, server_ledger, server.comm, "server")
    assert_no_problems(problems, live)


def test_threads_count_under_the_process(live: Any, spawn: Any) -> None:
    """Four named threads, each on its own connection to one port: one flow
    under the tgid with all the bytes, nothing under the thread ids."""
    host, threads, each = "127.0.0.1", 4, 100_003
    before = live.read()
    server = spawn("nm-thr-sink", sink_server, host, threads, each)
    port = server.recv()
    client = spawn("nm-thr-main", threaded_client, host, port, threads, each)
    res = client.result()
    server_ledger = server.result()
    after = live.read()
    tids = set(res["tids"]) - {client.pid}
    assert len(tids) == threads
    problems = flow_mismatches(before, after, client.pid, res["ledger"], res["names"], "threads")
    problems += flow_mismatches(before, after, server.pid, server_ledger, server.comm, "server")
    for tid in sorted(tids):
        stray = pid_deltas(before, after, tid)
        if stray:
            problems.append(f"thread id {tid} has flows of its own: {stray}")
    assert_no_problems(problems, live)


def test_exited_processes_are_read_once_more_then_removed(live: Any, spawn: Any) -> None:
    """A process that exits: the next read has its final, exact counts and
    says it exited; the kernel's tables then no longer hold it, so dead
    processes are not read on every poll (nor counted as dropped)."""
    host = "127.0.0.1"
    sizes = (300, 1200)
    sink = spawn("nm-exit-sink", udp_sink, host)
    port = sink.recv()
    before = live.read()
    child = spawn("nm-exiting", short_lived_sender, host, port, sizes)
    ledger = child.result()  # reaped: the process has exited
    sink.send(len(sizes))
    sink.result()
    final = live.read()
    assert child.pid in final.exited
    problems = flow_mismatches(before, final, child.pid, ledger, child.comm, "exiting")
    assert_no_problems(problems, live)
    later = live.read()
    assert not [k for k in later.flows if k.pid == child.pid]
    assert child.pid not in later.processes
    assert child.pid not in later.exited
    assert later.dropped == final.dropped
