"""The one place where the exporter and the alert detectors read a Snapshot.

netmon.export and netmon.alerts see a snapshot only through SnapshotView:
per-flow cumulative counters, per-protocol totals, the flows above a rate,
and the table's size and drops. How Snapshot stores its rows (columns, in
netmon.model.FlowTable) is its own business; a change there is a change here
only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from netmon.model import FlowKey, FlowStat, ProcessStat, Snapshot

Counts = tuple[int, int, int, int]  # bytes_sent, bytes_recv, packets_sent, packets_recv


@dataclass(frozen=True)
class FlowColumns:
    """Every flow's cumulative counters, as netmon totals them, row by row."""

    keys: Sequence[FlowKey]
    comms: Sequence[str]
    counts: np.ndarray  # (n, 4) in Counts order: uint64, or Python ints (object)
    uids: np.ndarray | None = None  # see FlowTable.uids
    slots: np.ndarray | None = None  # see FlowTable.slots


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

    def flow_columns(self) -> FlowColumns:
        table = self._snap.table
        return FlowColumns(table.keys, table.comms, table.counts, table.uids, table.slots)

    def flow_rates(self) -> np.ndarray:
        """Every flow's smoothed rate (bytes/s), in flow_columns' row order."""
        return self._snap.table.rate_bps

    def flow_pids(self) -> np.ndarray:
        """Every flow's pid (int64), in flow_columns' row order."""
        return self._snap.table.pid

    def flow_kernel(self) -> np.ndarray:
        """Every flow's kernel-thread flag, in flow_columns' row order."""
        return self._snap.table.kernel

    def processes(self) -> Sequence[ProcessStat]:
        return self._snap.processes

    def anomalous_flows(self) -> int:
        """Flows flagged above the anomaly threshold."""
        return int(np.count_nonzero(self._snap.table.anomaly))

    def flows_above(self, rate_bps: float) -> list[FlowStat]:
        """Flows whose smoothed rate is above `rate_bps`, highest first."""
        table = self._snap.table
        rows = np.flatnonzero(table.rate_bps > rate_bps)
        rows = rows[np.argsort(-table.rate_bps[rows], kind="stable")]
        return [table.stat(row) for row in rows.tolist()]
