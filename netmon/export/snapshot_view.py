"""The one place where the exporter and the alert detectors read a Snapshot.

netmon.export and netmon.alerts see a snapshot only through SnapshotView:
per-flow cumulative counters, per-protocol totals, the flows above a rate,
and the table's size and drops. How Snapshot stores its rows is its own
business; a change there is a change here only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from netmon.model import FlowKey, FlowStat, Snapshot

Counts = tuple[int, int, int, int]  # bytes_sent, bytes_recv, packets_sent, packets_recv


@dataclass(frozen=True)
class FlowCount:
    """One flow's cumulative counters, as netmon totals them."""

    key: FlowKey
    comm: str
    counts: Counts


class SnapshotView:
    """Read-only questions the exporter and the detectors ask of a snapshot."""

    def __init__(self, snap: Snapshot) -> None:
        self._snap = snap

    @property
    def ts(self) -> float:
        """Unix seconds of the read."""
        return self._snap.ts

    @property
    def interval_s(self) -> float:
        return self._snap.interval_s

    @property
    def flow_total(self) -> int:
        """Flows in the snapshot."""
        return len(self._snap.flows)

    @property
    def process_total(self) -> int:
        return len(self._snap.processes)

    @property
    def dropped(self) -> int:
        """Flows the kernel table could not keep (cumulative)."""
        return self._snap.dropped

    def protocol_totals(self) -> Mapping[str, int]:
        """Bytes sent + received per protocol since capture started (machine-wide)."""
        return self._snap.protocols

    def flow_counts(self) -> Iterator[FlowCount]:
        for f in self._snap.flows:
            yield FlowCount(
                f.key, f.comm, (f.bytes_sent, f.bytes_recv, f.packets_sent, f.packets_recv)
            )

    def anomalous_flows(self) -> int:
        """Flows flagged above the anomaly threshold."""
        return sum(1 for f in self._snap.flows if f.anomaly)

    def flows_above(self, rate_bps: float) -> list[FlowStat]:
        """Flows whose smoothed rate is above `rate_bps`, highest first."""
        found = [f for f in self._snap.flows if f.rate_bps > rate_bps]
        found.sort(key=lambda f: -f.rate_bps)
        return found
