"""Flows that leave the table (idle, exited, forgotten) keep their bytes in
the closed aggregate; which rows are idle."""

from __future__ import annotations

import json

import numpy as np
import pytest

from netmon import cli
from netmon.closed import ClosedFlows
from netmon.config import parse_args
from netmon.jsonl import dumps, loads
from netmon.metrics import MetricsEngine
from netmon.model import Snapshot
from netmon.sources.idle import IdleRows

from .helpers import FakeClock, FakeSource, FakeStop, fc, key, pc, sample

A, B = key(pid=1, port=80), key(pid=2, port=443)


def engine(**kwargs: object) -> MetricsEngine:
    return MetricsEngine(0.4, 1e12, 1.0, **kwargs)  # type: ignore[arg-type]


def listed_plus_closed(snap: Snapshot) -> tuple[int, int]:
    sent = sum(f.bytes_sent for f in snap.flows) + snap.closed.bytes_sent
    recv = sum(f.bytes_recv for f in snap.flows) + snap.closed.bytes_recv
    return sent, recv


def test_a_retired_flow_leaves_at_once_with_its_final_counts_in_closed() -> None:
    e = engine()
    first = e.update(sample(0.0, {A: fc(sent=100, recv=7), B: fc(sent=5)}))
    assert first.closed == ClosedFlows()
    snap = e.update(sample(1.0, {A: fc(sent=150, recv=9), B: fc(sent=6)}, retired=frozenset({A})))
    assert [f.key for f in snap.flows] == [B]
    assert snap.closed == ClosedFlows(flows=1, bytes_sent=150, bytes_recv=9,
                                      packets_sent=2, packets_recv=1)  # fmt: skip
    assert listed_plus_closed(snap) == (156, 9)
    # Rates to write back: none for the flow the source removed.
    rates = e.rates()
    assert np.isnan(rates[A]) and not np.isnan(rates[B])
    # It comes back: a new kernel entry, counted from zero; nothing goes down.
    back = e.update(sample(2.0, {A: fc(sent=10), B: fc(sent=6)}))
    assert [f.bytes_sent for f in back.flows if f.key == A] == [10]
    assert back.closed.flows == 1
    assert listed_plus_closed(back) == (166, 9)


def test_exited_and_forgotten_flows_go_to_closed_too() -> None:
    e = engine(forget_after_s=10.0)
    e.update(sample(0.0, {A: fc(sent=100), B: fc(recv=30)}, {1: pc(1, 100), 2: pc(2, 0, 30)}))
    final = e.update(sample(1.0, {A: fc(sent=120), B: fc(recv=30)}, exited=frozenset({1})))
    assert final.closed.flows == 0 and listed_plus_closed(final) == (120, 30)
    after = e.update(sample(2.0, {}))  # B gone from the kernel's table
    assert [f.key for f in after.flows] == [B]
    assert after.closed == ClosedFlows(1, 120, 0, 2, 0)
    forgotten = e.update(sample(12.5, {}))
    assert forgotten.flows == ()
    assert forgotten.closed == ClosedFlows(2, 120, 30, 2, 1)


def test_hidden_kernel_threads_stay_out_of_closed_unless_shown() -> None:
    kthread = key(pid=3, port=2049)
    for show, expected in ((False, 0), (True, 1)):
        e = engine(show_kernel=show)
        e.update(sample(0.0, {kthread: fc(sent=9, kernel=True)}))
        snap = e.update(sample(1.0, {kthread: fc(sent=9, kernel=True)},
                               retired=frozenset({kthread})))  # fmt: skip
        assert snap.closed.flows == expected


def test_closed_round_trips_through_json_and_is_checked() -> None:
    e = engine()
    e.update(sample(0.0, {A: fc(sent=100)}))
    snap = e.update(sample(1.0, {A: fc(sent=100)}, retired=frozenset({A})))
    line = dumps(snap)
    assert json.loads(line)["closed"] == {
        "flows": 1, "bytes_sent": 100, "bytes_recv": 0, "packets_sent": 1, "packets_recv": 0,
    }  # fmt: skip
    assert loads(line).closed == snap.closed
    old = json.loads(line)
    del old["closed"]  # recordings made before the field existed
    assert loads(json.dumps(old)).closed == ClosedFlows()
    for bad in ({"flows": -1}, {"bytes_sent": "1"}, [1]):
        broken = dict(old, closed=bad)
        with pytest.raises(ValueError, match=r"closed|flows|bytes_sent"):
            loads(json.dumps(broken))


def counts(*rows: int) -> np.ndarray:
    return np.array([[r, 0, 0, 0] for r in rows], dtype=np.uint64)


def test_idle_rows_follow_each_flow_across_reads() -> None:
    idle = IdleRows(timeout_ns=10)
    ids = [b"a", b"b"]
    assert not idle.idle(lambda: ids, b"ab", counts(1, 1), 0).any()
    assert idle.idle(lambda: ids, b"ab", counts(1, 2), 10).tolist() == [True, False]
    # New order and a new flow: each keeps its own time.
    ids2 = [b"c", b"b", b"a"]
    assert idle.idle(lambda: ids2, b"cba", counts(5, 2, 1), 19).tolist() == [False, False, True]
    assert idle.idle(lambda: ids2, b"cba", counts(5, 2, 1), 20).tolist() == [False, True, True]
    # Dropped rows are forgotten: one that comes back starts anew.
    idle.drop(np.array([False, False, True]))
    assert idle.idle(lambda: ids, b"ab", counts(1, 2), 21).tolist() == [False, True]


def test_idle_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError):
        IdleRows(0)


def test_idle_timeout_option_in_minutes() -> None:
    assert parse_args([]).idle_timeout_s == 600.0
    assert parse_args(["--idle-timeout", "0.5"]).idle_timeout_s == 30.0
    assert parse_args(["--idle-timeout", "0"]).idle_timeout_s == 0.0
    for bad in ("-1", "nan", "inf", "10081", "soon"):
        with pytest.raises(SystemExit) as exc:
            parse_args(["--idle-timeout", bad])
        assert exc.value.code == 2


class RetiringSource(FakeSource):
    """A source that, like the live one, can retire idle flows."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.idle_timeouts: list[float | None] = []

    def retire_idle_after(self, seconds: float | None) -> None:
        self.idle_timeouts.append(seconds)


@pytest.mark.parametrize(("argv", "seconds"), [([], 600.0), (["--idle-timeout", "2"], 120.0)])
def test_live_capture_passes_the_idle_timeout_to_the_source(
    argv: list[str], seconds: float, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = FakeClock()
    source = RetiringSource(clock)

    def factory(*, probes: str, max_flows: int) -> RetiringSource:
        return source

    args = ["--json", "--count", "1", *argv]
    assert cli.main(args, source_factory=factory, clock=clock, stop=FakeStop(clock)) == 0
    assert source.idle_timeouts == [seconds]
    assert json.loads(capsys.readouterr().out)["closed"]["flows"] == 0
