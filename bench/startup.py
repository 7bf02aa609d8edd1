#!/usr/bin/env python3
"""How long netmon takes to start and to stop.

Each run launches the real command line, `netmon --json` (probe mode auto
unless --probes names others), and times:

  start  from just before the launch to the first complete JSON object on
         its stdout: interpreter, imports, compiling and attaching the
         probes, the first read of the maps;
  stop   from SIGTERM (sent --settle seconds after that first object) to the
         process's exit: the last snapshot, detaching, interpreter shutdown.

It also gives the CPU time the process used over the whole run (user +
system, from wait4) and its peak RSS. With --replay, `netmon --replay FILE
--json` is timed the same way beside it (no BPF: interpreter and imports).
Each round runs every configuration in a rotated order; the report gives
medians and the range over the rounds.

The live runs (netmon and --against) look host names up, as netmon does by
default, in a private mount namespace whose /etc/resolv.conf names a closed
loopback port (bench/benchproc.py, private_etc), so the peers of other
traffic on the machine are never asked about to the machine's resolver.
Setting it up (unshare, two bind mounts) is timed with the start: a few
milliseconds. Replay looks nothing up and runs as it is.

Run as root:  .venv/bin/python bench/startup.py [--rounds R] [--replay] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from benchproc import private_etc

REPO = Path(__file__).resolve().parent.parent
DEFAULT_NETMON = REPO / ".venv" / "bin" / "netmon"
DEFAULT_REPLAY = REPO / "examples" / "sample.jsonl"
FIRST_OBJECT_TIMEOUT_S = 180.0
EXIT_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Run:
    start_s: float
    stop_s: float | None  # None: it had exited before the signal
    cpu_s: float
    max_rss_mb: float
    exit_code: int


def _read_first_line(stream: IO[bytes], deadline: float) -> bytes:
    """Bytes up to and including the first newline, or what came before EOF."""
    fd = stream.fileno()
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0]


def _wait_exit(proc: subprocess.Popen[bytes], deadline: float) -> resource.struct_rusage | None:
    """Reap `proc` (draining its stdout meanwhile); None if it outlives `deadline`."""
    assert proc.stdout is not None
    out = proc.stdout.fileno()
    pidfd = os.pidfd_open(proc.pid)
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([out, pidfd], [], [], left)
            if pidfd in ready:
                break
            if out in ready and not os.read(out, 65536):
                out = pidfd  # EOF: from now on wait for the exit alone
    finally:
        os.close(pidfd)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage


def measure(argv: list[str], settle_s: float) -> Run:
    """One launch of `argv`: time to its first JSON line, then SIGTERM to exit."""
    with tempfile.TemporaryFile() as stderr:

        def fail(what: str) -> RuntimeError:
            if proc.returncode is None:
                proc.kill()
                proc.wait()
            stderr.seek(0)
            message = stderr.read().decode(errors="replace").strip()
            return RuntimeError(f"{' '.join(argv)}: {what}. {message}")

        started = time.monotonic()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr)
        assert proc.stdout is not None
        with proc.stdout:
            first = _read_first_line(proc.stdout, started + FIRST_OBJECT_TIMEOUT_S)
            first_at = time.monotonic()
            try:
                json.loads(first)
            except ValueError:
                raise fail("no first JSON object") from None
            time.sleep(settle_s)
            # Not poll(): reaping here would lose the child's rusage.
            ended = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            signalled = None
            if ended is None:
                signalled = time.monotonic()
                os.kill(proc.pid, signal.SIGTERM)
            usage = _wait_exit(proc, time.monotonic() + EXIT_TIMEOUT_S)
            exited = time.monotonic()
            if usage is None:
                raise fail(f"still running {EXIT_TIMEOUT_S:.0f} s after SIGTERM")
    return Run(
        start_s=first_at - started,
        stop_s=None if signalled is None else exited - signalled,
        cpu_s=usage.ru_utime + usage.ru_stime,
        max_rss_mb=usage.ru_maxrss / 1024,
        exit_code=proc.returncode,
    )


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    configs: dict[str, list[str]] = {}
    for mode in args.probes:
        live = [args.netmon, "--json", "--probes", mode, *args.extra]
        configs[f"live ({mode})"] = [*args.etc_prefix, *live]
        if args.against:
            configs[f"against ({mode})"] = [*args.etc_prefix, args.against, *live[1:]]
    if args.replay is not None:
        configs["replay"] = [args.netmon, "--replay", args.replay, "--json"]
    names = list(configs)
    runs: dict[str, list[Run]] = {name: [] for name in names}
    for rnd in range(args.rounds):
        shift = rnd % len(names)
        for name in names[shift:] + names[:shift]:
            runs[name].append(measure(configs[name], args.settle))
            if not args.json:
                print(f"  round {rnd + 1}/{args.rounds}: {name} done", file=sys.stderr)
    results = []
    for name in names:
        rs = runs[name]
        stops = [r.stop_s for r in rs if r.stop_s is not None]
        results.append(
            {
                "config": name,
                "argv": configs[name],
                "start_s": summary([r.start_s for r in rs]),
                "stop_s": summary(stops) if stops else None,
                "exited_before_signal": len(rs) - len(stops),
                "cpu_s": summary([r.cpu_s for r in rs]),
                "max_rss_mb": summary([r.max_rss_mb for r in rs]),
                "exit_codes": sorted({r.exit_code for r in rs}),
                "runs": [r.__dict__ for r in rs],
            }
        )
    return {
        "rounds": args.rounds,
        "settle_s": args.settle,
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "results": results,
    }


def _cell(s: dict[str, float] | None, unit: str, digits: int) -> str:
    if s is None:
        return "-"
    return f"{s['median']:.{digits}f} {unit} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


def print_table(report: dict[str, Any]) -> None:
    print(
        f"netmon start and stop: {report['rounds']} rounds in rotated order, SIGTERM "
        f"{report['settle_s']} s after the first JSON object, kernel {report['kernel']}, "
        f"{report['cpus']} CPUs; medians (range)\n"
    )
    width = max(len(r["config"]) for r in report["results"])
    print(
        f"{'config':<{width}}  {'launch to first object':<24} {'SIGTERM to exit':<24} "
        f"{'CPU time, whole run':<24} {'peak RSS':<24} exit"
    )
    for r in report["results"]:
        codes = ",".join(str(c) for c in r["exit_codes"])
        if r["exited_before_signal"]:
            codes += f" ({r['exited_before_signal']} ended before the signal)"
        print(
            f"{r['config']:<{width}}  {_cell(r['start_s'], 's', 2):<24} "
            f"{_cell(r['stop_s'], 's', 2):<24} {_cell(r['cpu_s'], 's', 2):<24} "
            f"{_cell(r['max_rss_mb'], 'MB', 0):<24} {codes}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds (default: 5)")
    parser.add_argument(
        "--probes",
        default="auto",
        help="comma-separated probe modes, each timed as its own configuration (default: auto)",
    )
    parser.add_argument(
        "--replay",
        nargs="?",
        const=str(DEFAULT_REPLAY),
        metavar="FILE",
        help="also time `netmon --replay FILE --json` (default FILE: examples/sample.jsonl)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=0.5,
        help="seconds between the first object and SIGTERM (default: 0.5)",
    )
    parser.add_argument("--netmon", default=str(DEFAULT_NETMON), help="the netmon command")
    parser.add_argument(
        "--against",
        metavar="NETMON",
        help="another netmon command (e.g. an older build's .venv/bin/netmon), timed "
        "beside --netmon in the same rounds",
    )
    parser.add_argument(
        "--netmon-args",
        dest="extra",
        default="",
        help="more options for the live runs, e.g. '--max-flows 65536'",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    args.probes = [p for p in args.probes.split(",") if p]
    args.extra = args.extra.split()
    if args.rounds < 1 or args.settle < 0:
        parser.error("need at least one round and --settle >= 0")
    if args.probes and os.geteuid() != 0:
        print("startup: run as root (live capture needs it)", file=sys.stderr)
        return 3
    if not args.probes and args.replay is None:
        parser.error("nothing to time: give --probes or --replay")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="netmon-startup-") as tmp:
        args.etc_prefix = private_etc(Path(tmp))
        report = run(args)
    report["duration_s"] = round(time.monotonic() - started, 1)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
