"""Turn consecutive cumulative samples into rates and totals (pure, no I/O).

Semantics:

* Totals in the Snapshot are netmon's own: the sum of per-sample deltas. A
  kernel counter smaller than the last one seen (PID reuse, LRU eviction and
  re-creation) is a reset: the new kernel value is the delta. Totals never go
  down and never lose what was already counted.
* The instantaneous rate of an interval is bytes moved / real elapsed time
  between the two reads (`RawSample.monotonic_ns`), not the nominal interval.
* Smoothing is a time-aware EMA: `alpha` is the weight of one nominal
  interval; an interval of length dt gets weight 1 - (1 - alpha) ** (dt /
  nominal), so the result does not depend on how evenly polls were spaced.
* The first sample has no elapsed time to divide by: it seeds totals and
  reports rate 0. A flow's first measured interval seeds its average with the
  instantaneous rate, so a flow first seen with N bytes (counters are
  cumulative since capture start, so those N bytes moved since the previous
  read) reports N/dt rather than alpha * N/dt.
* A flow missing from a sample counts as idle: its rate decays toward 0 and
  its totals stay in the output until it has been missing for
  `forget_after_s`.
* A process the source reports exited (`RawSample.exited`) is in the snapshot
  of that sample, with its final totals, and gone from the next one, with its
  flows.
* A flow the source removed for being idle (`RawSample.retired`) is gone from
  the snapshot of that sample already: its final counts are folded in first.
* Every flow that leaves the table (exited, retired or forgotten) adds its
  totals to `Snapshot.closed`, so listed plus closed never goes down.
* A sample that is not later than the previous one (dt <= 0) updates totals
  but leaves rates alone; its bytes are carried into the next interval.

Representation: one slot per flow (and per process) in numpy columns, in
order of first appearance, so that each interval is a few array operations
rather than a loop over flows; names are decoded only when they change.
Flows forgotten after `forget_after_s` are dropped from the columns.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from itertools import count, islice, pairwise
from typing import Any, ClassVar, cast

import numpy as np

from netmon.closed import ClosedTally
from netmon.flow_twins import merge_twins, twins
from netmon.model import (
    Cgroup,
    FlowKey,
    FlowRates,
    FlowReadings,
    FlowTable,
    ProcessStat,
    RawSample,
    Readings,
    Snapshot,
    decode_comm,
    flow_order,
    flow_tie,
)

# Flow serials (FlowTable.uids): unique in the process, so that a consumer
# that outlives an engine never sees one again.
_SERIALS = count(1)


class _Ledger:
    """Cumulative totals of many kernel counters (flows or processes): one
    slot per id, columns indexed by slot."""

    last: np.ndarray
    seen: np.ndarray
    totals: np.ndarray
    last_seen_ns: np.ndarray
    kernel: np.ndarray
    cgroup_id: np.ndarray
    # column -> (dtype, shape after the slot axis)
    COLUMNS: ClassVar[dict[str, tuple[Any, tuple[int, ...]]]] = {
        "last": (np.uint64, (4,)),  # last kernel values seen
        "seen": (np.bool_, ()),  # `last` is set
        "totals": (np.uint64, (4,)),  # bytes_sent, bytes_recv, packets_sent, packets_recv
        "last_seen_ns": (np.int64, ()),
        "kernel": (np.bool_, ()),
        "cgroup_id": (np.uint64, ()),  # the id `cgroup` was named from
    }

    def __init__(self) -> None:
        self.ids: list[Hashable] = []
        self.cgroup: list[Cgroup | None] = []  # named cgroups
        self.slot_of: dict[Hashable, int] = {}
        self.comm: list[str] = []  # decoded names
        self.comm_raw = np.zeros(0, dtype="S16")
        for name, (dtype, shape) in self.COLUMNS.items():
            setattr(self, name, np.zeros((0, *shape), dtype=dtype))
        self._token: bytes | None = None  # rows_token of the last readings...
        self._token_slots = np.zeros(0, dtype=np.intp)  # ...and their slots

    def __len__(self) -> int:
        return len(self.ids)

    def _added(self, ids: list[Hashable], readings: Readings) -> None:
        """Hook: new slots were appended for `ids`."""

    def slots(self, readings: Readings) -> np.ndarray:
        """The slot of each row of `readings`; new ids get new slots."""
        if readings.rows_token is not None and readings.rows_token == self._token:
            return self._token_slots
        ids = readings.ids
        get = self.slot_of.get
        slots = np.array([get(i, -1) for i in ids], dtype=np.intp)
        new_rows = np.flatnonzero(slots < 0)
        if len(new_rows):
            start = len(self.ids)
            new_ids = [ids[r] for r in new_rows.tolist()]
            slots[new_rows] = np.arange(start, start + len(new_ids))
            self.ids.extend(new_ids)
            self.slot_of.update(zip(new_ids, range(start, start + len(new_ids)), strict=True))
            self.comm.extend([""] * len(new_ids))
            self.cgroup.extend([None] * len(new_ids))
            self.comm_raw = np.concatenate([self.comm_raw, np.zeros(len(new_ids), "S16")])
            for name, (dtype, shape) in self.COLUMNS.items():
                grown: np.ndarray = np.zeros((len(new_ids), *shape), dtype=dtype)
                setattr(self, name, np.concatenate([getattr(self, name), grown]))
            self._added(new_ids, readings)
        self._token, self._token_slots = readings.rows_token, slots
        return slots

    def fold(
        self, readings: Readings, now: int, cgroups: Mapping[int, Cgroup] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Fold in a new reading (and the names of its cgroup ids); returns
        each row's slot and the bytes it moved since the last reading."""
        slots = self.slots(readings)
        current = readings.counts.astype(np.uint64, copy=False)
        last = self.last[slots]
        # Any field going down means the counter restarted: its value is the delta.
        restarted = ~self.seen[slots] | (current < last).any(axis=1)
        delta = np.where(restarted[:, None], current, current - last)
        self.last[slots] = current
        self.seen[slots] = True
        self.totals[slots] += delta
        self.last_seen_ns[slots] = now
        self.kernel[slots] = readings.kernel
        self._fold_names(slots, readings.comm)
        self._fold_cgroups(slots, readings.cgroup, cgroups or {})
        return slots, delta[:, 0] + delta[:, 1]

    def _fold_cgroups(
        self, slots: np.ndarray, ids: np.ndarray, names: Mapping[int, Cgroup]
    ) -> None:
        """Keep the latest known cgroup; look up only the ids that changed."""
        changed = np.flatnonzero((ids != self.cgroup_id[slots]) & (ids != 0))
        for row in changed.tolist():
            slot = slots[row]
            cgroup_id = int(ids[row])
            self.cgroup_id[slot] = cgroup_id
            self.cgroup[slot] = names.get(cgroup_id)

    def _fold_names(self, slots: np.ndarray, comm: np.ndarray) -> None:
        """Keep the latest non-empty name; decode only those that changed."""
        if comm.dtype.itemsize > self.comm_raw.dtype.itemsize:
            self.comm_raw = self.comm_raw.astype(comm.dtype)
        changed = np.flatnonzero((comm != self.comm_raw[slots]) & (comm != b""))
        for row in changed.tolist():
            slot = slots[row]
            self.comm_raw[slot] = comm[row]
            self.comm[slot] = decode_comm(bytes(comm[row]))

    def keep(self, mask: np.ndarray) -> np.ndarray:
        """Drop the slots where `mask` is False; returns the new slot of each
        old one (-1 for dropped)."""
        kept = mask.tolist()
        self.ids = [i for i, k in zip(self.ids, kept, strict=True) if k]
        self.slot_of = {i: n for n, i in enumerate(self.ids)}
        self.comm = [c for c, k in zip(self.comm, kept, strict=True) if k]
        self.cgroup = [c for c, k in zip(self.cgroup, kept, strict=True) if k]
        self.comm_raw = self.comm_raw[mask]
        for name in self.COLUMNS:
            setattr(self, name, getattr(self, name)[mask])
        self._token = None
        remap = np.full(len(mask), -1, dtype=np.intp)
        remap[mask] = np.arange(len(self.ids))
        return remap


class _FlowLedger(_Ledger):
    """Flows: totals plus rates, keys and the orders the outputs need."""

    pending: np.ndarray
    rate: np.ndarray
    rated: np.ndarray
    pid: np.ndarray
    uid: np.ndarray
    COLUMNS: ClassVar[dict[str, tuple[Any, tuple[int, ...]]]] = {
        **_Ledger.COLUMNS,
        "pending": (np.uint64, ()),  # bytes not yet turned into a rate
        "rate": (np.float64, ()),
        "rated": (np.bool_, ()),  # `rate` set: it had a measured interval
        "pid": (np.int64, ()),
        "uid": (np.int64, ()),  # the flow's serial (FlowTable.uids)
    }

    def __init__(self) -> None:
        super().__init__()
        self.keys: list[FlowKey] = []
        # Slots sorted by flow_order. They change only when flows come or
        # go; a re-sort then finds them nearly in order.
        self._by_order: list[int] = []
        self._order_keys: list[tuple[int, str, int, str, str, str]] = []
        self._tie_keys: list[tuple[int, str, int, str]] = []
        self._ranked = True
        self.by_order = np.zeros(0, dtype=np.intp)  # slots in flow_order
        self.tie_rank = np.zeros(0, dtype=np.int64)
        self.pid_values = np.zeros(0, dtype=np.int64)  # distinct pids...
        self.pid_index = np.zeros(0, dtype=np.intp)  # ...and each slot's index in them
        self.twin_of: np.ndarray | None = None  # see rank()

    def _added(self, ids: list[Hashable], readings: Readings) -> None:
        assert isinstance(readings, FlowReadings)
        start = len(self.keys)
        keys = [readings.key_of(i) for i in ids]
        self.keys.extend(keys)
        self.pid[start:] = [k.pid for k in keys]
        self.uid[start:] = np.fromiter(islice(_SERIALS, len(keys)), np.int64, len(keys))
        self._order_keys.extend(flow_order(k) for k in keys)
        self._tie_keys.extend(flow_tie(k) for k in keys)
        self._by_order.extend(range(start, start + len(keys)))
        self._ranked = False

    def keep(self, mask: np.ndarray) -> np.ndarray:
        kept = mask.tolist()
        self.keys = [x for x, k in zip(self.keys, kept, strict=True) if k]
        self._order_keys = [x for x, k in zip(self._order_keys, kept, strict=True) if k]
        self._tie_keys = [x for x, k in zip(self._tie_keys, kept, strict=True) if k]
        remap = super().keep(mask)
        slots = remap[np.array(self._by_order, dtype=np.intp)]
        self._by_order = slots[slots >= 0].tolist()
        self._ranked = False
        return remap

    def rank(self) -> None:
        """Bring by_order, tie_rank and the pid index up to date."""
        if self._ranked:
            return
        order = self._by_order
        order.sort(key=self._order_keys.__getitem__)
        self.by_order = np.array(order, dtype=np.intp)
        # flow_tie is the start of flow_order: equal ties are neighbours here.
        tie = self._tie_keys
        starts = np.zeros(len(order), dtype=np.int64)
        starts[1:] = np.array([tie[a] != tie[b] for a, b in pairwise(order)], dtype=bool)
        self.tie_rank = np.empty(len(order), dtype=np.int64)
        self.tie_rank[self.by_order] = np.cumsum(starts)
        self.twin_of = twins(order, self._order_keys, starts)
        unique = np.unique(self.pid, return_inverse=True)
        self.pid_values, self.pid_index = unique[0], unique[1].reshape(-1)
        self._ranked = True


class MetricsEngine:
    def __init__(
        self,
        alpha: float,
        threshold_bps: float,
        nominal_interval_s: float,
        *,
        show_kernel: bool = False,
        forget_after_s: float | None = 300.0,
    ) -> None:
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        if not nominal_interval_s > 0:
            raise ValueError(f"nominal interval must be > 0, got {nominal_interval_s}")
        self.alpha = alpha
        self.threshold_bps = threshold_bps
        self.nominal_interval_s = nominal_interval_s
        self.show_kernel = show_kernel
        self.forget_after_ns = None if forget_after_s is None else int(forget_after_s * 1e9)
        self._flows = _FlowLedger()
        self._procs = _Ledger()
        self._rate_base_ns: int | None = None  # time of the last rate computation
        # The flows of the last sample and their slots, for rates().
        self._present: FlowReadings = FlowReadings.of({})
        self._present_slots = np.zeros(0, dtype=np.intp)
        self._exiting: frozenset[int] = frozenset()  # exited, shown once more
        self._closed = ClosedTally()  # flows no longer listed

    @property
    def flows_held(self) -> int:
        """Flows whose totals are kept (present, or gone less than
        forget_after_s ago)."""
        return len(self._flows)

    def weight(self, dt_s: float) -> float:
        """EMA weight of an interval of dt_s seconds."""
        if dt_s <= 0:
            return 0.0
        return 1.0 - float((1.0 - self.alpha) ** (dt_s / self.nominal_interval_s))

    def update(self, sample: RawSample) -> Snapshot:
        now = sample.monotonic_ns
        # No usable interval on the first sample, nor if time went backwards
        # (not expected from CLOCK_MONOTONIC): restart timing at this sample.
        rebase = self._rate_base_ns is None or now < self._rate_base_ns
        dt = 0.0 if rebase or self._rate_base_ns is None else (now - self._rate_base_ns) / 1e9

        self._forget_exited()
        self._exiting = sample.exited
        flows = self._flows
        slots, moved = flows.fold(sample.flow_readings, now, sample.cgroups)
        flows.pending[slots] += moved
        self._present, self._present_slots = sample.flow_readings, slots
        if sample.retired:
            self._retire(sample.retired)
        if rebase:
            self._rate_base_ns = now
            flows.pending[:] = 0  # moved over an unknown span of time
        elif dt > 0:
            self._rate_base_ns = now
            self._update_rates(dt)
        self._procs.fold(sample.process_readings, now, sample.cgroups)
        self._forget(now)
        return self._snapshot(sample, dt)

    def rates(self) -> FlowRates:
        """Smoothed rate of every flow present in the last sample (kernel
        threads included), in that sample's row order, to write back to the
        kernel."""
        flows = self._flows
        slots = self._present_slots
        present = slots >= 0  # not retired
        at = np.where(present, slots, 0)
        rates = np.where(flows.rated[at], flows.rate[at], 0.0) if len(flows) else at * 0.0
        # NaN: nothing to write back for a flow the source removed.
        return FlowRates(self._present, np.where(present, rates, np.nan))

    def _update_rates(self, dt: float) -> None:
        flows = self._flows
        w = self.weight(dt)
        instant = flows.pending / dt
        flows.rate = np.where(flows.rated, w * instant + (1.0 - w) * flows.rate, instant)
        flows.rated[:] = True
        flows.pending[:] = 0

    def _forget_exited(self) -> None:
        """Processes reported exited in the last sample showed their final
        totals in its snapshot: now they go, with their flows."""
        if not self._exiting:
            return
        exiting = np.fromiter(self._exiting, dtype=np.int64)
        gone = np.isin(self._flows.pid, exiting)
        if gone.any():
            self._close(gone)
        gone = np.isin(np.array(self._procs.ids, dtype=np.int64), exiting)
        if gone.any():
            self._procs.keep(~gone)

    def _forget(self, now: int) -> None:
        if self.forget_after_ns is None:
            return
        limit = now - self.forget_after_ns
        for ledger in (self._flows, self._procs):
            stale = ledger.last_seen_ns < limit
            if not stale.any():
                continue
            if ledger is self._flows:
                self._close(stale)
            else:
                ledger.keep(~stale)

    def _retire(self, ids: frozenset[Hashable]) -> None:
        """Flows the source removed after the last read: out of the table."""
        flows = self._flows
        slots = [flows.slot_of[i] for i in ids if i in flows.slot_of]
        gone = np.zeros(len(flows), dtype=bool)
        gone[slots] = True
        if gone.any():
            self._close(gone)

    def _close(self, gone: np.ndarray) -> None:
        """Drop the flow slots in `gone`, their totals kept in the closed
        aggregate (those of kernel threads only if they are shown)."""
        flows = self._flows
        shown = gone if self.show_kernel else gone & ~flows.kernel
        self._closed.add(flows.totals[shown])
        remap = flows.keep(~gone)
        present = self._present_slots
        self._present_slots = np.where(present >= 0, remap[present], -1)

    def _snapshot(self, sample: RawSample, dt: float) -> Snapshot:
        flows, procs = self._flows, self._procs
        flows.rank()
        rate = np.where(flows.rated, flows.rate, 0.0)
        # A process's rate is that of all its flows, kernel threads' included.
        sums = np.bincount(flows.pid_index, weights=rate, minlength=len(flows.pid_values))
        proc_rate = dict(zip(flows.pid_values.tolist(), sums.tolist(), strict=True))

        visible = np.ones(len(flows), dtype=bool) if self.show_kernel else ~flows.kernel
        totals, shown = flows.totals, visible
        if flows.twin_of is not None:
            totals, rate, shown = merge_twins(flows.twin_of, totals, rate, visible)
        # Highest rate first, equal rates in flow_order (a stable sort of
        # the slots taken in flow_order).
        rows = flows.by_order[shown[flows.by_order]]
        order = rows[np.argsort(-rate[rows], kind="stable")]
        picked = order.tolist()
        table = FlowTable(
            keys=list(map(flows.keys.__getitem__, picked)),
            comms=list(map(flows.comm.__getitem__, picked)),
            counts=totals[order],
            rate_bps=rate[order],
            anomaly=rate[order] > self.threshold_bps,
            kernel=flows.kernel[order],
            tie_rank=flows.tie_rank[order],
            cgroups=list(map(flows.cgroup.__getitem__, picked)),
            uids=flows.uid[order],
            slots=order,
            pid=flows.pid[order],
        )

        processes = [
            ProcessStat(
                pid=pid,
                comm=comm,
                bytes_sent=t[0],
                bytes_recv=t[1],
                rate_bps=proc_rate.get(pid, 0.0),
                kernel=kernel,
                cgroup=None if cg is None else cg.path,
                service=None if cg is None else cg.service,
            )
            for pid, comm, t, kernel, cg in zip(
                cast(list[int], procs.ids),
                procs.comm,
                procs.totals.tolist(),
                procs.kernel.tolist(),
                procs.cgroup,
                strict=True,
            )
            if self.show_kernel or not kernel
        ]
        processes += self._orphans(visible, proc_rate)
        processes.sort(key=lambda p: (-p.rate_bps, p.pid))
        return Snapshot(
            ts=sample.wall_time,
            interval_s=dt,
            flows=table,
            processes=tuple(processes),
            protocols=dict(sample.protocols),
            dropped=sample.dropped,
            closed=self._closed.current,
        )

    def _orphans(self, visible: np.ndarray, proc_rate: dict[int, float]) -> list[ProcessStat]:
        """Processes with flows but no pid_stats entry still get a row: the
        sum of their shown flows, named after the last one."""
        flows = self._flows
        known = np.array(self._procs.ids, dtype=np.int64)
        slots = np.flatnonzero(visible & ~np.isin(flows.pid, known))
        orphan: dict[int, tuple[str, int, int, bool, Cgroup | None]] = {}
        for slot in slots.tolist():
            pid = flows.keys[slot].pid
            sent, recv = flows.totals[slot, :2].tolist()
            prev = orphan.get(pid)
            if prev is not None:
                sent, recv = sent + prev[1], recv + prev[2]
            orphan[pid] = (flows.comm[slot], sent, recv, bool(flows.kernel[slot]),
                           flows.cgroup[slot])  # fmt: skip
        return [
            ProcessStat(
                pid=pid,
                comm=comm,
                bytes_sent=sent,
                bytes_recv=recv,
                rate_bps=proc_rate.get(pid, 0.0),
                kernel=kernel,
                cgroup=None if cg is None else cg.path,
                service=None if cg is None else cg.service,
            )
            for pid, (comm, sent, recv, kernel, cg) in orphan.items()
        ]
