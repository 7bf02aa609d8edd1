"""The alert manager: detectors' findings -> deduplicated firing/resolved events.

Once per snapshot, each detector reports its findings. The manager keeps one
alert per (detector, key):

- a finding whose key is not firing fires a new alert (one `firing` event);
- while the detector keeps reporting the key, nothing more is sent (the
  highest value is remembered);
- the alert resolves (one `resolved` event) once the detector has not
  reported the key for `clear_after` snapshots in a row; after that, the
  key may fire again as a new alert.

Hysteresis, so that a rate hovering at the limit does not flap: detectors
keep reporting a firing key until it is clearly over (the threshold detector
until the rate falls to 80% of the threshold), and the manager waits
`clear_after` (3) snapshots below that before resolving. With the default
interval and alpha, a flow that stops entirely resolves about four seconds
later.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Hashable, Sequence
from dataclasses import dataclass

from netmon.alerts.detectors import Detector
from netmon.alerts.events import FIRING, RESOLVED, AlertEvent, Subject, format_value
from netmon.export.snapshot_view import SnapshotView
from netmon.model import FlowKey

CLEAR_AFTER = 3


@dataclass
class _Alert:
    alert_id: int
    subject: Subject
    value: float  # the value that fired it
    peak: float
    limit: float
    starts_at: float
    missing: int = 0  # snapshots in a row without a finding
    tag: str = ""  # the latest finding's table tag
    flows: tuple[FlowKey, ...] = ()  # the flows the latest finding flags


class AlertManager:
    def __init__(self, detectors: Sequence[Detector], clear_after: int = CLEAR_AFTER) -> None:
        if clear_after < 1:
            raise ValueError(f"clear_after must be >= 1, got {clear_after}")
        names = [d.name for d in detectors]
        if len(set(names)) != len(names):
            raise ValueError(f"detector names must be unique: {names}")
        self.detectors = list(detectors)
        self.clear_after = clear_after
        self._alerts: dict[str, dict[Hashable, _Alert]] = {d.name: {} for d in detectors}
        self._next_id = 1
        self.raised: Counter[str] = Counter()  # detector -> alerts fired so far

    def update(self, view: SnapshotView) -> list[AlertEvent]:
        """The events of this snapshot: new alerts first, then resolved ones."""
        fired: list[AlertEvent] = []
        resolved: list[AlertEvent] = []
        for detector in self.detectors:
            alerts = self._alerts[detector.name]
            seen: set[Hashable] = set()
            for finding in detector.detect(view, alerts.keys()):
                if finding.key in seen:
                    continue
                seen.add(finding.key)
                alert = alerts.get(finding.key)
                if alert is None:
                    alert = alerts[finding.key] = _Alert(
                        alert_id=self._next_id,
                        subject=finding.subject,
                        value=finding.value,
                        peak=finding.value,
                        limit=finding.limit,
                        starts_at=view.ts,
                        tag=finding.tag,
                        flows=finding.flagged(),
                    )
                    self._next_id += 1
                    self.raised[detector.name] += 1
                    fired.append(self._event(FIRING, detector, alert, view.ts, finding.reason))
                else:
                    alert.missing = 0
                    alert.subject = finding.subject  # a renamed process shows its new name
                    alert.peak = max(alert.peak, finding.value)
                    alert.tag = finding.tag
                    alert.flows = finding.flagged()
            for key in [k for k in alerts if k not in seen]:
                alert = alerts[key]
                alert.missing += 1
                if alert.missing >= self.clear_after:
                    del alerts[key]
                    reason = (
                        f"not reported for {self.clear_after} intervals in a row; "
                        f"peak {format_value(alert.peak, detector.unit)}"
                    )
                    resolved.append(self._event(RESOLVED, detector, alert, view.ts, reason))
        return fired + resolved

    def resolve_all(self, ts: float, reason: str) -> list[AlertEvent]:
        """Resolve every firing alert (netmon is stopping)."""
        events = []
        for detector in self.detectors:
            alerts = self._alerts[detector.name]
            for alert in alerts.values():
                text = f"{reason}; peak {format_value(alert.peak, detector.unit)}"
                events.append(self._event(RESOLVED, detector, alert, ts, text))
            alerts.clear()
        return events

    def firing(self) -> dict[str, int]:
        """Alerts firing now, per detector (every detector listed)."""
        return {name: len(alerts) for name, alerts in self._alerts.items()}

    def flagged(self, skip: Collection[str] = ()) -> dict[FlowKey, list[tuple[str, str]]]:
        """The flows of the alerts firing now, each with its (detector, tag)
        pairs; detectors named in `skip` left out."""
        out: dict[FlowKey, list[tuple[str, str]]] = {}
        for detector in self.detectors:
            if detector.name in skip:
                continue
            for alert in self._alerts[detector.name].values():
                for key in alert.flows:
                    out.setdefault(key, []).append((detector.name, alert.tag))
        return out

    def firing_events(self) -> list[AlertEvent]:
        """The firing event of every alert that fires now, oldest first."""
        out = []
        for detector in self.detectors:
            for alert in self._alerts[detector.name].values():
                out.append(self._event(FIRING, detector, alert, alert.starts_at, ""))
        out.sort(key=lambda e: (e.starts_at, e.alert_id))
        return out

    @staticmethod
    def _event(state: str, detector: Detector, alert: _Alert, ts: float, reason: str) -> AlertEvent:
        return AlertEvent(
            state=state,
            detector=detector.name,
            alert_id=alert.alert_id,
            subject=alert.subject,
            value=alert.value if state == FIRING else alert.peak,
            limit=alert.limit,
            unit=detector.unit,
            ts=ts,
            starts_at=alert.starts_at,
            ends_at=ts if state == RESOLVED else None,
            reason=reason,
        )
