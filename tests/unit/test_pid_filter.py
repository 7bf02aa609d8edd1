"""--pid: only some processes are shown; protocol totals stay machine-wide."""

from __future__ import annotations

import json

import pytest

from netmon import cli
from netmon.config import parse_args
from netmon.feed import PidFilter, keep_pids
from netmon.model import FlowStat, ProcessStat, Snapshot

from .helpers import FakeClock, FakeSource, FakeStop, key
from .test_cli import Factory


def _snapshot(*pids: int) -> Snapshot:
    return Snapshot(
        ts=1.0,
        interval_s=1.0,
        flows=tuple(FlowStat(key(pid=p), f"p{p}", p, 2 * p, 1, 1, float(p), False) for p in pids),
        processes=tuple(ProcessStat(p, f"p{p}", p, 2 * p, float(p)) for p in pids),
        protocols={"TCP": 12345},
        dropped=3,
    )


def test_pid_option_takes_lists_and_repeats() -> None:
    assert parse_args(["-p", "10,20", "--pid", "7"]).pids == frozenset({7, 10, 20})
    assert parse_args([]).pids == frozenset()


@pytest.mark.parametrize("bad", ["x", "0", "-3", "10,", "1.5"])
def test_bad_pid_is_refused(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(["--pid", bad])
    assert exc.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_keep_pids_keeps_only_those_processes_and_all_protocols() -> None:
    kept = keep_pids(_snapshot(1, 2, 3), frozenset({2, 3, 99}))
    assert [f.key.pid for f in kept.flows] == [2, 3]
    assert [p.pid for p in kept.processes] == [2, 3]
    assert (kept.protocols, kept.dropped, kept.ts) == ({"TCP": 12345}, 3, 1.0)


class _Feed:
    def __init__(self) -> None:
        self.closed = 0

    def next_due(self) -> float | None:
        return 5.0

    def poll(self, now: float) -> Snapshot | None:
        return _snapshot(1, 2) if now >= 5.0 else None

    def close(self) -> None:
        self.closed += 1


def test_pid_filter_forwards_schedule_and_close() -> None:
    inner = _Feed()
    feed = PidFilter(inner, frozenset({2}))
    assert feed.next_due() == 5.0
    assert feed.poll(4.0) is None
    snap = feed.poll(5.0)
    assert snap is not None and [f.key.pid for f in snap.flows] == [2]
    assert feed.flush(6.0) is None  # the inner feed cannot flush
    feed.close()
    assert inner.closed == 1


@pytest.mark.parametrize(("pid", "shown"), [("100", 1), ("999", 0)])
def test_cli_json_with_pid(pid: str, shown: int, capsys: pytest.CaptureFixture[str]) -> None:
    clock = FakeClock()
    argv = ["--json", "--count", "2", "--pid", pid]
    source = FakeSource(clock=clock)
    assert cli.main(argv, source_factory=Factory(source), clock=clock, stop=FakeStop(clock)) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 2
    assert all(len(obj["flows"]) == shown and len(obj["processes"]) == shown for obj in lines)
    assert lines[-1]["protocols"]["TCP"] > 0
