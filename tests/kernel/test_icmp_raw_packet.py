"""ICMP and ICMPv6 (raw and ping sockets), raw IP (protocol 253) and AF_PACKET."""

from __future__ import annotations

import os
from typing import Any

import pytest

from .flows import assert_no_problems, flow_mismatches, protocol_shortfall
from .test_paths import server_endpoint
from .traffic import (
    icmp_ping,
    packet_receiver,
    packet_sender,
    raw_receiver,
    raw_sender,
)


@pytest.mark.parametrize("net", ("lo4", "lo6", "veth4", "veth6"))
def test_icmp_raw_socket(live: Any, spawn: Any, request: pytest.FixtureRequest, net: str) -> None:
    """Echo requests from a raw ICMP/ICMPv6 socket in the host; the kernel answers."""
    dest, _ns = server_endpoint(request, net)
    before = live.read()
    pinger = spawn("nm-icmp-raw", icmp_ping, dest, "raw", 5, 56)
    ledger = pinger.result()
    after = live.read()
    problems = flow_mismatches(before, after, pinger.pid, ledger, pinger.comm, "pinger")
    problems += protocol_shortfall(before, after, [ledger])
    assert_no_problems(problems, live)


@pytest.mark.parametrize("family", ("IPv4", "IPv6"))
def test_icmp_ping_socket(live: Any, spawn: Any, netns: Any, family: str) -> None:
    """Ping sockets (SOCK_DGRAM, IPPROTO_ICMP/ICMPV6) from inside the namespace
    (where ping_group_range allows them) to the host end of the veth."""
    before = live.read()
    pinger = spawn(
        "nm-icmp-dgram", icmp_ping, netns.host(family), "dgram", 5, 100, netns=netns.name
    )
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
    before = live.read()
    receiver = spawn("nm-raw-recv", raw_receiver, dest, len(sizes), marker, netns=ns)
    receiver.recv()
    sender = spawn("nm-raw-send", raw_sender, dest, sizes, marker)
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
