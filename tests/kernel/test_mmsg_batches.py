"""sendmmsg/recvmmsg batches far larger than the per-message peer limit
(NETMON_MAX_MMSG_PEERS): every message and byte is still counted, and on
unconnected sockets each peer gets its own messages."""

from __future__ import annotations

import os
import socket
from collections import Counter
from typing import Any

from netmon.abi import load_abi

from .traffic import bind_explicit_port, recvmmsg, sendmmsg, set_recv_timeout


def _udp_flows(sample: Any, ports: set[int]) -> dict[tuple[str, int], tuple[int, ...]]:
    return {
        (k.role, k.port): (v.bytes_sent, v.bytes_recv, v.packets_sent, v.packets_recv)
        for k, v in sample.flows.items()
        if k.pid == os.getpid() and k.protocol == "UDP" and k.port in ports
    }


def _delta(after: dict[Any, tuple[int, ...]], before: dict[Any, tuple[int, ...]]) -> dict:
    return {
        key: tuple(a - b for a, b in zip(value, before.get(key, (0, 0, 0, 0)), strict=True))
        for key, value in after.items()
    }


def test_large_batches_to_two_peers_are_counted_whole(live: Any) -> None:
    batch = 3 * load_abi().values["MAX_MMSG_PEERS"] + 5
    servers = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        ports = set()
        for server in servers:
            bind_explicit_port(server, "127.0.0.1")
            server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            set_recv_timeout(server)
            ports.add(server.getsockname()[1])
        before = _udp_flows(live.read(), ports)

        sent: Counter[int] = Counter()
        for n, server in enumerate(servers):
            port = server.getsockname()[1]
            sizes = [100 + n + i % 7 for i in range(batch)]
            lens = sendmmsg(client.fileno(), [b"m" * size for size in sizes], ("127.0.0.1", port))
            assert len(lens) == batch
            sent[port] = sum(lens)
            got: list[tuple[int, str, int]] = []
            while len(got) < batch:
                got += recvmmsg(server.fileno(), batch, 2048)
            assert sum(length for length, _, _ in got) == sent[port]

        delta = _delta(_udp_flows(live.read(), ports), before)
        for port, nbytes in sent.items():
            assert delta[("client", port)] == (nbytes, 0, batch, 0)
            assert delta[("server", port)] == (0, nbytes, 0, batch)
    finally:
        client.close()
        for server in servers:
            server.close()
