#!/usr/bin/env python3
"""What service mode adds to each interval: the exporter, the alert path, a scrape.

Snapshots come from the real metrics engine (no kernel needed): --flows
flows of --names process names, of which a share moves bytes in each
interval (--moving, default 0, 0.1 and 1: idle, some, all). For each share,
in rounds that alternate the shares, it times:

  exporter   Exporter.update: the counters per name and protocol
  alerts     AlertManager.update with the threshold detector
  scrape     building the text of one scrape from the exporter's state

and prints the medians in milliseconds. No root needed.

  .venv/bin/python bench/export.py [--flows 10000] [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prometheus_client import generate_latest

from netmon.alerts.detectors import ThresholdDetector
from netmon.alerts.manager import AlertManager
from netmon.export.prometheus import Exporter, make_registry
from netmon.export.snapshot_view import SnapshotView
from netmon.metrics import MetricsEngine
from netmon.model import FlowCounters, FlowKey, RawSample, Snapshot

INTERVALS = 6  # snapshots timed per round and share (after one to warm up)


def _keys(flows: int) -> list[FlowKey]:
    return [
        FlowKey(1000 + i % 997, "TCP" if i % 4 else "UDP", "IPv4", 1 + i % 5000,
                f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", "client")
        for i in range(flows)
    ]  # fmt: skip


def _snapshots(keys: list[FlowKey], names: int, moving: float) -> list[Snapshot]:
    engine = MetricsEngine(0.4, 10 * 1024 * 1024, 1.0)
    movers = int(moving * len(keys))
    out = []
    for t in range(INTERVALS + 1):
        flows = {
            k: FlowCounters(
                bytes_sent=100 + (t * 1000 if i < movers else 0),
                bytes_recv=50,
                packets_sent=1 + (t if i < movers else 0),
                packets_recv=1,
                comm=f"proc-{k.pid % names}",
            )
            for i, k in enumerate(keys)
        }
        sample = RawSample(
            monotonic_ns=(t + 1) * 1_000_000_000,
            wall_time=1.7e9 + t,
            flows=flows,
            processes={},
            protocols={"TCP": 0, "UDP": 0},
            dropped=0,
        )
        out.append(engine.update(sample))
    return out


def _round(snaps: list[Snapshot]) -> dict[str, list[float]]:
    exporter = Exporter(version="bench", mode="socket")
    manager = AlertManager([ThresholdDetector(10 * 1024 * 1024)])
    registry = make_registry(exporter)
    times: dict[str, list[float]] = {"exporter": [], "alerts": [], "scrape": []}
    for n, snap in enumerate(snaps):
        view = SnapshotView(snap)
        t0 = time.perf_counter()
        exporter.update(view)
        t1 = time.perf_counter()
        manager.update(view)
        t2 = time.perf_counter()
        generate_latest(registry)
        t3 = time.perf_counter()
        if n:  # the first snapshot adds every flow: a start-up cost
            times["exporter"].append((t1 - t0) * 1e3)
            times["alerts"].append((t2 - t1) * 1e3)
            times["scrape"].append((t3 - t2) * 1e3)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flows", type=int, default=10_000)
    parser.add_argument("--names", type=int, default=300, help="distinct process names")
    parser.add_argument("--moving", type=float, action="append", help="share of flows moving")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    shares = args.moving or [0.0, 0.1, 1.0]
    keys = _keys(args.flows)
    snaps = {share: _snapshots(keys, args.names, share) for share in shares}
    results: dict[float, dict[str, list[float]]] = {s: {} for s in shares}
    for r in range(args.rounds):
        for share in shares[r % len(shares) :] + shares[: r % len(shares)]:
            for what, values in _round(snaps[share]).items():
                results[share].setdefault(what, []).extend(values)
    report: dict[str, Any] = {
        "flows": args.flows,
        "names": args.names,
        "rounds": args.rounds,
        "median_ms": {
            f"{share:g}": {w: statistics.median(v) for w, v in results[share].items()}
            for share in shares
        },
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{args.flows} flows, {args.names} names, {args.rounds} rounds; median ms per interval")
    print(f"{'moving':>8} {'exporter':>9} {'alerts':>8} {'scrape':>8}")
    for share, row in report["median_ms"].items():
        exporter, alerts, scrape = row["exporter"], row["alerts"], row["scrape"]
        print(f"{float(share):>8.0%} {exporter:>9.2f} {alerts:>8.2f} {scrape:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
