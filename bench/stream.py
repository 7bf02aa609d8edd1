#!/usr/bin/env python3
"""TCP throughput over loopback with and without netmon (and nethogs) attached.

The workload is iperf3: a one-off server (`iperf3 -s -1`) on 127.0.0.1 and a
client (`iperf3 -c 127.0.0.1 -J -t T`), pinned to CPUs 0 and 1 (`--pin`:
without it, whether the scheduler puts the two on one CPU or two changes
the throughput from run to run), once with 256-byte writes (`-l 256`,
chatty: one send per 256 bytes) and once with iperf3's default 128 KiB
writes. Each round runs both write sizes in each configuration, in a rotating
order so drift and background load hit every configuration alike:

  none     nothing attached;
  netmon   `netmon --json` as its own process (poller included), its output
           drained; the client starts once netmon printed its first object,
           that is once the probes are attached;
  nethogs  `nethogs -t -a` (trace mode, loopback included), where installed;
  netmon@against  with --against NETMON: another build's netmon, the same way.

The report gives the median receiver throughput per configuration and write
size, the loss against `none` (from the medians; the range and the median of
the per-round losses, each against the baseline of its own round), the CPU
iperf3 itself used (client + server, as iperf3 reports it; the monitors'
kernel programs run in its system calls, so their cost is part of it) and
its median change per round against the baseline, and checks that netmon
counted the bytes iperf3 moved:
the TCP bytes of the client and server pids in netmon's JSON objects
against iperf3's own counts (netmon also counts iperf3's control connection,
a few hundred bytes).

netmon runs with host names on (its default) in a private mount namespace
whose /etc/resolv.conf names a closed loopback port (bench/benchproc.py,
private_etc): the peers of other traffic on the machine are never asked
about to the machine's resolver.

With --rate (iperf3 -b) the runs move a fixed rate that the machine can
sustain with any monitor attached: a monitor's cost then shows in the CPU
column rather than as lost throughput, which is far less noisy here.

With --bpf-stats the kernel's BPF statistics are on during the runs, and the
report adds netmon's programs' nanoseconds per run (the statistics slow
every program down, so the throughputs are then not the plain ones).

Run as root:  .venv/bin/python bench/stream.py [--rounds R] [-t SECONDS] [--json]

Figures are indicative when other work shares the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchproc import (
    DEFAULT_NETMON,
    PipeMonitor,
    free_tcp_port,
    other_monitors,
    private_etc,
    require_root,
    stop_process,
    wait_event,
)
from overhead import bpf_stats_enabled, read_prog_stats, stats_delta

CONFIGS = ("none", "netmon", "nethogs")
BASELINE = "none"
DEFAULT_LENGTHS = "256,default"
READY_TIMEOUT = 60.0  # netmon compiles its probes at start


@dataclass
class IperfRun:
    config: str
    round: int
    length: str  # "256", or "default" (128 KiB for TCP)
    gbps: float  # receiver throughput
    bytes_sent: int  # iperf3's counts of the data streams
    bytes_received: int
    client_pid: int
    server_pid: int
    counted_sent: int | None = None  # netmon's TCP bytes of the client pid, sent
    counted_recv: int | None = None  # netmon's TCP bytes of the server pid, received
    cpu_percent: float = 0.0  # iperf3's own CPU use, client + server (% of one CPU)
    prog_runs: int | None = None  # --bpf-stats: runs of netmon's BPF programs during the run
    prog_ns: int | None = None  # and their run time


# ------------------------------------------------------------------ iperf3
def pin_args(pin: tuple[int, int] | None, side: int) -> list[str]:
    """iperf3's CPU affinity (-A) for the client (side 0) or the server (1)."""
    return [] if pin is None else ["-A", str(pin[side])]


def parse_pin(text: str) -> tuple[int, int] | None:
    if text == "none":
        return None
    try:
        client, server = (int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("want CLIENT_CPU,SERVER_CPU or 'none'") from None
    return client, server


def run_iperf(args: argparse.Namespace, config: str, rnd: int, length: str) -> IperfRun:
    port = free_tcp_port()
    server = PipeMonitor(
        [
            args.iperf3,
            "-s",
            "-1",
            "-B",
            "127.0.0.1",
            "-p",
            str(port),
            "--forceflush",
            *pin_args(args.pin, 1),
        ],
        watch=lambda chunk: b"Server listening" in chunk,
    )
    try:
        if not wait_event(server.drain.matched, server.proc, 10):
            server.fail("the iperf3 server did not start listening")
        argv = [args.iperf3, "-c", "127.0.0.1", "-p", str(port), "-J", "-t", str(args.time),
                *pin_args(args.pin, 0)]  # fmt: skip
        if length != "default":
            argv += ["-l", length]
        if args.rate:
            argv += ["-b", args.rate]
        client = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = client.communicate(timeout=args.time + 60)
        report = json.loads(out) if out.strip() else {}
        if client.returncode != 0 or "end" not in report:
            raise RuntimeError(
                f"iperf3 client failed ({client.returncode}): "
                f"{report.get('error') or err.decode(errors='replace').strip()}"
            )
        if server.proc.wait(30) != 0:
            raise RuntimeError(f"iperf3 server exited with {server.proc.returncode}")
    finally:
        server.stop()
    end = report["end"]
    return IperfRun(
        config=config,
        round=rnd,
        length=length,
        gbps=end["sum_received"]["bits_per_second"] / 1e9,
        bytes_sent=int(end["sum_sent"]["bytes"]),
        bytes_received=int(end["sum_received"]["bytes"]),
        client_pid=client.pid,
        server_pid=server.pid,
        cpu_percent=float(end["cpu_utilization_percent"]["host_total"])
        + float(end["cpu_utilization_percent"]["remote_total"]),
    )


# ---------------------------------------------------------------- monitors
class _TcpTotals:
    """The TCP bytes each pid sent and received, from every JSON object netmon
    writes: a process that exits is in one more object, with its final
    totals, and then no longer (so the last object alone is not enough)."""

    def __init__(self) -> None:
        self.latest: dict[int, tuple[int, int]] = {}

    def take(self, line: bytes) -> None:
        sums: dict[int, tuple[int, int]] = {}
        for f in json.loads(line)["flows"]:
            if f["protocol"] == "TCP":
                sent, recv = sums.get(f["pid"], (0, 0))
                sums[f["pid"]] = (sent + f["bytes_sent"], recv + f["bytes_recv"])
        self.latest.update(sums)


_COUNTED: dict[int, _TcpTotals] = {}  # netmon's pid -> what it counted


def attach(args: argparse.Namespace, config: str) -> PipeMonitor | None:
    if config in ("netmon", "netmon@against"):
        netmon = args.netmon if config == "netmon" else args.against
        totals = _TcpTotals()
        mon = PipeMonitor([*args.etc_prefix, netmon, "--json"], on_line=totals.take)
        _COUNTED[mon.pid] = totals
        mon.wait_first_line(READY_TIMEOUT, "first JSON object")
        return mon
    if config == "nethogs":
        # Trace mode prints "Refreshing:" at every refresh: capture is running.
        mon = PipeMonitor(
            [args.nethogs, *shlex.split(args.nethogs_args)],
            signal.SIGTERM,  # nethogs just dies on it in trace mode: fine here
            watch=lambda chunk: b"Refreshing:" in chunk,
        )
        if not wait_event(mon.drain.matched, mon.proc, READY_TIMEOUT):
            mon.fail(f"no first refresh within {READY_TIMEOUT:g} s")
        return mon
    return None


def detach(mon: PipeMonitor | None, config: str, runs: list[IperfRun]) -> None:
    """Stop the monitor; for netmon, fill in what it counted for each run."""
    if mon is None:
        return
    if mon.proc.poll() is not None:
        mon.fail(f"{config} exited while iperf3 ran ({mon.proc.returncode})")
    rc = mon.stop()
    if not config.startswith("netmon"):
        return
    if rc != 0 or mon.last_json() is None:
        raise RuntimeError(f"netmon --json exited with {rc}: {mon.stderr_text()}")
    totals = _COUNTED.pop(mon.pid).latest
    for run in runs:
        run.counted_sent = totals.get(run.client_pid, (0, 0))[0]
        run.counted_recv = totals.get(run.server_pid, (0, 0))[1]


# ------------------------------------------------------------------ the run
def run(args: argparse.Namespace) -> dict[str, Any]:
    configs = list(args.configs)
    if "nethogs" in configs and shutil.which(args.nethogs) is None:
        configs.remove("nethogs")
        print("stream: nethogs not installed, measuring netmon only", file=sys.stderr)
    runs: list[IperfRun] = []
    others: dict[int, str] = {}  # other monitors seen while iperf3 ran
    for rnd in range(args.rounds):
        shift = rnd % len(configs)
        for config in configs[shift:] + configs[:shift]:
            mon = attach(args, config)
            these: list[IperfRun] = []
            try:
                for length in args.lengths:
                    others.update(other_monitors({os.getpid()} | ({mon.pid} if mon else set())))
                    held = mon.pid if mon is not None and args.bpf_stats else None
                    before = read_prog_stats(held) if held is not None else {}
                    these.append(run_iperf(args, config, rnd, length))
                    if held is not None:
                        delta = stats_delta(before, read_prog_stats(held)).values()
                        these[-1].prog_runs = sum(runs for runs, _ in delta)
                        these[-1].prog_ns = sum(ns for _, ns in delta)
            except BaseException:
                if mon is not None:
                    stop_process(mon.proc, signal.SIGKILL)
                raise
            detach(mon, config, these)
            runs += these
            if not args.json:
                print(
                    f"  round {rnd + 1}/{args.rounds} {config}: "
                    + ", ".join(f"-l {r.length} {r.gbps:.2f} Gbit/s" for r in these),
                    file=sys.stderr,
                )

    results = []
    for length in args.lengths:
        base = {r.round: r.gbps for r in runs if r.length == length and r.config == BASELINE}
        base_median = statistics.median(base.values()) if base else None
        for config in configs:
            mine = [r for r in runs if r.length == length and r.config == config]
            median = statistics.median(r.gbps for r in mine)
            row: dict[str, Any] = {
                "length": length,
                "config": config,
                "gbps_median": median,
                "gbps_all": [r.gbps for r in mine],
            }
            if base_median and config != BASELINE:
                losses = [100 * (1 - r.gbps / base[r.round]) for r in mine if r.round in base]
                row["loss_percent"] = 100 * (1 - median / base_median)
                row["loss_per_round_min"] = min(losses)
                # Each round's loss against the baseline of the same round: drift between
                # rounds cancels out, so this median is steadier than the one above.
                row["loss_per_round_median"] = statistics.median(losses)
                row["loss_per_round_max"] = max(losses)
            row["cpu_percent_median"] = statistics.median(r.cpu_percent for r in mine)
            if config != BASELINE:
                cpu_base = {r.round: r.cpu_percent for r in runs if r.length == length
                            and r.config == BASELINE}  # fmt: skip
                extra = [100 * (r.cpu_percent / cpu_base[r.round] - 1) for r in mine
                         if cpu_base.get(r.round)]  # fmt: skip
                if extra:
                    row["cpu_extra_per_round_median"] = statistics.median(extra)
            timed = [r for r in mine if r.prog_runs]
            if timed:
                row["prog_ns_per_run"] = statistics.median(
                    (r.prog_ns or 0) / (r.prog_runs or 1) for r in timed
                )
                row["prog_runs_per_s"] = statistics.median(
                    (r.prog_runs or 0) / args.time for r in timed
                )
            if config.startswith("netmon"):
                row["bytes_sent"] = sum(r.bytes_sent for r in mine)
                row["counted_sent"] = sum(r.counted_sent or 0 for r in mine)
                row["bytes_received"] = sum(r.bytes_received for r in mine)
                row["counted_recv"] = sum(r.counted_recv or 0 for r in mine)
            results.append(row)
    return {
        "workload": f"iperf3 TCP over 127.0.0.1, {args.time} s per run"
        + (f", paced at {args.rate}bit/s (-b)" if args.rate else "")
        + (f", client on CPU {args.pin[0]}, server on CPU {args.pin[1]}" if args.pin else ""),
        "rounds": args.rounds,
        "time_s": args.time,
        "lengths": args.lengths,
        "nethogs_args": args.nethogs_args if "nethogs" in configs else None,
        "other_monitors": {str(pid): what for pid, what in others.items()},
        "cpus": os.cpu_count(),
        "kernel": os.uname().release,
        "results": results,
        "runs": [asdict(r) for r in runs],
    }


def print_report(report: dict[str, Any]) -> None:
    print(
        f"stream: {report['workload']}, {report['rounds']} rounds, "
        f"{report['cpus']} CPUs, kernel {report['kernel']}"
        + (f", nethogs {report['nethogs_args']}" if report["nethogs_args"] else "")
        + "\n"
    )
    if report["other_monitors"]:
        print(
            "WARNING: other processes were tracing or capturing during the runs, slowing "
            "every configuration:\n  "
            + ", ".join(f"{pid} {what}" for pid, what in report["other_monitors"].items())
            + "\n"
        )
    print(
        f"{'writes':<14} {'config':<15} {'Gbit/s':>8} {'loss':>8} {'per-round range':>17} "
        f"{'per-round median':>17} {'iperf3 CPU':>11} {'CPU, per round':>15}"
    )
    for r in report["results"]:
        writes = "default 128K" if r["length"] == "default" else f"-l {r['length']}"
        loss = f"{'':>44}"
        if "loss_percent" in r:
            loss = (
                f"{r['loss_percent']:>7.1f}% "
                f"{r['loss_per_round_min']:>7.1f} .. {r['loss_per_round_max']:>5.1f}% "
                f"{r['loss_per_round_median']:>13.1f}%"
            )
        cpu = f"{r['cpu_percent_median']:>10.0f}%"
        if "cpu_extra_per_round_median" in r:
            cpu += f" {r['cpu_extra_per_round_median']:>+14.1f}%"
        print(f"{writes:<14} {r['config']:<15} {r['gbps_median']:>8.2f} {loss} {cpu}")
    timed = [r for r in report["results"] if "prog_ns_per_run" in r]
    if timed:
        print("\nnetmon's BPF programs during the runs (bpf_stats on; they add their own cost):")
        for r in timed:
            print(
                f"  {r['config']}, -l {r['length']}: {r['prog_ns_per_run']:.0f} ns per run, "
                f"{r['prog_runs_per_s']:,.0f} runs/s (medians)"
            )
    print("\nnetmon's count of iperf3's TCP bytes (data + control connection):")
    for r in report["results"]:
        if not r["config"].startswith("netmon"):
            continue
        print(
            f"  {r['config']}, -l {r['length']}: client sent {r['counted_sent']} counted / "
            f"{r['bytes_sent']} iperf3 ({_excess(r['counted_sent'], r['bytes_sent'])}); "
            f"server received {r['counted_recv']} counted / {r['bytes_received']} iperf3 "
            f"({_excess(r['counted_recv'], r['bytes_received'])})"
        )


def _excess(counted: int, iperf: int) -> str:
    diff = counted - iperf
    return f"{'+' if diff >= 0 else ''}{diff} B, {counted / iperf:.6f}x" if iperf else "n/a"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Run as root. Figures are indicative when other work shares the machine.",
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds, configurations rotated (5)")
    parser.add_argument(
        "-t", "--time", type=int, default=5, help="seconds per iperf3 run (iperf3 -t, 5)"
    )
    parser.add_argument(
        "--lengths",
        default=DEFAULT_LENGTHS,
        help=f"comma-separated iperf3 -l write sizes, 'default': its own ({DEFAULT_LENGTHS})",
    )
    parser.add_argument(
        "--configs",
        default=",".join(CONFIGS),
        help=f"comma-separated, from {','.join(CONFIGS)} (default: all)",
    )
    parser.add_argument(
        "--pin",
        type=parse_pin,
        default=parse_pin("0,1") if (os.cpu_count() or 1) >= 2 else None,
        metavar="CLIENT,SERVER",
        help="CPUs for the iperf3 client and server (iperf3 -A; default 0,1 with two or more "
        "CPUs): where the scheduler puts them changes the throughput from run to run. "
        "'none' leaves it to the scheduler",
    )
    parser.add_argument("--iperf3", default="iperf3", help="iperf3 executable")
    parser.add_argument("--netmon", default=DEFAULT_NETMON, help="netmon executable")
    parser.add_argument(
        "--against",
        metavar="NETMON",
        help="another build's netmon executable, measured as netmon@against in the same rounds",
    )
    parser.add_argument("--nethogs", default="nethogs", help="nethogs executable")
    parser.add_argument("--nethogs-args", default="-t -a", help="nethogs options (default '-t -a')")
    parser.add_argument(
        "--rate",
        metavar="BITS",
        help="a fixed target rate for iperf3 (-b, e.g. 500M) below what the machine can "
        "do: the cost of a monitor then shows as the CPU iperf3 uses, not as throughput",
    )
    parser.add_argument(
        "--bpf-stats",
        action="store_true",
        help="turn the kernel's BPF statistics on and report netmon's programs' ns per run "
        "(they slow every program down: the throughputs are then not the plain ones)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    args.lengths = [x for x in args.lengths.split(",") if x]
    args.configs = [c for c in args.configs.split(",") if c]
    unknown = set(args.configs) - set(CONFIGS)
    if unknown or not args.configs:
        parser.error(f"--configs: unknown {', '.join(sorted(unknown)) or 'empty list'}")
    if args.against and "netmon" in args.configs:
        args.configs.insert(args.configs.index("netmon") + 1, "netmon@against")
    if not args.lengths or any(x != "default" and not x.isdigit() for x in args.lengths):
        parser.error("--lengths: positive integers or 'default'")
    if args.rounds < 1 or args.time < 1:
        parser.error("--rounds and -t must be positive")
    if shutil.which(args.iperf3) is None:
        sys.exit("stream: iperf3 not found (make install installs it)")
    require_root("stream")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="netmon-stream-") as tmp:
        args.etc_prefix = private_etc(Path(tmp))
        with bpf_stats_enabled() if args.bpf_stats else contextlib.nullcontext():
            report = run(args)
    report["duration_s"] = round(time.monotonic() - started, 1)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
