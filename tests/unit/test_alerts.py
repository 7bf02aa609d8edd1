"""The alert path: detector, manager (dedup, hysteresis), feed, dispatcher."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Hashable, Set

import pytest

from netmon.alerts.detectors import Finding, ThresholdDetector
from netmon.alerts.events import FIRING, RESOLVED, AlertEvent, Subject
from netmon.alerts.feed import AlertingFeed, footer_alerts, with_alerts
from netmon.alerts.manager import AlertManager
from netmon.alerts.sinks import (
    SUPPRESSED,
    DeliveryError,
    Dispatcher,
    Message,
    RateLimit,
)
from netmon.export.snapshot_view import SnapshotView
from netmon.jsonl import dumps
from netmon.model import Snapshot
from tests.ui.builders import flow, snapshot

LIMIT = 100.0


def rates_snapshot(t: int, rates: dict[int, float]) -> Snapshot:
    """One flow per pid with the given smoothed rates, at time t."""
    return snapshot([flow(pid, f"p{pid}", rate=r) for pid, r in rates.items()], ts=1000.0 + t)


def run(manager: AlertManager, series: list[dict[int, float]]) -> list[tuple[int, str, int, int]]:
    """(t, state, alert_id, pid) of every event over the series."""
    out = []
    for t, rates in enumerate(series):
        for e in manager.update(SnapshotView(rates_snapshot(t, rates))):
            out.append((t, e.state, e.alert_id, e.subject.pid))
    return out


def test_fires_once_then_resolves_after_three_intervals_below_80_percent() -> None:
    manager = AlertManager([ThresholdDetector(LIMIT)])
    rates = [50, 150, 90, 110, 85, 79, 79, 79, 150]
    events = run(manager, [{1: r} for r in rates])
    assert events == [(1, FIRING, 1, 1), (7, RESOLVED, 1, 1), (8, FIRING, 2, 1)]


def test_a_rate_hovering_at_the_threshold_does_not_flap() -> None:
    manager = AlertManager([ThresholdDetector(LIMIT)])
    series = [{1: 95.0 if t % 2 else 105.0} for t in range(50)]
    assert run(manager, series) == [(0, FIRING, 1, 1)]
    # Dipping below 80% for fewer than three intervals in a row does not resolve either.
    series = [{1: 70.0 if t % 3 else 101.0} for t in range(30)]
    assert run(manager, series) == []
    assert manager.firing() == {"threshold": 1}


def test_a_flow_that_disappears_resolves_too() -> None:
    manager = AlertManager([ThresholdDetector(LIMIT)])
    events = run(manager, [{1: 500, 2: 5}, {2: 5}, {2: 5}, {2: 5}])
    assert events == [(0, FIRING, 1, 1), (3, RESOLVED, 1, 1)]


def test_events_carry_subject_values_and_times() -> None:
    manager = AlertManager([ThresholdDetector(LIMIT)])
    snaps = [rates_snapshot(t, {7: r}) for t, r in enumerate([200, 300, 10, 10, 10])]
    events = [e for s in snaps for e in manager.update(SnapshotView(s))]
    firing, resolved = events
    assert firing.to_dict() == {
        "state": "firing",
        "detector": "threshold",
        "alert_id": 1,
        "kind": "flow",
        "pid": 7,
        "comm": "p7",
        "protocol": "TCP",
        "family": "IPv4",
        "port": 443,
        "remote_ip": "192.0.2.1",
        "role": "client",
        "value": 200.0,
        "limit": 100.0,
        "unit": "B/s",
        "ts": 1000.0,
        "starts_at": 1000.0,
        "ends_at": None,
        "reason": "rate 200 B/s above 100 B/s",
    }
    assert resolved.state == RESOLVED and resolved.alert_id == 1
    assert (resolved.value, resolved.starts_at, resolved.ends_at, resolved.ts) == (
        300.0,  # the peak
        1000.0,
        1004.0,
        1004.0,
    )
    assert "peak 300 B/s" in resolved.reason
    assert manager.raised["threshold"] == 1


class Twice:
    """A detector that reports the same key twice per snapshot."""

    name = "twice"
    unit = "peers"

    def detect(self, view: SnapshotView, firing: Set[Hashable]) -> list[Finding]:
        subject = Subject("process", 1, "x")
        return [Finding("k", subject, 3, 2, "r"), Finding("k", subject, 4, 2, "r")]


def test_one_alert_per_detector_and_key() -> None:
    manager = AlertManager([ThresholdDetector(LIMIT), Twice()])
    events = []
    for t in range(5):
        events += manager.update(SnapshotView(rates_snapshot(t, {1: 500})))
    assert [(e.detector, e.state) for e in events] == [("threshold", FIRING), ("twice", FIRING)]
    assert manager.firing() == {"threshold": 1, "twice": 1}
    stopped = manager.resolve_all(2000.0, "netmon stopped")
    assert {(e.detector, e.state, e.ends_at) for e in stopped} == {
        ("threshold", RESOLVED, 2000.0),
        ("twice", RESOLVED, 2000.0),
    }
    assert manager.firing() == {"threshold": 0, "twice": 0}


# -- the feed ----------------------------------------------------------------


class ListFeed:
    def __init__(self, snaps: list[Snapshot]) -> None:
        self.snaps = list(snaps)
        self.closed = False

    def next_due(self) -> float | None:
        return 0.0 if self.snaps else None

    def poll(self, now: float) -> Snapshot | None:
        return self.snaps.pop(0) if self.snaps else None

    def flush(self, now: float) -> Snapshot | None:
        return rates_snapshot(99, {1: 500})

    def close(self) -> None:
        self.closed = True


def test_feed_gives_each_snapshot_its_events_and_resolves_all_on_flush() -> None:
    snaps = [rates_snapshot(0, {1: 5}), rates_snapshot(1, {1: 500})]
    feed = AlertingFeed(ListFeed(snaps), AlertManager([ThresholdDetector(LIMIT)]))
    seen: list[tuple[float, int]] = []
    feed.add_observer(lambda view, events: seen.append((view.ts, len(events))))
    first = feed.poll(0.0)
    assert first is not None and feed.events_of(first) == ()
    second = feed.poll(0.0)
    assert second is not None
    (event,) = feed.events_of(second)
    assert feed.events_of(first) == ()  # only the last snapshot's events are kept
    line = json.loads(with_alerts(dumps(second), feed.events_of(second)))
    assert line["alerts"] == [event.to_dict()]
    assert line["flows"][0]["pid"] == 1  # the snapshot's own keys are untouched
    assert footer_alerts(feed.status()).firing == 1
    last = feed.flush(0.0)
    assert last is not None
    assert [e.state for e in feed.events_of(last)] == [RESOLVED]
    assert feed.events_of(last)[0].reason.startswith("netmon stopped")
    assert seen == [(1000.0, 0), (1001.0, 1), (1099.0, 1)]
    feed.close()


# -- dispatcher ----------------------------------------------------------------


class Recording:
    """A sink that keeps what it gets; can be made to block or fail."""

    def __init__(self, name: str = "rec") -> None:
        self.name = name
        self.got: list[Message] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail = False
        self.closed = False
        self.entered = threading.Semaphore(0)

    def deliver(self, message: Message) -> None:
        self.entered.release()
        self.gate.wait()
        if self.fail:
            raise DeliveryError("refused")
        self.got.append(message)

    def close(self) -> None:
        self.closed = True


def event(i: int, state: str = FIRING) -> AlertEvent:
    return AlertEvent(
        state, "threshold", i, Subject("flow", i, "x"), 1.0, 1.0, "B/s", 5.0, 5.0, None, "r"
    )


def wait_for(cond: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.005)


def test_rate_limit_holds_a_storm_back_and_sends_one_summary() -> None:
    sink = Recording()
    dispatcher = Dispatcher([sink], limit=lambda: RateLimit(burst=30, per_s=0.5))
    dispatcher.start()
    dispatcher.publish([event(i) for i in range(100)], now=0.0)
    dispatcher.publish([event(100, RESOLVED)], now=1.0)  # no token yet: held too
    dispatcher.publish([], now=2.0)  # one token: the summary
    dispatcher.close()
    states = [m.record["state"] for m in sink.got]
    assert states == [FIRING] * 30 + [SUPPRESSED]
    summary = sink.got[-1].record
    assert (summary["suppressed"], summary["firing"], summary["resolved"]) == (71, 70, 1)
    assert "71 alert events held back" in sink.got[-1].text
    assert dispatcher.stats()["rec"].suppressed == 71
    assert dispatcher.stats()["rec"].undelivered == 0
    assert sink.closed


def test_a_stuck_sink_never_blocks_publish_and_losses_are_counted() -> None:
    stuck, fine = Recording("stuck"), Recording("fine")
    stuck.gate.clear()
    dispatcher = Dispatcher([stuck, fine], limit=lambda: RateLimit(10**9, 0), queue_size=10)
    dispatcher.start()
    dispatcher.publish([event(0)], now=0.0)
    assert stuck.entered.acquire(timeout=10)  # the first event is being delivered: it stays there
    wait_for(lambda: len(fine.got) == 1, "the other sink's first event")
    for start in range(1, 300, 5):  # batches the other sink's queue can take
        dispatcher.publish([event(i) for i in range(start, start + 5)], now=0.0)  # never waits
        wait_for(lambda n=start + 5: len(fine.got) == n, "the other sink to catch up")
    assert len(fine.got) == 301
    assert dispatcher.stats()["fine"].undelivered == 0
    # 301 events: one in delivery, ten queued, the rest lost.
    assert dispatcher.stats()["stuck"].undelivered == 301 - 1 - 10
    stuck.gate.set()
    dispatcher.close()
    assert len(stuck.got) == 11
    assert dispatcher.stats()["stuck"].undelivered == 290
    assert len(fine.got) == 301


def test_failures_are_counted_as_undelivered() -> None:
    sink = Recording()
    sink.fail = True
    dispatcher = Dispatcher([sink])
    dispatcher.start()
    dispatcher.publish([event(1), event(2)], now=0.0)
    dispatcher.close()
    assert dispatcher.stats()["rec"].undelivered == 2
    assert dispatcher.stats()["rec"].delivered == 0


def test_events_published_before_start_wait_for_it() -> None:
    sink = Recording()
    dispatcher = Dispatcher([sink])
    dispatcher.publish([event(1)], now=0.0)
    dispatcher.start()
    dispatcher.close()
    assert [m.record["alert_id"] for m in sink.got] == [1]


def test_one_sink_of_each_kind() -> None:
    with pytest.raises(ValueError):
        Dispatcher([Recording("a"), Recording("a")])


def test_token_bucket_refills() -> None:
    limit = RateLimit(burst=2, per_s=1.0)
    assert [limit.allow(0.0) for _ in range(3)] == [True, True, False]
    assert limit.allow(0.5) is False
    assert limit.allow(1.0) is True
    assert limit.allow(100.0) and limit.allow(100.0) and not limit.allow(100.0)
