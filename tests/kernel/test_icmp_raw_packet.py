"""ICMP and ICMPv6 (raw and ping sockets), raw IP (protocol 253) and AF_PACKET.

The sources of what unconnected raw and ICMP sockets receive come, in socket
mode, from syscall programs that netmon attaches only while such sockets
exist: the generators here wait, once their socket exists, until the source
has seen it (`noticed`)."""

from __future__ import annotations

import os
from typing import Any

import pytest

from .flows import assert_no_problems, flow_mismatches, protocol_shortfall
from .test_paths import server_endpoint
from .traffic import (
    Ledger,
    icmp_ping,
    packet_receiver,
    packet_sender,
    raw_receiver,
    raw_sender,
)


def noticed(live: Any, *children: Any) -> Any:
    """Wait until each gated child has its socket, poll the source once (as
    the poller would) and return that sample; the raw peer programs are then
    attached."""
    for child in children:
        assert child.recv() == "gated"
    sample = live.read()
    assert live.raw_peer_hooks, "a raw/ICMP socket exists but the peer programs are not attached"
    return sample


@pytest.mark.parametrize("net", ("lo4", "lo6", "veth4", "veth6"))
def test_icmp_raw_socket(live: Any, spawn: Any, request: pytest.FixtureRequest, net: str) -> None:
    """Echo requests from a raw ICMP/ICMPv6 socket in the host; the kernel answers."""
    dest, _ns = server_endpoint(request, net)
    pinger = spawn("nm-icmp-raw", icmp_ping, dest, "raw", 5, 56, True)
    before = noticed(live, pinger)
    pinger.send("go")
    ledger = pinger.result()
    after = live.read()
    problems = flow_mismatches(before, after, pinger.pid, ledger, pinger.comm, "pinger")
    problems += protocol_shortfall(before, after, [ledger])
    assert_no_problems(problems, live)


@pytest.mark.parametrize("family", ("IPv4", "IPv6"))
def test_icmp_ping_socket(live: Any, spawn: Any, netns: Any, family: str) -> None:
    """Ping sockets (SOCK_DGRAM, IPPROTO_ICMP/ICMPV6) from inside the namespace
    (where ping_group_range allows them) to the host end of the veth."""
    pinger = spawn(
        "nm-icmp-dgram", icmp_ping, netns.host(family), "dgram", 5, 100, True, netns=netns.name
    )
    before = noticed(live, pinger)
    pinger.send("go")
    ledger = pinger.result()
    after = live.read()
    problems = flow_mismatches(before, after, pinger.pid, ledger, pinger.comm, "pinger")
    problems += protocol_shortfall(before, after, [ledger])
    assert_no_problems(problems, live)


@pytest.mark.parametrize("net", ("lo4", "lo6", "veth4", "veth6"))
def test_raw_ip(live: Any, spawn: Any, request: pytest.FixtureRequest, net: str) -> None:
    """SOCK_RAW with protocol 253: counted as RAW, role unknown, port 0."""
    dest, ns = server_endpoint(request, net)
    marker = os.urandom(8)
    sizes = (1, 64, 1000, 1400)
    receiver = spawn("nm-raw-recv", raw_receiver, dest, len(sizes), marker, True, netns=ns)
    sender = spawn("nm-raw-send", raw_sender, dest, sizes, marker, True)
    # Both wait until netmon has seen their sockets: a receive already
    # blocked when the peer programs attach has no peer either.
    before = noticed(live, receiver, sender)
    receiver.send("go")
    sender.send("go")
    send_ledger = sender.result()
    recv_ledger = receiver.result()
    after = live.read()
    problems = flow_mismatches(before, after, sender.pid, send_ledger, sender.comm, "sender")
    problems += flow_mismatches(before, after, receiver.pid, recv_ledger, receiver.comm, "receiver")
    problems += protocol_shortfall(before, after, [send_ledger, recv_ledger])
    assert_no_problems(problems, live)


def test_af_packet(live: Any, spawn: Any, netns: Any) -> None:
    """Crafted Ethernet frames on the host end of the veth, read by an AF_PACKET
    socket on the namespace end: family PACKET, port 0, no remote IP."""
    marker = os.urandom(8)
    sizes = (46, 200, 1400)
    before = live.read()
    receiver = spawn(
        "nm-pkt-recv", packet_receiver, netns.ns_if, len(sizes), marker, netns=netns.name
    )
    receiver.recv()
    sender = spawn(
        "nm-pkt-send", packet_sender, netns.host_if, netns.host_mac, netns.ns_mac, sizes, marker
    )
    send_ledger = sender.result()
    recv_ledger = receiver.result()
    after = live.read()
    problems = flow_mismatches(before, after, sender.pid, send_ledger, sender.comm, "sender")
    problems += flow_mismatches(before, after, receiver.pid, recv_ledger, receiver.comm, "receiver")
    problems += protocol_shortfall(before, after, [send_ledger, recv_ledger])
    assert_no_problems(problems, live)


def test_raw_receives_before_netmon_noticed_the_socket_count_without_a_peer(
    live: Any, spawn: Any
) -> None:
    """Between a raw socket's creation and the next poll, socket mode has no
    syscall program to give the source of what it receives: the bytes still
    count, exactly, on a flow with no remote address. Sends always have their
    peer (from the syscall's arguments), and syscalls mode always has both."""
    marker = os.urandom(8)
    sizes = (10, 300)
    before = live.read()
    hooked = live.raw_peer_hooks  # no poll until `after`: it stays so meanwhile
    receiver = spawn("nm-raw-recv", raw_receiver, "127.0.0.1", len(sizes), marker)
    receiver.recv()
    sender = spawn("nm-raw-early", raw_sender, "127.0.0.1", sizes, marker)
    send_ledger, recv_ledger = sender.result(), receiver.result()
    after = live.read()
    if not hooked:
        recv_ledger = _without_peers(recv_ledger)
    problems = flow_mismatches(before, after, sender.pid, send_ledger, sender.comm, "sender")
    problems += flow_mismatches(before, after, receiver.pid, recv_ledger, receiver.comm, "receiver")
    assert_no_problems(problems, live)


def _without_peers(ledger: Ledger) -> Ledger:
    out = Ledger()
    for (protocol, family, port, _ip, role), tally in ledger.flows.items():
        out.at(protocol, family, port, None, role).add(tally)
    return out
