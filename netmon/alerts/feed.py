"""The alert path as a feed: every snapshot passed on is also run through the
detectors, its events go to the sinks, and they are kept for the output of
that snapshot (the `alerts` key of `--json`, the table's footer).

Observers (the Prometheus exporter) see each snapshot with its events, in
the main loop, right after the detectors."""

from __future__ import annotations

import json
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from netmon.alerts.detectors import ThresholdDetector
from netmon.alerts.events import AlertEvent, format_value
from netmon.alerts.manager import AlertManager
from netmon.alerts.sinks import Dispatcher
from netmon.export.snapshot_view import SnapshotView
from netmon.feed import Feed, flush_feed
from netmon.model import FlowKey, RowFinder, Snapshot
from netmon.units import format_rate
from netmon.view import FooterAlerts

STOP_REASON = "netmon stopped"
LOG_SIZE = 200

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
        self._rows = RowFinder()  # the flagged flows' rows, snapshot after snapshot
        self.dispatcher = dispatcher
        self._observers = list(observers)
        self._clock = clock
        self._last: Snapshot | None = None
        self._events: tuple[AlertEvent, ...] = ()
        self._log: deque[AlertEvent] = deque(maxlen=LOG_SIZE)  # the table's alert log
        self._closed = False

    def next_due(self) -> float | None:
        return self._feed.next_due()

    def poll(self, now: float) -> Snapshot | None:
        snap = self._feed.poll(now)
        if snap is not None:
            snap = self._handle(snap, final=False)
        return snap

    def flush(self, now: float) -> Snapshot | None:
        """The feed's last snapshot on shutdown (feeds that can flush): its
        events also resolve every alert still firing."""
        snap = flush_feed(self._feed, now)
        if snap is not None:
            snap = self._handle(snap, final=True)
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
        return footer_alerts(self.status(), tuple(self._log))

    def _handle(self, snap: Snapshot, *, final: bool) -> Snapshot:
        """Runs the detectors on `snap`; returns it with the flows that
        firing alerts flag marked (see mark_flows)."""
        view = SnapshotView(snap)
        events = self.manager.update(view)
        if final:
            events += self.manager.resolve_all(view.ts, STOP_REASON)
        snap = mark_flows(snap, self.manager, self._rows)
        self._last = snap
        self._events = tuple(events)
        self._log.extend(events)
        self._publish(events)
        for observer in self._observers:
            observer(view, self._events)
        return snap

    def _publish(self, events: Sequence[AlertEvent]) -> None:
        if self.dispatcher is not None:
            self.dispatcher.publish(events, self._clock())


def with_alerts(line: str, events: Sequence[AlertEvent]) -> str:
    """A snapshot's JSON object (one line, as jsonl.dumps writes it) with
    the `alerts` key added at the end."""
    alerts = json.dumps([e.to_dict() for e in events], separators=(",", ":"))
    return f'{line[:-1]},"alerts":{alerts}}}'


def footer_alerts(status: AlertStatus, log: Sequence[AlertEvent] = ()) -> FooterAlerts:
    """The table footer's view of the alerts firing now, and the alert log
    (newest first)."""
    firing = status.firing
    per = Counter(e.detector for e in firing)
    return FooterAlerts(
        firing=len(firing),
        flows_above_threshold=all(e.detector == ThresholdDetector.name for e in firing),
        latest=firing[-1].subject.describe() if firing else "",
        by_detector=tuple(per.items()),
        log=tuple(log_line(e) for e in reversed(log)),
    )


def log_line(event: AlertEvent) -> str:
    """One line of the alert log: time, state, detector, process, peer, value."""
    s = event.subject
    when = time.strftime("%H:%M:%S", time.localtime(event.ts))
    peer = s.remote_ip or "-"
    if s.port:
        peer = f"{peer}:{s.port}" if ":" not in peer else f"[{peer}]:{s.port}"
    return (
        f"{when} {event.state:<8} {event.detector:<9} {s.comm} ({s.pid}) {peer} "
        f"{format_value(event.value, event.unit)}  {event.reason}"
    )


def mark_flows(snap: Snapshot, manager: AlertManager, finder: RowFinder | None = None) -> Snapshot:
    """`snap` with its `anomaly` column and marks saying what the selected
    detectors flag now: the flows above --threshold (when `threshold` is
    selected; live, exactly the rows the metrics engine flagged) and the
    flows of the other detectors' firing alerts."""
    table = snap.table
    threshold = next((d for d in manager.detectors if isinstance(d, ThresholdDetector)), None)
    flagged = manager.flagged(skip=(ThresholdDetector.name,))
    # From the rates, not the recorded column: a replay's `anomaly` holds
    # what the recording's detectors flagged, with its --threshold.
    if threshold is not None:
        above = table.rate_bps > threshold.threshold_bps
    else:
        above = np.zeros(len(table), dtype=bool)
    if not flagged and not above.any():
        if not table.anomaly.any():
            return snap
        return replace(snap, flows=table.with_marks(above, {}))
    marks: dict[FlowKey, list[tuple[str, str]]] = {}
    if threshold is not None:
        tag = f"> {format_rate(threshold.threshold_bps)}"
        for row in np.flatnonzero(above).tolist():
            marks[table.keys[row]] = [(threshold.name, tag)]
    anomaly = above.copy()
    if flagged:
        row_of = (finder or RowFinder()).rows(table, flagged.keys())
        for key, pairs in flagged.items():
            row = row_of.get(key)
            if row is not None:
                anomaly[row] = True
                marks.setdefault(key, []).extend(pairs)
    return replace(snap, flows=table.with_marks(anomaly, marks))
