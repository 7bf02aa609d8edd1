"""The alert path as a feed: every snapshot passed on is also run through the
detectors, its events go to the sinks, and they are kept for the output of
that snapshot (the `alerts` key of `--json`, the table's footer).

Observers (the Prometheus exporter) see each snapshot with its events, in
the main loop, right after the detectors."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from netmon.alerts.detectors import ThresholdDetector
from netmon.alerts.events import AlertEvent
from netmon.alerts.manager import AlertManager
from netmon.alerts.sinks import Dispatcher
from netmon.export.snapshot_view import SnapshotView
from netmon.feed import Feed
from netmon.model import Snapshot
from netmon.view import FooterAlerts

STOP_REASON = "netmon stopped"

Observer = Callable[[SnapshotView, Sequence[AlertEvent]], None]


@dataclass(frozen=True)
class AlertStatus:
    """What the table shows: the alerts firing now and this interval's events."""

    firing: tuple[AlertEvent, ...]
    events: tuple[AlertEvent, ...]


class AlertingFeed:
    def __init__(
        self,
        feed: Feed,
        manager: AlertManager,
        dispatcher: Dispatcher | None = None,
        *,
        observers: Sequence[Observer] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._feed = feed
        self.manager = manager
        self.dispatcher = dispatcher
        self._observers = list(observers)
        self._clock = clock
        self._last: Snapshot | None = None
        self._events: tuple[AlertEvent, ...] = ()
        self._closed = False

    def next_due(self) -> float | None:
        return self._feed.next_due()

    def poll(self, now: float) -> Snapshot | None:
        snap = self._feed.poll(now)
        if snap is not None:
            self._handle(snap, final=False)
        return snap

    def flush(self, now: float) -> Snapshot | None:
        """The feed's last snapshot on shutdown (feeds that can flush): its
        events also resolve every alert still firing."""
        flush = getattr(self._feed, "flush", None)
        snap = flush(now) if flush is not None else None
        if snap is not None:
            self._handle(snap, final=True)
        return snap

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._feed.close()
        finally:
            ts = self._last.ts if self._last is not None else time.time()
            self._publish(self.manager.resolve_all(max(ts, time.time()), STOP_REASON))
            if self.dispatcher is not None:
                self.dispatcher.close()

    def add_observer(self, observer: Observer) -> None:
        self._observers.append(observer)

    def events_of(self, snap: Snapshot) -> tuple[AlertEvent, ...]:
        """The events of `snap`, if it is the last snapshot passed on."""
        return self._events if snap is self._last else ()

    def status(self) -> AlertStatus:
        return AlertStatus(tuple(self.manager.firing_events()), self._events)

    def footer(self) -> FooterAlerts:
        return footer_alerts(self.status())

    def _handle(self, snap: Snapshot, *, final: bool) -> None:
        view = SnapshotView(snap)
        events = self.manager.update(view)
        if final:
            events += self.manager.resolve_all(view.ts, STOP_REASON)
        self._last = snap
        self._events = tuple(events)
        self._publish(events)
        for observer in self._observers:
            observer(view, self._events)

    def _publish(self, events: Sequence[AlertEvent]) -> None:
        if self.dispatcher is not None:
            self.dispatcher.publish(events, self._clock())


def with_alerts(line: str, events: Sequence[AlertEvent]) -> str:
    """A snapshot's JSON object (one line, as jsonl.dumps writes it) with
    the `alerts` key added at the end."""
    alerts = json.dumps([e.to_dict() for e in events], separators=(",", ":"))
    return f'{line[:-1]},"alerts":{alerts}}}'


def footer_alerts(status: AlertStatus) -> FooterAlerts:
    """The table footer's view of the alerts firing now."""
    firing = status.firing
    return FooterAlerts(
        firing=len(firing),
        flows_above_threshold=all(e.detector == ThresholdDetector.name for e in firing),
        latest=firing[-1].subject.describe() if firing else "",
    )
