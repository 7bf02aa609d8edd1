"""Every send/receive call, TCP and UDP, IPv4 and IPv6, loopback and veth:
the source's per-flow counts equal what the generators' own calls returned."""

from __future__ import annotations

from typing import Any

import pytest

from .flows import assert_no_problems, flow_mismatches, protocol_shortfall
from .traffic import CONNECTED_DGRAM, DGRAM_SIZES, tcp_client, tcp_server, udp_client, udp_server

# where the server lives: (address, in the test namespace?)
NETS = ("lo4", "lo6", "veth4", "veth6")

TCP_PAIRS = [
    ("send", "recv"),
    ("sendto", "recvfrom"),
    ("sendmsg", "recvmsg"),
    ("write", "read"),
    ("writev", "readv"),
    ("sendfile", "splice"),
    ("splice", "peek"),
    ("send", "peekmsg"),
]
UDP_METHODS = ("sendto", "sendmsg", "mmsg", "send", "write", "writev", "peek", "peekmmsg")


def server_endpoint(request: pytest.FixtureRequest, net: str) -> tuple[str, str | None]:
    if net == "lo4":
        return "127.0.0.1", None
    if net == "lo6":
        return "::1", None
    ns = request.getfixturevalue("netns")
    return (ns.ns4 if net == "veth4" else ns.ns6), ns.name


@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize(("send_method", "recv_method"), TCP_PAIRS)
def test_tcp(
    live: Any,
    spawn: Any,
    request: pytest.FixtureRequest,
    net: str,
    send_method: str,
    recv_method: str,
) -> None:
    host, ns = server_endpoint(request, net)
    to_server, to_client = 300_001, 150_007
    before = live.read()
    server = spawn(
        f"s-{send_method}-{recv_method}",
        tcp_server,
        host,
        send_method,
        recv_method,
        to_server,
        to_client,
        netns=ns,
    )
    port = server.recv()
    client = spawn(
        f"c-{send_method}-{recv_method}",
        tcp_client,
        host,
        port,
        send_method,
        recv_method,
        to_server,
        to_client,
    )
    client_ledger = client.result()
    server.send("close")
    server_ledger = server.result()
    after = live.read()
    problems = flow_mismatches(before, after, client.pid, client_ledger, client.comm, "client")
    problems += flow_mismatches(before, after, server.pid, server_ledger, server.comm, "server")
    problems += protocol_shortfall(before, after, [client_ledger, server_ledger])
    assert_no_problems(problems, live)


@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("method", UDP_METHODS)
def test_udp(live: Any, spawn: Any, request: pytest.FixtureRequest, net: str, method: str) -> None:
    """Client to a server bound to an explicit port; the server answers each
    datagram (its replies are role server, port = its local port)."""
    host, ns = server_endpoint(request, net)
    sizes = DGRAM_SIZES * 2
    before = live.read()
    server = spawn(f"us-{method}", udp_server, host, method, sizes, netns=ns)
    port = server.recv()
    client = spawn(f"uc-{method}", udp_client, host, port, method, sizes)
    if method in CONNECTED_DGRAM:  # connected both ways
        server.send(client.recv())
        client.send(server.recv())
    client_ledger = client.result()
    server_ledger = server.result()
    after = live.read()
    problems = flow_mismatches(before, after, client.pid, client_ledger, client.comm, "client")
    problems += flow_mismatches(before, after, server.pid, server_ledger, server.comm, "server")
    problems += protocol_shortfall(before, after, [client_ledger, server_ledger])
    assert_no_problems(problems, live)
