from __future__ import annotations

import io
import json
import os
import signal
import threading

import pytest

from netmon.json_output import SignalStop, run_json, stop_on_signals
from netmon.jsonl import loads
from netmon.live_feed import LiveFeed
from netmon.metrics import MetricsEngine
from netmon.model import Snapshot

from .helpers import WALL0, FakeClock, FakeSource, FakeStop


class FlushCounter(io.StringIO):
    flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


def live(clock: FakeClock, interval: float = 1.0) -> tuple[LiveFeed, FakeSource]:
    source = FakeSource(clock=clock)
    return LiveFeed(source, MetricsEngine(0.4, 1e12, interval), interval, clock), source


class ListFeed:
    """Snapshots at fixed times, no flush(); exhausted at the end."""

    def __init__(self, times: list[float]) -> None:
        self.times = list(times)
        self.closed = False

    def next_due(self) -> float | None:
        return self.times[0] if self.times else None

    def poll(self, now: float) -> Snapshot | None:
        if not self.times or now < self.times[0]:
            return None
        t = self.times.pop(0)
        return Snapshot(ts=t, interval_s=1.0, flows=(), processes=())

    def close(self) -> None:
        self.closed = True


def test_count_writes_that_many_lines_each_flushed() -> None:
    clock = FakeClock()
    feed, _ = live(clock, interval=2.0)
    out = FlushCounter()
    stop = FakeStop(clock)
    assert run_json(feed, out, 3, clock, stop=stop) == 0
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    snaps = [loads(line) for line in lines]
    assert [s.ts for s in snaps] == [WALL0 + 1000.0, WALL0 + 1002.0, WALL0 + 1004.0]
    assert out.flushes >= 3
    # it waited for each due time instead of spinning
    assert stop.waits == [pytest.approx(2.0), pytest.approx(2.0)]


def test_ends_with_the_feed() -> None:
    clock = FakeClock(0.0)
    waits: list[float] = []

    def wait(seconds: float) -> None:
        waits.append(seconds)
        clock.advance(seconds)

    out = io.StringIO()
    assert run_json(ListFeed([0.0, 0.5, 3.0]), out, None, clock, wait) == 0
    assert [loads(x).ts for x in out.getvalue().splitlines()] == [0.0, 0.5, 3.0]
    assert waits == [pytest.approx(0.5), pytest.approx(2.5)]


def test_stop_writes_a_final_object_covering_everything_so_far() -> None:
    clock = FakeClock()
    feed, source = live(clock)
    # two regular snapshots, then a stop arrives halfway through the next wait
    stop = FakeStop(clock, after_waits=2)
    out = io.StringIO()
    assert run_json(feed, out, None, clock, stop=stop) == 0
    snaps = [loads(x) for x in out.getvalue().splitlines()]
    assert len(snaps) == 3
    assert source.reads == 3
    final = snaps[-1]
    total = source.reads * source.bytes_per_read
    assert final.flows[0].bytes_sent == total
    assert final.flows[0].bytes_recv == 2 * total


def test_stop_before_anything_still_writes_one_object() -> None:
    clock = FakeClock()
    feed, _ = live(clock)
    stop = threading.Event()
    stop.set()
    out = io.StringIO()
    assert run_json(feed, out, 5, clock, stop=stop) == 0
    assert len(out.getvalue().splitlines()) == 1


def test_stop_without_a_flushable_feed_adds_nothing() -> None:
    clock = FakeClock(0.0)
    stop = FakeStop(clock, after_waits=1)
    out = io.StringIO()
    assert run_json(ListFeed([0.0, 1.0, 2.0]), out, None, clock, stop=stop) == 0
    assert [loads(x).ts for x in out.getvalue().splitlines()] == [0.0]


def test_a_due_feed_with_nothing_to_give_is_waited_on_not_spun() -> None:
    class Stuck(ListFeed):
        def poll(self, now: float) -> Snapshot | None:
            return None

    clock = FakeClock(0.0)
    stop = FakeStop(clock, after_waits=3)
    assert run_json(Stuck([0.0]), io.StringIO(), None, clock, stop=stop) == 0
    assert len(stop.waits) == 3
    assert all(w is not None and w > 0 for w in stop.waits)


def test_signal_stop_wakes_a_waiter_at_once() -> None:
    stop = SignalStop()
    try:
        assert stop.wait(0) is False
        assert not stop.is_set()
        stop.set()
        stop.set()  # idempotent
        assert stop.is_set()
        assert stop.wait(30) is True
    finally:
        stop.close()


def test_stop_on_signals_routes_sigterm_and_restores_handlers() -> None:
    before = signal.getsignal(signal.SIGTERM)
    stop = SignalStop()
    try:
        with stop_on_signals(stop):
            os.kill(os.getpid(), signal.SIGTERM)
            assert stop.wait(30) is True
        assert signal.getsignal(signal.SIGTERM) is before
    finally:
        stop.close()


def test_lines_are_the_jsonl_contract() -> None:
    clock = FakeClock()
    feed, _ = live(clock)
    out = io.StringIO()
    run_json(feed, out, 1, clock, stop=FakeStop(clock))
    obj = json.loads(out.getvalue())
    assert set(obj) >= {"ts", "interval_s", "flows", "processes", "protocols", "dropped"}
    assert obj["flows"][0]["pid"] == 100
