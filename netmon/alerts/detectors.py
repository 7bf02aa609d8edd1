"""Detectors: each looks at a snapshot and says what is abnormal in it.

A detector is small: a name, a unit, and `detect(view, firing)` returning
its findings for this snapshot. It keeps whatever state it needs (a
baseline, the peers seen so far); the alert manager does the rest (one
firing event per key, resolving, timestamps). `firing` holds the keys of
this detector's alerts that fire now, so that a detector can keep reporting
them until they are clearly over (see the hysteresis in netmon.alerts.manager).

Keys must be stable for what they name: a flow's key or a (pid, name),
never something that changes every interval.
"""

from __future__ import annotations

from collections.abc import Hashable, Set
from dataclasses import dataclass
from typing import Protocol

from netmon.alerts.events import Subject
from netmon.export.snapshot_view import SnapshotView
from netmon.model import FlowKey
from netmon.units import format_rate


@dataclass(frozen=True)
class Finding:
    key: Hashable  # what the alert is about, stable across snapshots
    subject: Subject
    value: float
    limit: float
    reason: str
    tag: str = ""  # a few words for the table ("> 8.1x usual", "scan 43 ports")
    flows: tuple[FlowKey, ...] = ()  # the flows it flags in the table (default: key)

    def flagged(self) -> tuple[FlowKey, ...]:
        if self.flows:
            return self.flows
        return (self.key,) if isinstance(self.key, FlowKey) else ()


class Detector(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def unit(self) -> str:
        """Unit of the findings' value and limit ("B/s", "peers", ...)."""
        ...

    def detect(self, view: SnapshotView, firing: Set[Hashable]) -> list[Finding]:
        """Findings in this snapshot: new ones, and the firing keys that are
        not over yet."""
        ...


# A firing threshold alert is reported until its flow's rate falls to this
# share of the threshold.
CLEAR_RATIO = 0.8


class ThresholdDetector:
    """A flow whose smoothed rate is above a fixed rate (`--threshold`).

    Enters above `threshold_bps`; once firing, stays reported while the rate
    is above `clear_ratio * threshold_bps`."""

    name = "threshold"
    unit = "B/s"

    def __init__(self, threshold_bps: float, clear_ratio: float = CLEAR_RATIO) -> None:
        if not 0 < clear_ratio <= 1:
            raise ValueError(f"clear_ratio must be in (0, 1], got {clear_ratio}")
        self.threshold_bps = threshold_bps
        self.clear_bps = threshold_bps * clear_ratio

    def detect(self, view: SnapshotView, firing: Set[Hashable]) -> list[Finding]:
        limit = self.threshold_bps
        found = []
        for flow in view.flows_above(self.clear_bps):
            rate = flow.rate_bps
            if rate > limit or flow.key in firing:
                if rate > limit:
                    reason = f"rate {format_rate(rate)} above {format_rate(limit)}"
                else:
                    reason = (
                        f"rate {format_rate(rate)}, not yet below {format_rate(self.clear_bps)}"
                    )
                tag = f"> {format_rate(limit)}"
                found.append(Finding(flow.key, Subject.of_flow(flow), rate, limit, reason, tag))
        return found
