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
* A sample that is not later than the previous one (dt <= 0) updates totals
  but leaves rates alone; its bytes are carried into the next interval.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from netmon.model import (
    FlowCounters,
    FlowKey,
    FlowStat,
    ProcessCounters,
    ProcessStat,
    RawSample,
    Snapshot,
)

_Counts = tuple[int, int, int, int]  # bytes_sent, bytes_recv, packets_sent, packets_recv


def _delta(current: _Counts, last: _Counts | None) -> _Counts:
    """Per-field increase; any field going down means the counter restarted."""
    if last is None or any(c < p for c, p in zip(current, last, strict=True)):
        return current
    return (
        current[0] - last[0],
        current[1] - last[1],
        current[2] - last[2],
        current[3] - last[3],
    )


@dataclass
class _Totals:
    last: _Counts | None = None  # last kernel values seen
    sent: int = 0
    recv: int = 0
    packets_sent: int = 0
    packets_recv: int = 0

    def add(self, current: _Counts) -> int:
        """Fold in a new kernel reading; return the bytes moved since the last one."""
        d = _delta(current, self.last)
        self.last = current
        self.sent += d[0]
        self.recv += d[1]
        self.packets_sent += d[2]
        self.packets_recv += d[3]
        return d[0] + d[1]


@dataclass
class _FlowState:
    comm: str
    kernel: bool
    totals: _Totals = field(default_factory=_Totals)
    rate: float | None = None  # None until the first measured interval
    pending: int = 0  # bytes not yet turned into a rate
    last_seen_ns: int = 0


@dataclass
class _ProcState:
    comm: str
    kernel: bool
    totals: _Totals = field(default_factory=_Totals)
    last_seen_ns: int = 0


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
        self._flows: dict[FlowKey, _FlowState] = {}
        self._procs: dict[int, _ProcState] = {}
        self._rate_base_ns: int | None = None  # time of the last rate computation
        self._present: set[FlowKey] = set()

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

        self._fold_flows(sample.flows, now)
        if rebase:
            self._rate_base_ns = now
            for state in self._flows.values():
                state.pending = 0  # moved over an unknown span of time
        elif dt > 0:
            self._rate_base_ns = now
            self._update_rates(dt)
        self._fold_processes(sample.processes, now)
        self._forget(now)
        return self._snapshot(sample, dt)

    def rates(self) -> dict[FlowKey, float]:
        """Smoothed rate of every flow present in the last sample (kernel
        threads included), to write back to the kernel."""
        return {key: self._flows[key].rate or 0.0 for key in self._present}

    def _fold_flows(self, flows: Mapping[FlowKey, FlowCounters], now: int) -> None:
        self._present = set(flows)
        for key, c in flows.items():
            state = self._flows.get(key)
            if state is None:
                state = self._flows[key] = _FlowState(comm=c.comm, kernel=c.kernel)
            state.comm = c.comm or state.comm
            state.kernel = c.kernel
            state.last_seen_ns = now
            state.pending += state.totals.add(
                (c.bytes_sent, c.bytes_recv, c.packets_sent, c.packets_recv)
            )

    def _update_rates(self, dt: float) -> None:
        w = self.weight(dt)
        for state in self._flows.values():
            instant = state.pending / dt
            state.pending = 0
            if state.rate is None:
                state.rate = instant
            else:
                state.rate = w * instant + (1.0 - w) * state.rate

    def _fold_processes(self, processes: Mapping[int, ProcessCounters], now: int) -> None:
        for pid, c in processes.items():
            state = self._procs.get(pid)
            if state is None:
                state = self._procs[pid] = _ProcState(comm=c.comm, kernel=c.kernel)
            state.comm = c.comm or state.comm
            state.kernel = c.kernel
            state.last_seen_ns = now
            state.totals.add((c.bytes_sent, c.bytes_recv, c.packets_sent, c.packets_recv))

    def _forget(self, now: int) -> None:
        if self.forget_after_ns is None:
            return
        limit = now - self.forget_after_ns
        for key in [k for k, s in self._flows.items() if s.last_seen_ns < limit]:
            del self._flows[key]
        for pid in [p for p, s in self._procs.items() if s.last_seen_ns < limit]:
            del self._procs[pid]

    def _visible(self, kernel: bool) -> bool:
        return self.show_kernel or not kernel

    def _snapshot(self, sample: RawSample, dt: float) -> Snapshot:
        flows: list[FlowStat] = []
        proc_rate: dict[int, float] = {}
        # Processes with flows but no pid_stats entry still get a row.
        orphan: dict[int, ProcessStat] = {}
        for key, s in self._flows.items():
            rate = s.rate or 0.0
            proc_rate[key.pid] = proc_rate.get(key.pid, 0.0) + rate
            if not self._visible(s.kernel):
                continue
            flows.append(
                FlowStat(
                    key=key,
                    comm=s.comm,
                    bytes_sent=s.totals.sent,
                    bytes_recv=s.totals.recv,
                    packets_sent=s.totals.packets_sent,
                    packets_recv=s.totals.packets_recv,
                    rate_bps=rate,
                    anomaly=rate > self.threshold_bps,
                    kernel=s.kernel,
                )
            )
            if key.pid not in self._procs:
                prev = orphan.get(key.pid)
                orphan[key.pid] = ProcessStat(
                    pid=key.pid,
                    comm=s.comm,
                    bytes_sent=s.totals.sent + (prev.bytes_sent if prev else 0),
                    bytes_recv=s.totals.recv + (prev.bytes_recv if prev else 0),
                    rate_bps=0.0,
                    kernel=s.kernel,
                )

        processes = [
            ProcessStat(
                pid=pid,
                comm=p.comm,
                bytes_sent=p.totals.sent,
                bytes_recv=p.totals.recv,
                rate_bps=proc_rate.get(pid, 0.0),
                kernel=p.kernel,
            )
            for pid, p in self._procs.items()
            if self._visible(p.kernel)
        ]
        processes.extend(
            ProcessStat(
                pid=o.pid,
                comm=o.comm,
                bytes_sent=o.bytes_sent,
                bytes_recv=o.bytes_recv,
                rate_bps=proc_rate.get(o.pid, 0.0),
                kernel=o.kernel,
            )
            for o in orphan.values()
        )

        flows.sort(key=lambda f: (-f.rate_bps, _flow_order(f.key)))
        processes.sort(key=lambda p: (-p.rate_bps, p.pid))
        return Snapshot(
            ts=sample.wall_time,
            interval_s=dt,
            flows=tuple(flows),
            processes=tuple(processes),
            protocols=dict(sample.protocols),
            dropped=sample.dropped,
        )


def _flow_order(key: FlowKey) -> tuple[int, str, str, int, str, str]:
    # FlowKey's own ordering fails when comparing remote_ip None with a string.
    return (key.pid, key.protocol, key.family, key.port, key.remote_ip or "", key.role)
