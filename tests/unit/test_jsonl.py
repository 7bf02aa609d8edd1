from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import pytest

from netmon.jsonl import (
    SnapshotFormatError,
    dumps,
    loads,
    read_snapshots,
    snapshot_from_dict,
    snapshot_to_dict,
)
from netmon.model import FlowStat, ProcessStat, Snapshot

from .helpers import key


def snapshot(ts: float = 1700000000.5) -> Snapshot:
    return Snapshot(
        ts=ts,
        interval_s=1.002,
        flows=(
            FlowStat(
                key=key(remote_ip="2001:db8::1", family="IPv6"),
                comm="curl",
                bytes_sent=10,
                bytes_recv=20,
                packets_sent=1,
                packets_recv=2,
                rate_bps=30.5,
                anomaly=True,
            ),
            FlowStat(
                key=key(pid=7, protocol="UDP", port=0, remote_ip=None, role="unknown"),
                comm="kworker/0:1",
                bytes_sent=0,
                bytes_recv=5,
                packets_sent=0,
                packets_recv=1,
                rate_bps=0.0,
                anomaly=False,
                kernel=True,
            ),
        ),
        processes=(ProcessStat(pid=100, comm="curl", bytes_sent=10, bytes_recv=20, rate_bps=30.5),),
        protocols={"TCP": 30, "UDP": 5},
        dropped=3,
    )


def test_round_trip() -> None:
    snap = snapshot()
    line = dumps(snap)
    assert "\n" not in line
    assert loads(line) == snap


def test_contract_field_names() -> None:
    obj = json.loads(dumps(snapshot()))
    assert set(obj) == {"ts", "interval_s", "flows", "processes", "protocols", "dropped"}
    assert set(obj["flows"][0]) == {
        "pid", "comm", "protocol", "family", "port", "remote_ip", "role", "bytes_sent",
        "bytes_recv", "packets_sent", "packets_recv", "rate_bps", "anomaly", "kernel",
    }  # fmt: skip
    assert set(obj["processes"][0]) == {
        "pid", "comm", "bytes_sent", "bytes_recv", "rate_bps", "kernel",
    }  # fmt: skip
    assert obj["flows"][1]["remote_ip"] is None


def test_optional_fields_default() -> None:
    obj = snapshot_to_dict(snapshot())
    del obj["dropped"]
    del obj["protocols"]
    del obj["flows"][0]["kernel"]
    snap = snapshot_from_dict(obj)
    assert snap.dropped == 0
    assert snap.protocols == {}
    assert snap.flows[0].kernel is False


def test_extra_fields_are_ignored() -> None:
    obj = snapshot_to_dict(snapshot())
    obj["future_field"] = {"x": 1}
    obj["flows"][0]["latency_ms"] = 3
    assert snapshot_from_dict(obj) == snapshot()


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda o: o.pop("ts"), "missing field 'ts'"),
        (lambda o: o["flows"][0].update(pid="100"), "'pid' must be an integer"),
        (lambda o: o["flows"][0].update(pid=True), "'pid' must be an integer"),
        (lambda o: o.update(ts="now"), "'ts' must be a number"),
        (lambda o: o["flows"][0].update(remote_ip=5), "'remote_ip' must be a string or null"),
        (lambda o: o["processes"][0].update(comm=None), "'comm' must be a string"),
        (lambda o: o.update(protocols=[]), "'protocols' must be an object"),
    ],
)
def test_invalid_fields_name_the_line(
    mutate: Callable[[dict[str, Any]], object], reason: str
) -> None:
    obj = snapshot_to_dict(snapshot())
    mutate(obj)
    with pytest.raises(SnapshotFormatError) as exc:
        loads(json.dumps(obj), line_no=7)
    assert exc.value.line_no == 7
    assert reason in str(exc.value)
    assert str(exc.value).startswith("line 7: ")


def test_not_json_and_not_an_object() -> None:
    with pytest.raises(SnapshotFormatError, match="invalid JSON"):
        loads("{nope", 2)
    with pytest.raises(SnapshotFormatError, match="not a JSON object"):
        loads("[1, 2]", 3)


def test_read_snapshots_skips_blank_lines_and_counts_lines() -> None:
    a, b = snapshot(1.0), snapshot(2.0)
    stream = io.StringIO(f"{dumps(a)}\n\n  \n{dumps(b)}\nnot json\n")
    it = read_snapshots(stream)
    assert next(it) == a
    assert next(it) == b
    with pytest.raises(SnapshotFormatError) as exc:
        next(it)
    assert exc.value.line_no == 5


def test_truncated_last_line_is_reported_as_truncated() -> None:
    line = dumps(snapshot())
    stream = io.StringIO(f"{line}\n{line[: len(line) // 2]}")
    it = read_snapshots(stream)
    next(it)
    with pytest.raises(SnapshotFormatError, match="line 2: truncated"):
        next(it)


def test_complete_last_line_without_newline_is_accepted() -> None:
    assert list(read_snapshots(io.StringIO(dumps(snapshot())))) == [snapshot()]
