"""IPv4-mapped IPv6 peers: an IPv6 (dual-stack) socket talking to 127.0.0.1
through ::ffff:127.0.0.1 is counted, exactly, as an IPv4 flow to 127.0.0.1."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from netmon.metrics import MetricsEngine

from .flows import assert_no_problems, flow_mismatches
from .traffic import (
    Conn,
    Ledger,
    Tally,
    payload,
    set_recv_timeout,
    sink_server,
    tcp_client,
    tcp_server,
    udp_client,
    udp_server,
)

MAPPED = "::ffff:127.0.0.1"
ANY6 = "::"  # a dual-stack listener: IPv4 clients reach it as ::ffff:a.b.c.d


def as_ipv4(ledger: Ledger) -> Ledger:
    """The generator's flows, whose IPv6 sockets saw the peer as
    ::ffff:127.0.0.1, as netmon must show them: IPv4, 127.0.0.1."""
    out = Ledger()
    for (protocol, family, port, ip, role), tally in ledger.flows.items():
        assert family == "IPv6", ledger
        assert ip is not None and ipaddress.ip_address(ip) == ipaddress.ip_address(MAPPED), ledger
        out.at(protocol, "IPv4", port, "127.0.0.1", role).add(tally)
    return out


def test_tcp_dual_stack(live: Any, spawn: Any) -> None:
    before = live.read()
    server = spawn("map-tcp-s", tcp_server, ANY6, "send", "recv", 200_003, 100_019)
    port = server.recv()
    client = spawn("map-tcp-c", tcp_client, MAPPED, port, "send", "recv", 200_003, 100_019)
    client_ledger = as_ipv4(client.result())
    server.send("close")
    server_ledger = as_ipv4(server.result())
    after = live.read()
    problems = flow_mismatches(before, after, client.pid, client_ledger, client.comm, "client")
    problems += flow_mismatches(before, after, server.pid, server_ledger, server.comm, "server")
    assert_no_problems(problems, live)


def test_udp_dual_stack_unconnected(live: Any, spawn: Any) -> None:
    """sendto/recvfrom: the peers come from the call's addresses, not a connection."""
    sizes = (1, 512, 1400, 9000)
    before = live.read()
    server = spawn("map-udp-s", udp_server, ANY6, "sendto", sizes)
    port = server.recv()
    client = spawn("map-udp-c", udp_client, MAPPED, port, "sendto", sizes)
    client_ledger = as_ipv4(client.result())
    server_ledger = as_ipv4(server.result())
    after = live.read()
    problems = flow_mismatches(before, after, client.pid, client_ledger, client.comm, "client")
    problems += flow_mismatches(before, after, server.pid, server_ledger, server.comm, "server")
    assert_no_problems(problems, live)


def two_family_client(ctl: Conn, port: int, n: int) -> Ledger:
    """One process, two sockets to the same server, n bytes on each: an
    IPv4 one to 127.0.0.1 and an IPv6 one to ::ffff:127.0.0.1."""
    ledger = Ledger()
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, MAPPED)):
        s = socket.socket(family, socket.SOCK_STREAM)
        set_recv_timeout(s)
        s.connect((host, port))
        tally = Tally()
        data = payload(n)
        sent = 0
        while sent < n:
            moved = s.send(data[sent:])
            tally.sent(moved)
            sent += moved
        ledger.flows[(str(family), host, port, None, "client")] = tally
        s.close()
    return ledger


def test_one_process_both_families_is_one_flow(live: Any, spawn: Any) -> None:
    """The two kernel flows have one key once the mapped peer is IPv4: one
    row, with the sum of both."""
    each = 70_001
    engine = MetricsEngine(0.4, 1e15, 1.0, show_kernel=True)
    engine.update(live.read())
    server = spawn("map-sink", sink_server, ANY6, 2, each)
    port = server.recv()
    client = spawn("map-both", two_family_client, port, each)
    ledger = client.result()
    server.result()
    snap = engine.update(live.read())
    rows = [f for f in snap.flows if f.key.pid == client.pid]
    sent = sum(t.bytes_sent for t in ledger.flows.values())
    assert len(ledger.flows) == 2 and sent == 2 * each
    assert [(f.key.protocol, f.key.family, f.key.port, f.key.remote_ip, f.key.role)
            for f in rows] == [("TCP", "IPv4", port, "127.0.0.1", "client")], rows  # fmt: skip
    assert (rows[0].bytes_sent, rows[0].bytes_recv) == (sent, 0)
    assert rows[0].packets_sent == sum(t.packets_sent for t in ledger.flows.values())
