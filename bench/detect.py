#!/usr/bin/env python3
"""How well the detectors find labelled anomalies in real background traffic.

    .venv/bin/python bench/detect.py [--data bench/data/score-*.jsonl.gz]
                                     [--detectors all] [--trials 8]

Background: recordings of real traffic made with `netmon --json` on a
developer machine (bench/data/, see bench/data/README.md for how they were
made). The `tune-*` recordings chose the defaults; the `score-*` ones,
kept apart, score them: the default --data.

1. Each recording is replayed through the detectors as it is: every alert
   is a false alarm (the background holds no labelled anomaly), counted per
   detector and per hour of recording.
2. Each pattern is injected into a copy of the recording, `--trials` times
   at different moments (after the detectors' warm-up) and, for the steps
   and ramps, into different flows; the copy is replayed through fresh
   detectors. A trial is detected when an alert about the injected process
   fires within `--window` intervals of the pattern's start; its delay is
   counted in intervals from that start.

Patterns (rates are the table's smoothed rates: the raw pattern goes
through the same EMA, alpha 0.4):
- step:   a busy flow (usual rate >= 10 KB/s, so that 10x clears the floor)
          steps to 10x its usual rate for 30 intervals;
- ramp:   the same flow climbs linearly to 10x over 60 intervals;
- scan:   a new process opens flows to 5 new ports of one host per interval
          (a few hundred bytes each);
- sweep:  a new process reaches 5 new hosts on port 22 per interval;
- upload: a long-running process of the background (present for 120 s,
          usually below 500 KB/s) opens a flow to an address it never used
          and sends 5 MB/s for 60 intervals;
- peer:   such a process sends 64 KB to an address and port it never used,
          at 8 KB/s.

Printed per pattern and detector: recall, median and worst delay (and
"defaults": the first alert of any detector on by default); then
false alarms per hour on the clean background per detector. Targets
(issue 8): steps and scans detected within 5 intervals, recall >= 0.95,
<= 1 false alarm per hour for each detector on by default.

Replay is deterministic: the figures do not depend on the machine's load.
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from netmon.alerts.choice import DEFAULT_DETECTORS, make_detectors, parse_detectors  # noqa: E402
from netmon.alerts.events import FIRING  # noqa: E402
from netmon.alerts.manager import AlertManager  # noqa: E402
from netmon.alerts.newpeer import NewPeerSettings  # noqa: E402
from netmon.config import DEFAULT_THRESHOLD_BPS  # noqa: E402
from netmon.export.snapshot_view import SnapshotView  # noqa: E402
from netmon.jsonl import loads  # noqa: E402
from netmon.model import FlowKey, FlowStat, ProcessStat, Snapshot  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
from bgtraffic import PROCESS_NAMES  # noqa: E402

ALPHA = 0.4
KB = 1024.0
MB = 1024.0 * 1024.0
INJECT_PID = 4_000_000  # pids above any real one: the injected processes
PATTERNS = ("step", "ramp", "scan", "sweep", "upload", "peer")
STEPS_AND_SCANS = ("step", "scan", "sweep")  # the 5-interval target


def read_recording(path: Path) -> list[Snapshot]:
    if path.suffix == ".gz":
        with gzip.open(path, "rt", encoding="utf-8") as f:
            lines = f.read().splitlines()
    else:
        lines = path.read_text(encoding="utf-8").splitlines()
    return [loads(line, n) for n, line in enumerate(lines, 1) if line.strip()]


# -- editing snapshots ---------------------------------------------------


@dataclass
class Rows:
    """A snapshot as plain rows, to edit and rebuild."""

    snap: Snapshot
    flows: list[FlowStat]
    procs: dict[int, ProcessStat]

    @classmethod
    def of(cls, snap: Snapshot) -> Rows:
        return cls(snap, list(snap.flows), {p.pid: p for p in snap.processes})

    def add_process(self, pid: int, comm: str) -> None:
        self.procs.setdefault(pid, ProcessStat(pid, comm, 0, 0, 0.0))

    def build(self) -> Snapshot:
        flows = sorted(self.flows, key=lambda f: -f.rate_bps)
        return replace(self.snap, flows=flows, processes=tuple(self.procs.values()))


class Flow:
    """An injected flow: raw bytes per interval in, table rate and counts out."""

    def __init__(self, key: FlowKey, comm: str, rate: float = 0.0) -> None:
        self.key, self.comm, self.rate, self.sent = key, comm, rate, 0

    def step(self, raw_bps: float, dt: float) -> FlowStat:
        self.sent += int(raw_bps * dt)
        self.rate = ALPHA * raw_bps + (1 - ALPHA) * self.rate
        return FlowStat(self.key, self.comm, self.sent, 0, 1, 0, self.rate, False)


@dataclass(frozen=True)
class Trial:
    pattern: str
    start: int  # snapshot index where the pattern starts
    pid: int  # the process the alert must be about
    series: list[Snapshot]


def usual_rates(snaps: Sequence[Snapshot], end: int, span: int = 60) -> dict[FlowKey, float]:
    """Each flow's mean table rate over the `span` snapshots before `end`,
    for flows present in all of them."""
    sums: dict[FlowKey, float] = {}
    counts: dict[FlowKey, int] = {}
    window = snaps[max(0, end - span) : end]
    for snap in window:
        for f in snap.flows:
            if not f.kernel:
                sums[f.key] = sums.get(f.key, 0.0) + f.rate_bps
                counts[f.key] = counts.get(f.key, 0) + 1
    return {k: sums[k] / len(window) for k in sums if counts[k] == len(window)}


def busy_flows(snaps: Sequence[Snapshot], at: int) -> list[tuple[FlowKey, float]]:
    usual = usual_rates(snaps, at)
    return sorted(((k, r) for k, r in usual.items() if r >= 10 * KB), key=lambda kr: kr[0].pid)


def inject_rate(snaps: list[Snapshot], start: int, key: FlowKey, raw: Callable[[int], float],
                length: int) -> list[Snapshot]:  # fmt: skip
    """The flow `key` moves raw(i) bytes/s in interval i of the pattern, then
    its recorded rate again (the EMA carries it back down)."""
    out = list(snaps)
    flow: Flow | None = None
    for i in range(start, len(snaps)):
        rows = Rows.of(snaps[i])
        idx = next((j for j, f in enumerate(rows.flows) if f.key == key), None)
        if idx is None:
            break
        f = rows.flows[idx]
        if flow is None:
            flow = Flow(key, f.comm, f.rate_bps)
            flow.sent = f.bytes_sent
        n = i - start
        target = raw(n) if n < length else f.rate_bps
        if n >= length and abs(flow.rate - f.rate_bps) < 0.01 * f.rate_bps + 1:
            break
        stat = flow.step(target, snaps[i].interval_s)
        rows.flows[idx] = replace(stat, bytes_recv=f.bytes_recv, comm=f.comm)
        out[i] = rows.build()
    return out


Moving = Callable[[int], list[tuple[FlowKey, str, float]]]


def inject_new_flows(snaps: list[Snapshot], start: int, length: int, make: Moving
                     ) -> list[Snapshot]:  # fmt: skip
    """New flows: make(i) lists the (key, comm, raw bytes/s) that move in
    interval i of the pattern; a flow stays in the table once it appeared
    (as netmon keeps it until it is idle for 300 s)."""
    out = list(snaps)
    flows: dict[FlowKey, Flow] = {}
    for i in range(start, min(len(snaps), start + length + 30)):
        n = i - start
        moving = {k: (c, r) for k, c, r in (make(n) if n < length else [])}
        for k, (c, _) in moving.items():
            flows.setdefault(k, Flow(k, c))
        rows = Rows.of(snaps[i])
        for k, fl in flows.items():
            rows.flows.append(fl.step(moving.get(k, ("", 0.0))[1], snaps[i].interval_s))
            rows.add_process(k.pid, fl.comm)
        out[i] = rows.build()
    return out


def process_peers(snaps: Sequence[Snapshot], at: int, span: int = 120
                  ) -> list[tuple[int, str, FlowKey]]:  # fmt: skip
    """Long-running background processes with a client flow at `at`: each
    (pid, comm, one of its flow keys). Long-running: in every snapshot of
    the `span` before; and usually below 500 KB/s, so that a 5 MB/s upload
    is 10x its normal (a backup job that moves 5 MB/s every night is not
    what this pattern is about)."""
    window = snaps[max(0, at - span) : at]
    rate: dict[int, float] = {}
    present: dict[int, int] = {}
    for snap in window:
        for p in snap.processes:
            rate[p.pid] = rate.get(p.pid, 0.0) + p.rate_bps / len(window)
            present[p.pid] = present.get(p.pid, 0) + 1
    seen: dict[int, tuple[int, str, FlowKey]] = {}
    for f in snaps[at].flows:
        pid = f.key.pid
        if (f.key.role == "client" and not f.kernel and f.key.remote_ip
                and present.get(pid) == len(window) and rate[pid] < 500 * KB):  # fmt: skip
            seen.setdefault(pid, (pid, f.comm, f.key))
    return [seen[p] for p in sorted(seen)]


def make_trials(snaps: list[Snapshot], pattern: str, starts: list[int]) -> Iterator[Trial]:
    for t, start in enumerate(starts):
        if pattern in ("step", "ramp"):
            busy = busy_flows(snaps, start)
            if not busy:
                continue
            key, usual = busy[t % len(busy)]
            if pattern == "step":

                def ten(n: int, u: float = usual) -> float:
                    return 10 * u

                series = inject_rate(snaps, start, key, ten, 30)
            else:

                def climb(n: int, u: float = usual) -> float:
                    return u * (1 + 9 * min(n, 60) / 60)

                series = inject_rate(snaps, start, key, climb, 70)
            yield Trial(pattern, start, key.pid, series)
        elif pattern in ("scan", "sweep"):
            pid = INJECT_PID + t
            comm = "nmap" if pattern == "scan" else "sweeper"

            def make(n: int, pid: int = pid, comm: str = comm) -> list[tuple[FlowKey, str, float]]:
                if n >= 12:
                    return []
                if pattern == "scan":
                    return [(FlowKey(pid, "TCP", "IPv4", 1 + 5 * n + i, "10.9.9.9", "client"),
                             comm, 300.0) for i in range(5)]  # fmt: skip
                return [(FlowKey(pid, "TCP", "IPv4", 22, f"10.8.{n}.{i}", "client"), comm, 300.0)
                        for i in range(5)]  # fmt: skip

            yield Trial(pattern, start, pid, inject_new_flows(snaps, start, 12, make))
        else:
            peers = process_peers(snaps, start)
            if not peers:
                continue
            pid, comm, key = peers[t % len(peers)]
            new = replace(key, remote_ip=f"10.7.{t}.1", port=8443)
            rate, length = (5 * MB, 60) if pattern == "upload" else (8 * KB, 8)

            def moving(n: int, new: FlowKey = new, comm: str = comm, rate: float = rate
                       ) -> list[tuple[FlowKey, str, float]]:  # fmt: skip
                return [(new, comm, rate)]

            series = inject_new_flows(snaps, start, length, moving)
            yield Trial(pattern, start, pid, series)


# -- running the detectors -----------------------------------------------


@dataclass(frozen=True)
class Settings:
    detectors: tuple[str, ...]
    new_peer: NewPeerSettings


def manager(settings: Settings) -> AlertManager:
    return AlertManager(make_detectors(settings.detectors, DEFAULT_THRESHOLD_BPS,
                                       new_peer=settings.new_peer))  # fmt: skip


def false_alarms(
    snaps: list[Snapshot], settings: Settings, others: dict[str, dict[str, int]]
) -> dict[str, int]:
    """Alerts on the recording as it is, per detector: those about the
    processes of bench/bgtraffic.py (the clean, generated background). The
    alerts about anything else that ran on the machine while it recorded
    (other people's load tests: unlabelled, so neither right nor wrong) are
    added to `others`, per detector and process name, to be shown apart."""
    m = manager(settings)
    fired = {d: 0 for d in settings.detectors}
    for snap in snaps:
        for e in m.update(SnapshotView(snap)):
            if e.state != FIRING:
                continue
            if e.subject.comm in PROCESS_NAMES:
                fired[e.detector] += 1
            else:
                per = others.setdefault(e.detector, {})
                per[e.subject.comm] = per.get(e.subject.comm, 0) + 1
    return fired


def first_alerts(trial: Trial, settings: Settings, window: int) -> dict[str, int]:
    """detector -> delay (intervals) of its first alert about the trial's process."""
    m = manager(settings)
    found: dict[str, int] = {}
    for i, snap in enumerate(trial.series[: trial.start + window + 1]):
        for e in m.update(SnapshotView(snap)):
            if i >= trial.start and e.state == FIRING and e.subject.pid == trial.pid:
                found.setdefault(e.detector, i - trial.start)
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", type=Path,
                    default=sorted((REPO / "bench" / "data").glob("score-*.jsonl.gz")))  # fmt: skip
    ap.add_argument("--detectors", type=parse_detectors, default=parse_detectors("all"))
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--window", type=int, default=30, help="intervals to wait for an alert")
    ap.add_argument("--warmup", type=float, default=180.0,
                    help="seconds of recording before the first injection")  # fmt: skip
    ap.add_argument("--new-peer-learn", type=float, default=120.0,
                    help="new-peer learning period (the recordings are short)")  # fmt: skip
    args = ap.parse_args()
    if not args.data:
        ap.error("no recordings: give --data")
    settings = Settings(args.detectors, NewPeerSettings(learn_s=args.new_peer_learn))
    print(f"detectors: {','.join(settings.detectors)} (default on: {','.join(DEFAULT_DETECTORS)});"
          f" new-peer learning {args.new_peer_learn:g} s")  # fmt: skip

    hours = 0.0
    fired = {d: 0 for d in settings.detectors}
    others: dict[str, dict[str, int]] = {}
    delays: dict[tuple[str, str], list[int]] = {}
    any_hit: dict[str, list[bool]] = {p: [] for p in PATTERNS}
    for path in args.data:
        snaps = read_recording(path)
        span = snaps[-1].ts - snaps[0].ts
        hours += span / 3600
        print(f"{path.name}: {len(snaps)} snapshots, {span / 60:.1f} min, "
              f"up to {max(len(s.flows) for s in snaps)} flows")  # fmt: skip
        for d, n in false_alarms(snaps, settings, others).items():
            fired[d] += n
        first = next(i for i, s in enumerate(snaps) if s.ts - snaps[0].ts >= args.warmup)
        last = len(snaps) - 80
        starts = [first + (last - first) * t // max(args.trials - 1, 1) for t in range(args.trials)]
        for pattern in PATTERNS:
            for trial in make_trials(snaps, pattern, starts):
                window = args.window + (60 if pattern == "ramp" else 0)  # it climbs for 60
                found = first_alerts(trial, settings, window)
                any_hit[pattern].append(bool(found))
                for d in settings.detectors:
                    delays.setdefault((pattern, d), [])
                    if d in found:
                        delays[(pattern, d)].append(found[d])
                delays.setdefault((pattern, "defaults"), [])
                by_default = [found[d] for d in DEFAULT_DETECTORS if d in found]
                if by_default:
                    delays[(pattern, "defaults")].append(min(by_default))

    print()
    print(f"{'pattern':8} {'detector':10} {'recall':>7} {'median delay':>13} {'worst':>6}")
    for pattern in PATTERNS:
        n = len(any_hit[pattern])
        for d in [*settings.detectors, "defaults"]:
            got = delays.get((pattern, d), [])
            if not got and d != "defaults":
                continue
            med = f"{statistics.median(got):.0f}" if got else "-"
            worst = f"{max(got)}" if got else "-"
            print(f"{pattern:8} {d:10} {len(got) / n if n else 0:7.2f} {med:>13} {worst:>6}"
                  f"   ({len(got)}/{n})")  # fmt: skip
    print()
    print(f"false alarms on the clean background ({hours * 60:.1f} min of bench/bgtraffic.py):")
    for name in settings.detectors:
        on = "on by default" if name in DEFAULT_DETECTORS else "off by default"
        rate = fired[name] / hours if hours else 0.0
        print(f"  {name:10} {fired[name]:4d} alerts = {rate:6.2f} per hour   ({on})")
    print("alerts about other processes that ran on the machine while recording")
    print("(unlabelled: load tests, bursts and port sprays of other work):")
    for name in settings.detectors:
        per = others.get(name, {})
        total = sum(per.values())
        rate = total / hours if hours else 0.0
        top = ", ".join(f"{comm} {n}" for comm, n in sorted(per.items(), key=lambda x: -x[1])[:4])
        print(f"  {name:10} {total:4d} alerts = {rate:6.2f} per hour   {top}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
