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
                cgroup="/system.slice/curl-fetch.service",
                service="curl-fetch.service",
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
        processes=(
            ProcessStat(
                pid=100,
                comm="curl",
                bytes_sent=10,
                bytes_recv=20,
                rate_bps=30.5,
                cgroup="/system.slice/curl-fetch.service",
                service="curl-fetch.service",
            ),
        ),
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
    assert set(obj) == {"ts", "interval_s", "flows", "processes", "protocols", "dropped",
                        "closed"}
    assert set(obj["flows"][0]) == {
        "pid", "comm", "protocol", "family", "port", "remote_ip", "remote_name", "role",
        "bytes_sent", "bytes_recv", "packets_sent", "packets_recv", "rate_bps", "anomaly", "kernel",
        "cgroup", "service",
    }  # fmt: skip
    assert set(obj["processes"][0]) == {
        "pid", "comm", "bytes_sent", "bytes_recv", "rate_bps", "kernel", "cgroup", "service",
    }  # fmt: skip
    assert obj["flows"][1]["remote_ip"] is None
    assert obj["flows"][0]["cgroup"] == "/system.slice/curl-fetch.service"
    assert obj["flows"][0]["service"] == "curl-fetch.service"
    assert obj["flows"][1]["cgroup"] is None and obj["flows"][1]["service"] is None
    assert obj["processes"][0]["service"] == "curl-fetch.service"


def test_optional_fields_default() -> None:
    obj = snapshot_to_dict(snapshot())
    del obj["dropped"]
    del obj["protocols"]
    del obj["flows"][0]["kernel"]
    del obj["flows"][0]["cgroup"], obj["flows"][0]["service"]  # recorded before they existed
    del obj["processes"][0]["cgroup"], obj["processes"][0]["service"]
    snap = snapshot_from_dict(obj)
    assert snap.dropped == 0
    assert snap.protocols == {}
    assert snap.flows[0].kernel is False
    assert (snap.flows[0].cgroup, snap.flows[0].service) == (None, None)
    assert (snap.processes[0].cgroup, snap.processes[0].service) == (None, None)


def test_cgroup_fields_must_be_strings_or_null() -> None:
    obj = snapshot_to_dict(snapshot())
    obj["flows"][0]["service"] = 3
    with pytest.raises(ValueError, match="'service' must be a string"):
        snapshot_from_dict(obj)


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
        (lambda o: o.update(protocols={"TCP": -1}), "'TCP' must be from 0 to"),
        (lambda o: o.update(flows="abc"), "'flows' must be a list"),
        (lambda o: o.update(flows=[None]), "'flows' item 1 must be an object"),
        (lambda o: o.update(processes={}), "'processes' must be a list"),
        (lambda o: o.update(ts=1e308), "'ts' must be a finite number from 0 to"),
        (lambda o: o.update(ts=-1.0), "'ts' must be a finite number"),
        (lambda o: o.update(interval_s=10**400), "integer of 401 digits is out of range"),
        (lambda o: o.update(dropped=-1), "'dropped' must be from 0 to"),
        (lambda o: o["flows"][0].update(bytes_sent=-5), "'bytes_sent' must be from 0 to"),
        (lambda o: o["flows"][0].update(packets_recv=2**64), "'packets_recv' must be from 0 to"),
        (lambda o: o["flows"][0].update(pid=2**32), "'pid' must be from 0 to 4294967295"),
        (lambda o: o["flows"][0].update(port=70000), "'port' must be from 0 to 65535"),
        (lambda o: o["flows"][0].update(rate_bps=-0.5), "'rate_bps' must be a finite number"),
        (lambda o: o["flows"][0].update(rate_bps=2.0**65), "'rate_bps' must be a finite number"),
        (lambda o: o["flows"][0].update(anomaly=1), "'anomaly' must be true or false"),
        (lambda o: o["processes"][0].update(kernel="no"), "'kernel' must be true or false"),
        (lambda o: o["flows"][0].update(comm="x" * 4097), "'comm' is longer than 4096"),
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


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("NaN", "NaN is not a number in JSON"),
        ("Infinity", "Infinity is not a number in JSON"),
        ("-Infinity", "-Infinity is not a number in JSON"),
        ("1e400", "'rate_bps' must be a finite number"),
        ("9" * 4000, "integer of 4000 digits is out of range"),
    ],
)
def test_numbers_json_cannot_hold_are_refused(text: str, reason: str) -> None:
    line = dumps(snapshot()).replace('"rate_bps":30.5', '"rate_bps":' + text, 1)
    assert text in line
    with pytest.raises(SnapshotFormatError) as exc:
        loads(line, 4)
    assert str(exc.value).startswith("line 4: ") and reason in str(exc.value)


def test_limits_themselves_are_accepted() -> None:
    obj = snapshot_to_dict(snapshot())
    obj["flows"][0].update(bytes_sent=2**64 - 1, pid=2**32 - 1, port=65535, rate_bps=2.0**64)
    obj.update(ts=253402300799.0, dropped=2**64 - 1)
    snap = snapshot_from_dict(obj)
    assert snap.flows[0].bytes_sent == 2**64 - 1
    assert loads(dumps(snap)) == snap


def test_an_int_too_large_for_a_float_given_directly_is_refused() -> None:
    obj = snapshot_to_dict(snapshot())
    obj["interval_s"] = 10**400  # not through JSON: float() would overflow
    with pytest.raises(ValueError, match="got a number out of range"):
        snapshot_from_dict(obj)
