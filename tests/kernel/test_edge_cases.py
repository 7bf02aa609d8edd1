"""Traps: failed calls, renamed processes, one UDP socket with several peers."""

from __future__ import annotations

from typing import Any

from .flows import assert_no_problems, flow_mismatches
from .traffic import (
    nonblocking_client,
    renaming_client,
    sink_server,
    sized_sink,
    udp_many_peers,
    udp_server,
)


def test_failed_calls_move_nothing(live: Any, spawn: Any) -> None:
    """EAGAIN from non-blocking receives and sends adds neither bytes nor packets."""
    host = "127.0.0.1"
    before = live.read()
    server = spawn("nm-eagain-sink", sized_sink, host)
    port = server.recv()
    client = spawn("nm-eagain", nonblocking_client, host, port)
    server.send(client.recv())
    assert server.recv() == "drained"
    client.send("done")
    res = client.result()
    server.send("close")
    server_ledger = server.result()
    after = live.read()
    assert res["failed"] >= 5, "the generator did not hit EAGAIN as planned"
    problems = flow_mismatches(before, after, client.pid, res["ledger"], client.comm, "client")
    problems += flow_mismatches(before, after, server.pid, server_ledger, server.comm, "server")
    assert_no_problems(problems, live)


def test_comm_is_the_name_at_event_time(live: Any, spawn: Any) -> None:
    """A process renamed between two sends: the flow carries the newer name."""
    host = "127.0.0.1"
    sizes = (20_000, 10_000)
    before = live.read()
    server = spawn("nm-rename-sink", sink_server, host, 1, sum(sizes))
    port = server.recv()
    client = spawn("nm-before", renaming_client, host, port, sizes, "nm-after")
    client_ledger = client.result()
    server.result()
    after = live.read()
    problems = flow_mismatches(before, after, client.pid, client_ledger, "nm-after", "client")
    assert_no_problems(problems, live)


def test_one_udp_socket_several_peers(live: Any, spawn: Any, netns: Any) -> None:
    """Unconnected UDP to a loopback server and a namespace server: the
    addresses come from each sendto/recvfrom, one flow per peer."""
    sizes = (10, 700, 1500, 4000)
    before = live.read()
    local = spawn("nm-peers-lo", udp_server, "127.0.0.1", "sendto", sizes)
    remote = spawn("nm-peers-ns", udp_server, netns.ns4, "sendto", sizes, netns=netns.name)
    servers = [("127.0.0.1", local.recv()), (netns.ns4, remote.recv())]
    client = spawn("nm-peers", udp_many_peers, servers, sizes)
    client_ledger = client.result()
    ledgers = {local.pid: local.result(), remote.pid: remote.result()}
    after = live.read()
    assert len(client_ledger.flows) == 2
    problems = flow_mismatches(before, after, client.pid, client_ledger, client.comm, "client")
    for server in (local, remote):
        problems += flow_mismatches(
            before, after, server.pid, ledgers[server.pid], server.comm, "server"
        )
    assert_no_problems(problems, live)
