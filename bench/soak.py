#!/usr/bin/env python3
"""netmon over a long run with process churn: does it level off?

`netmon --json` runs (output drained) while this script keeps the machine
busy the way a server is: about `--churn` short-lived processes a minute
(default 1,000), each sending a few UDP datagrams to a few ports and exiting,
plus `--steady` long-lived UDP flows that never stop. Every `--every` seconds
(default 10) it prints netmon's RSS, PSS, its CPU use over the last period
(% of one core), the size of its last JSON line and the number of flows and
processes in it. At the end it compares the first and the last few samples:
over days RSS, CPU and line size must stay flat, not grow with the number of
processes that came and went.

netmon runs with host names on (its default) in a private mount namespace
whose /etc/resolv.conf names a closed loopback port (bench/benchproc.py,
private_etc): the peers of other traffic on the machine are never asked
about to the machine's resolver.

Run as root:  .venv/bin/python bench/soak.py [--minutes 20] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchproc import (
    DEFAULT_NETMON,
    PipeMonitor,
    cpu_seconds,
    memory_kib,
    private_etc,
    require_root,
)

SINK_PORTS = 1000  # destination ports of the short-lived processes


def short_lived(ports: list[int], rng: random.Random) -> None:
    """Runs in a forked child: a few datagrams to a few ports, then exit."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for port in rng.sample(ports, 3):
            s.sendto(b"x" * rng.randrange(1, 1400), ("127.0.0.1", port))


def churn(per_minute: int, ports: list[int], stop: threading.Event) -> None:
    """Fork `per_minute` short-lived processes a minute until stopped."""
    rng = random.Random(1)
    gap = 60.0 / per_minute
    due = time.monotonic()
    while not stop.is_set():
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                short_lived(ports, rng)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        due += gap
        stop.wait(max(0.0, due - time.monotonic()))


def steady(flows: int, stop: threading.Event) -> None:
    """`flows` connected UDP sockets, each sending a datagram a second to a
    receiver of its own (bound, never read: a port with no socket would
    answer with ICMP port unreachable, and the next send would fail with
    ECONNREFUSED, ending the flows)."""
    receivers, socks = [], []
    for _ in range(flows):
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.bind(("127.0.0.1", 0))
        receivers.append(rx)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect(rx.getsockname())
        socks.append(s)
    try:
        while not stop.wait(1.0):
            for s in socks:
                s.send(b"steady")
    finally:
        for s in [*socks, *receivers]:
            s.close()


def sample(mon: PipeMonitor, cpu_before: float, seconds: float) -> dict[str, Any]:
    mem = memory_kib(mon.pid)
    line = mon.drain.last_line()
    obj = json.loads(line) if line else {"flows": [], "processes": []}
    return {
        "rss_mib": round(mem["Rss"] / 1024, 1),
        "pss_mib": round(mem["Pss"] / 1024, 1),
        "cpu_percent": round(100 * (cpu_seconds(mon.pid) - cpu_before) / seconds, 2),
        "line_kib": round(len(line) / 1024, 1),
        "flows": len(obj["flows"]),
        "processes": len(obj["processes"]),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    stop = threading.Event()
    ports = list(range(30000, 30000 + SINK_PORTS))
    mon = PipeMonitor([*args.etc_prefix, args.netmon, "--json"])
    samples: list[dict[str, Any]] = []
    threads: list[threading.Thread] = []
    try:
        mon.wait_first_line(60, "first JSON object")
        threads = [
            threading.Thread(target=churn, args=(args.churn, ports, stop), daemon=True),
            threading.Thread(target=steady, args=(args.steady, stop), daemon=True),
        ]
        for t in threads:
            t.start()
        started = time.monotonic()
        end = started + args.minutes * 60
        while time.monotonic() < end:
            cpu = cpu_seconds(mon.pid)
            time.sleep(args.every)  # the measuring period itself
            if mon.proc.poll() is not None:
                mon.fail(f"exited with {mon.proc.returncode}")
            row = {"t_s": round(time.monotonic() - started), **sample(mon, cpu, args.every)}
            samples.append(row)
            if not args.json:
                print(
                    f"{row['t_s']:6d} s  RSS {row['rss_mib']:6.1f} MiB  PSS {row['pss_mib']:6.1f} "
                    f"MiB  CPU {row['cpu_percent']:5.2f}%  line {row['line_kib']:7.1f} KiB  "
                    f"flows {row['flows']:5d}  processes {row['processes']:5d}",
                    flush=True,
                )
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
        mon.stop()
    return {"minutes": args.minutes, "churn_per_minute": args.churn, "samples": samples}


def summary(report: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Medians of the first and last sixth of the run, per measure."""
    rows = report["samples"]
    part = max(1, len(rows) // 6)
    out = {}
    for name in ("rss_mib", "pss_mib", "cpu_percent", "line_kib", "flows", "processes"):
        first = statistics.median(r[name] for r in rows[:part])
        last = statistics.median(r[name] for r in rows[-part:])
        out[name] = {"first": first, "last": last}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20, help="length of the run (20)")
    parser.add_argument("--churn", type=int, default=1000, help="processes a minute (1000)")
    parser.add_argument("--steady", type=int, default=200, help="long-lived UDP flows (200)")
    parser.add_argument("--every", type=float, default=10, help="seconds between samples (10)")
    parser.add_argument("--netmon", default=DEFAULT_NETMON, help="netmon executable")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    require_root("soak")
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with tempfile.TemporaryDirectory(prefix="netmon-soak-") as tmp:
        args.etc_prefix = private_etc(Path(tmp))
        report = run(args)
    report["summary"] = summary(report)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print("\nfirst sixth -> last sixth of the run (medians):")
    for name, v in report["summary"].items():
        print(f"  {name:12} {v['first']:10.2f} -> {v['last']:10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
