"""The JSON Lines encoder builds each flow's text from cached pieces: it must
write exactly what json.dumps writes for the same snapshot."""

from __future__ import annotations

import json

from netmon.jsonl import dumps, loads, snapshot_to_dict
from netmon.model import FlowStat, ProcessStat, Snapshot

from .helpers import key

NAMES = ["curl", 'a"b\\c', "tab\there", "\x1b[31mred", "中文进程", "100%", "", "emoji 🙂"]


def reference(snap: Snapshot) -> str:
    return json.dumps(snapshot_to_dict(snap), separators=(",", ":"))


def tricky_snapshot(rates: list[float]) -> Snapshot:
    flows = []
    for i, rate in enumerate(rates):
        ip = [None, "192.0.2.1", "2001:db8::7", "10.0.0.255"][i % 4]
        flows.append(
            FlowStat(
                key=key(
                    pid=100 + i % 3,
                    protocol=["TCP", "UDP", "ICMPv6", "proto-99"][i % 4],
                    port=[0, 53, 65535, 443][i % 4],
                    remote_ip=ip,
                    role=["unknown", "client", "server"][i % 3],
                    family="IPv6" if ip and ":" in ip else "IPv4",
                ),
                comm=NAMES[i % len(NAMES)],
                bytes_sent=(1 << 63) + i if i == 3 else i * 1000,
                bytes_recv=2**64 - 1 if i == 5 else i,
                packets_sent=i,
                packets_recv=0,
                rate_bps=rate,
                anomaly=i % 2 == 0,
                kernel=i % 5 == 0,
            )
        )
    return Snapshot(
        ts=1_700_000_000.123456,
        interval_s=0.9999999,
        flows=tuple(flows),
        processes=(ProcessStat(100, 'we"ird', 5, 6, 1e-300), ProcessStat(101, "b", 0, 0, 0.0)),
        protocols={"TCP": 1, "UDP": 2**64 - 1},
        dropped=7,
    )


def test_encoder_writes_what_json_dumps_writes() -> None:
    # All within what a recording may hold (loads checks), 1.8e19 near its top.
    rates = [0.0, 1.5, 3633874.992358737, 1e-7, 1.8e19, -0.0, 123456789.0, 2.0**53 + 1]
    snap = tricky_snapshot(rates * 3)
    assert dumps(snap) == reference(snap)
    assert dumps(snap) == reference(snap)  # again, from the cached pieces
    assert loads(dumps(snap)) == snap


def test_encoder_handles_non_finite_rates_like_json_dumps() -> None:
    snap = tricky_snapshot([1.0, float("nan"), float("inf")])
    assert dumps(snap) == reference(snap)


def test_encoder_of_an_empty_snapshot() -> None:
    snap = Snapshot(ts=1.0, interval_s=0.0, flows=(), processes=())
    assert dumps(snap) == reference(snap)


def test_a_name_change_shows_in_the_next_line() -> None:
    a = tricky_snapshot([1.0, 2.0])
    renamed = Snapshot(
        ts=a.ts,
        interval_s=a.interval_s,
        flows=tuple(FlowStat(**{**f.__dict__, "comm": "renamed"}) for f in a.flows),
        processes=a.processes,
    )
    dumps(a)
    assert dumps(renamed) == reference(renamed)
    assert '"comm":"renamed"' in dumps(renamed)
