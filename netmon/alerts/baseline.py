"""`baseline`: a flow or a process far above its own learned normal.

Each key (a flow, or a process name summed over its flows) has an EWMA mean
and variance of its smoothed rate, on a slower clock than the display EMA
(time constant `tau_s`, 10 minutes by default, against the display's few
seconds). A key fires when, for `for_intervals` intervals in a row:

- it has been watched for `warmup_s` (no key fires before it has a normal);
- its z-score, (rate - mean) / max(sigma, 25% of the mean + 1 KB/s), is
  above `z`: the floor on sigma keeps near-constant flows from firing on noise;
- its rate is above `floor_bps` and above `ratio` times its mean;
- its rate is above 1.5 times the highest rate it reached before as normal
  (or while an alert of it fired and resolved), decaying over a day: a
  backup that runs every night is flagged the first night, not every night.

While a key is above the bar (whether or not the last rule lets it fire)
or firing, its baseline is frozen: the spike does not become its normal.
A firing key is reported until its rate falls
below mean + `clear_z` sigma (and half the floor): hysteresis on top of the
manager's.

The state is columns (numpy), one row per key: an interval costs a dict
lookup per flow and a few vector operations. Keys not seen for `idle_s` are
forgotten, and at most `max_keys` are kept (the least recently seen go).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence, Set
from dataclasses import dataclass

import numpy as np

from netmon.alerts.detectors import Finding
from netmon.alerts.events import Subject
from netmon.alerts.keys import process_name
from netmon.export.snapshot_view import SnapshotView
from netmon.model import FlowKey
from netmon.units import format_rate

DAY_S = 86400.0
PEAK_MARGIN = 1.5


@dataclass(frozen=True)
class BaselineSettings:
    z: float = 4.0
    floor_bps: float = 64 * 1024.0
    ratio: float = 3.0
    for_intervals: int = 2
    warmup_s: float = 120.0
    tau_s: float = 600.0
    clear_z: float = 2.0
    idle_s: float = 1800.0
    max_keys: int = 200_000


@dataclass(frozen=True)
class ProcessKey:
    """A baseline of everything the processes of one name move."""

    name: str


class _Store:
    """Per-key columns: row i belongs to `keys[i]` (None: a free row)."""

    FIELDS = ("used", "pid", "uid", "mu", "var", "age", "streak", "seen", "peak", "alert_peak")

    def __init__(self) -> None:
        self.index: dict[Hashable, int] = {}
        self.keys: list[Hashable | None] = []
        self.free: list[int] = []
        self.used = np.zeros(0, dtype=bool)
        self.pid = np.zeros(0, dtype=np.int64)  # a flow's pid (-1 for a process key)
        self.uid = np.zeros(0, dtype=np.int64)  # a flow's serial, once known (0: none)
        self.mu = np.zeros(0)
        self.var = np.zeros(0)
        self.age = np.zeros(0)  # seconds watched
        self.streak = np.zeros(0, dtype=np.int64)
        self.seen = np.zeros(0)  # ts last seen
        self.peak = np.zeros(0)  # highest normal rate, decaying
        self.alert_peak = np.zeros(0)  # highest rate while firing
        self._row_of_slot = np.zeros(0, dtype=np.int64)  # engine slot -> row (-1: none)

    def __len__(self) -> int:
        return len(self.index)

    def rows(
        self, keys: Sequence[Hashable], uids: np.ndarray | None = None,
        slots: np.ndarray | None = None,
    ) -> np.ndarray:  # fmt: skip
        """The row of each key, added if new.

        With the engine's serials and slots (FlowTable.uids, .slots), a
        flow's row is found through its slot, and trusted when that row
        holds the flow's serial: a gather, no hashing. The rest (new flows,
        flows whose slot moved, or every key without serials) by value."""
        if uids is None or slots is None:
            return self._rows_by_value(keys)
        if len(slots) and int(slots.max()) >= len(self._row_of_slot):
            grown = np.full(2 * int(slots.max()) + 64, -1, dtype=np.int64)
            grown[: len(self._row_of_slot)] = self._row_of_slot
            self._row_of_slot = grown
        rows: np.ndarray = self._row_of_slot[slots]
        known = rows >= 0
        known[known] = self.uid[rows[known]] == uids[known]
        missed = np.flatnonzero(~known)
        if len(missed):
            found = self._rows_by_value([keys[i] for i in missed.tolist()])
            rows[missed] = found
            self.uid[found] = uids[missed]
            self._row_of_slot[slots[missed]] = found
        return rows

    def _rows_by_value(self, keys: Sequence[Hashable]) -> np.ndarray:
        rows = np.empty(len(keys), dtype=np.int64)
        for i, key in enumerate(keys):
            row = self.index.get(key)
            rows[i] = self._add(key) if row is None else row
        return rows

    def _add(self, key: Hashable) -> int:
        if not self.free:
            old = len(self.keys)
            size = max(64, 2 * old)
            for name in self.FIELDS:
                col = getattr(self, name)
                grown = np.zeros(size, dtype=col.dtype)
                grown[:old] = col
                setattr(self, name, grown)
            self.keys.extend([None] * (size - old))
            self.free = list(range(size - 1, old - 1, -1))
        row = self.free.pop()
        for name in self.FIELDS:
            getattr(self, name)[row] = 0
        self.used[row] = True
        self.pid[row] = key.pid if isinstance(key, FlowKey) else -1
        self.keys[row] = key
        self.index[key] = row
        return row

    def drop(self, rows: np.ndarray) -> None:
        for row in rows.tolist():
            key = self.keys[row]
            if key is not None:
                del self.index[key]
                self.keys[row] = None
                self.used[row] = False
                self.free.append(row)


class BaselineDetector:
    name = "baseline"
    unit = "B/s"

    def __init__(self, settings: BaselineSettings | None = None) -> None:
        self.settings = settings or BaselineSettings()
        self._store = _Store()
        self._was_firing: set[Hashable] = set()
        self._process_keys: dict[str, ProcessKey] = {}

    def __len__(self) -> int:
        """Keys held now."""
        return len(self._store)

    def detect(self, view: SnapshotView, firing: Set[Hashable]) -> list[Finding]:
        s = self.settings
        cols = view.flow_columns()
        flow_keys: Sequence[FlowKey] = cols.keys
        flow_comms: Sequence[str] = cols.comms
        flow_rates = view.flow_rates()
        kernel = view.flow_kernel()
        uids, slots = cols.uids, cols.slots
        if kernel.any():  # kernel threads have no normal of their own
            user = np.flatnonzero(~kernel)
            flow_keys = [flow_keys[i] for i in user.tolist()]
            flow_comms = [flow_comms[i] for i in user.tolist()]
            flow_rates = flow_rates[user]
            uids = None if uids is None else uids[user]
            slots = None if slots is None else slots[user]
        store = self._store
        flow_rows = store.rows(flow_keys, uids, slots)
        pids = store.pid[flow_rows]
        # Per process name: the sum of its processes' rates (a process's
        # rate is that of its flows).
        by_name: dict[str, int] = {}
        procs = [p for p in view.processes() if not p.kernel]
        proc_name = [by_name.setdefault(process_name(p.comm), len(by_name)) for p in procs]
        name_rates = np.bincount(
            np.array(proc_name, dtype=np.int64),
            weights=np.array([p.rate_bps for p in procs], dtype=np.float64),
            minlength=len(by_name),
        )
        proc_keys = [self._process_key(n) for n in by_name]
        keys: list[Hashable] = [*flow_keys, *proc_keys]
        n_flows = len(flow_keys)
        x = np.concatenate([flow_rates, name_rates])
        rows = np.concatenate([flow_rows, store.rows(proc_keys)])
        firing_now = np.zeros(len(keys), dtype=bool)
        if firing:
            firing_rows = [store.index[k] for k in firing if k in store.index]
            firing_now = np.isin(rows, np.array(firing_rows, dtype=np.int64))
        self._absorb_resolved(firing)

        dt = max(view.interval_s, 1e-3)
        mu, var = store.mu[rows], store.var[rows]
        sigma = np.maximum(np.sqrt(var), 0.25 * mu + 1024.0)
        z = (x - mu) / sigma
        warm = store.age[rows] >= s.warmup_s
        high = warm & (z > s.z) & (x > s.floor_bps) & (x > s.ratio * mu)
        over = high & (x > PEAK_MARGIN * store.peak[rows])
        streak = np.where(over, store.streak[rows] + 1, 0)
        store.streak[rows] = streak
        still = firing_now & (x > mu + s.clear_z * sigma) & (x > 0.5 * s.floor_bps)
        report = (over & (streak >= s.for_intervals)) | still
        store.alert_peak[rows] = np.where(
            firing_now | report, np.maximum(store.alert_peak[rows], x), store.alert_peak[rows]
        )
        # Learn only from normal intervals: frozen while high (firing, or
        # at a level it reached before) so that a spike never becomes normal.
        learn = ~high & ~firing_now
        a = 1.0 - math.exp(-dt / s.tau_s)
        d = x - mu
        new_mu = np.where(store.age[rows] == 0, x, mu + a * d)
        new_var = np.where(store.age[rows] == 0, 0.0, (1 - a) * (var + a * d * d))
        lr = rows[learn]
        store.mu[lr] = new_mu[learn]
        store.var[lr] = new_var[learn]
        store.age[lr] += dt
        decay = 0.5 ** (dt / DAY_S)
        store.peak[lr] = np.maximum(store.peak[lr] * decay, x[learn])
        store.seen[rows] = view.ts
        self._evict(view.ts)

        found = []
        flagged_names: set[int] = set()
        reported = np.flatnonzero(report).tolist()
        name_of_pid = {p.pid: n for p, n in zip(procs, proc_name, strict=True)} if reported else {}
        for i in reported:
            key = keys[i]
            if i < n_flows:
                assert isinstance(key, FlowKey)
                subject = Subject.of_flow_key(key, flow_comms[i])
                flows: tuple[FlowKey, ...] = (key,)
                flagged_names.add(name_of_pid.get(key.pid, -1))
            else:
                if i - n_flows in flagged_names:
                    # One of its flows says it already; what the process
                    # reached counts as reached (as the flow's will).
                    store.peak[rows[i]] = max(store.peak[rows[i]], x[i])
                    continue
                named = [p for p, n in zip(procs, proc_name, strict=True) if n == i - n_flows]
                busiest = max(named, key=lambda p: p.rate_bps)
                subject = Subject("process", busiest.pid, busiest.comm)
                members = np.flatnonzero(np.isin(pids, [p.pid for p in named]))
                flows = tuple(flow_keys[j] for j in members.tolist())
            value, usual = float(x[i]), float(mu[i])
            times = value / usual if usual > 0 else math.inf
            tag = f"> {times:.1f}x usual" if math.isfinite(times) and times < 1000 else "> usual"
            reason = (
                f"rate {format_rate(value)}, {tag[2:]} ({format_rate(usual)}, z {float(z[i]):.1f})"
            )
            limit = usual + s.z * float(sigma[i])
            found.append(Finding(key, subject, value, limit, reason, tag=tag, flows=flows))
        self._was_firing = set(firing)
        return found

    def _process_key(self, name: str) -> ProcessKey:
        """One key object per name, so that the store finds it by id."""
        key = self._process_keys.get(name)
        if key is None:
            if len(self._process_keys) > self.settings.max_keys:
                self._process_keys.clear()
            key = self._process_keys[name] = ProcessKey(name)
        return key

    def _absorb_resolved(self, firing: Set[Hashable]) -> None:
        """A key whose alert resolved: the rate it reached becomes a rate it
        is known to reach (see the peak rule above)."""
        store = self._store
        for key in self._was_firing - set(firing):
            row = store.index.get(key)
            if row is not None:
                store.peak[row] = max(store.peak[row], store.alert_peak[row])
                store.alert_peak[row] = 0.0

    def _evict(self, now: float) -> None:
        """Forget a flow as soon as it leaves the table (its process exited,
        it went idle, or it was forgotten: if it comes back it is a new flow,
        so on a busy server with churn the flows' baselines never pile up),
        and a process name once idle for `idle_s`."""
        store = self._store
        held = np.flatnonzero(store.used)
        seen = store.seen[held]
        gone = ((store.pid[held] >= 0) & (seen < now)) | (seen < now - self.settings.idle_s)
        store.drop(held[gone])
        excess = len(store) - self.settings.max_keys
        if excess > 0:
            held = np.flatnonzero(store.used)
            store.drop(held[np.argsort(store.seen[held], kind="stable")[:excess]])
