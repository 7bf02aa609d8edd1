"""IPv4-mapped peers: shown as IPv4, and flows that then share a key merged."""

from __future__ import annotations

import ipaddress

import numpy as np

from netmon.metrics import MetricsEngine
from netmon.model import FlowKey, FlowReadings, RawSample
from netmon.peers import peer_address

from .helpers import WALL0, key


def v6(text: str) -> bytes:
    return ipaddress.IPv6Address(text).packed


def test_mapped_peer_is_ipv4() -> None:
    assert peer_address("IPv6", v6("::ffff:127.0.0.1")) == ("IPv4", "127.0.0.1")
    assert peer_address("IPv6", v6("::ffff:198.51.100.7")) == ("IPv4", "198.51.100.7")


def test_other_peers_keep_their_family() -> None:
    assert peer_address("IPv6", v6("::1")) == ("IPv6", "::1")
    assert peer_address("IPv6", v6("2001:db8::ffff:7f00:1")) == ("IPv6", "2001:db8::ffff:7f00:1")
    # IPv4-compatible (deprecated, ::a.b.c.d) and NAT64 addresses are IPv6 hosts.
    assert peer_address("IPv6", v6("::7f00:1")) == ("IPv6", "::7f00:1")
    assert peer_address("IPv6", v6("64:ff9b::c000:201")) == ("IPv6", "64:ff9b::c000:201")
    assert peer_address("IPv4", bytes([192, 0, 2, 1]) + bytes(12)) == ("IPv4", "192.0.2.1")
    assert peer_address("IPv6", bytes(16)) == ("IPv6", None)
    assert peer_address("IPv4", bytes(16)) == ("IPv4", None)
    assert peer_address("PACKET", bytes(16)) == ("PACKET", None)


def readings(rows: dict[str, tuple[FlowKey, int, int]]) -> FlowReadings:
    """Kernel rows by id (as the live source has them: several ids may have
    the same key) -> FlowReadings."""
    ids = list(rows)
    keys = {i: rows[i][0] for i in ids}
    return FlowReadings(
        ids=ids,
        key_of=keys.__getitem__,
        counts=np.array([[rows[i][1], rows[i][2], 1, 1] for i in ids], dtype=np.uint64),
        comm=np.array([b"java"] * len(ids)),
        kernel=np.zeros(len(ids), dtype=bool),
    )


def raw(t: float, rows: dict[str, tuple[FlowKey, int, int]]) -> RawSample:
    return RawSample(
        monotonic_ns=round(t * 1e9), wall_time=WALL0 + t, flows=readings(rows),
        processes={}, protocols={}, dropped=0,
    )  # fmt: skip


def test_two_kernel_flows_with_one_key_are_one_row_with_summed_counters() -> None:
    k = key(pid=7, remote_ip="127.0.0.1")
    other = key(pid=7, remote_ip="127.0.0.2")
    engine = MetricsEngine(0.5, 1e12, 1.0)
    engine.update(raw(0.0, {"v4": (k, 100, 10), "v6": (k, 1000, 20), "o": (other, 5, 5)}))
    snap = engine.update(raw(1.0, {"v4": (k, 300, 10), "v6": (k, 1600, 20), "o": (other, 5, 5)}))
    rows = [f for f in snap.flows if f.key == k]
    assert len(rows) == 1
    assert (rows[0].bytes_sent, rows[0].bytes_recv) == (1900, 30)
    assert rows[0].rate_bps == 800.0  # 200 + 600 bytes in one second
    assert [f.bytes_sent for f in snap.flows if f.key == other] == [5]
    assert len(snap.flows) == 2
    # A process's totals are not counted twice.
    assert sum(f.bytes_sent for f in snap.flows if f.key.pid == 7) == 1905
    # One of the two kernel flows restarting (evicted, re-created) leaves the other's counts.
    snap = engine.update(raw(2.0, {"v4": (k, 50, 10), "v6": (k, 1600, 20), "o": (other, 5, 5)}))
    assert [f.bytes_sent for f in snap.flows if f.key == k] == [1950]


def test_distinct_keys_are_never_merged() -> None:
    engine = MetricsEngine(0.5, 1e12, 1.0)
    rows = {str(n): (key(pid=7, port=1000 + n % 3, remote_ip=f"10.0.0.{n // 3}"), n, 0)
            for n in range(30)}  # fmt: skip
    snap = engine.update(raw(0.0, rows))
    assert len(snap.flows) == 30
    assert sorted(f.bytes_sent for f in snap.flows) == list(range(30))
