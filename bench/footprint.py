#!/usr/bin/env python3
"""netmon's own CPU and memory with 10,000 live UDP flows, beside nethogs.

A sender (bench/udp_flows.c, compiled here with gcc) keeps N distinct UDP
flows active on loopback for the whole run: one unconnected socket sends
one-byte datagrams to N sockets of its own, in turn, so every flow sees
traffic several times per interval. Each round then measures, in a rotating
order:

  table    netmon's interactive table in a real pseudo-terminal (COLSxROWS),
           its output read and discarded continuously;
  json     `netmon --json` writing to a pipe that is drained;
  nethogs  `nethogs -t -a` (trace mode) writing to a drained pipe, where
           nethogs is installed.

Each monitor is started fresh; once it is ready (the table shows the flows,
the first JSON object holds them, nethogs printed its first refresh) and a
warm-up has passed, its CPU time (utime+stime from /proc/PID/stat) is taken
over a fixed window, as a percentage of one core, and its memory
(/proc/PID/smaps_rollup: PSS, private, RSS) at the end of the window. The report gives medians
over the rounds, and checks in the final JSON object of every json run that
netmon saw the sender's N flows. netmon's kernel flow table (--max-flows,
10240 by default) is shared with every other process's traffic: if a busy
machine keeps the monitor from showing all N flows within --flows-timeout,
the run says so and measures anyway.

Peers (--peers): by default the N flows go to one address, 127.0.0.1, on N
ports. With `--peers distinct` they go to N loopback addresses of their own
(127.1.x.y), so netmon looks up N peer names: its hosts file names 3 in 4 of
them, the others are misses. Either way netmon runs with names on (its
default) in a private mount namespace whose /etc/resolv.conf names a
resolver on 127.0.0.1 where nothing listens (a query is refused at once),
so no lookup leaves the machine; /etc/hosts there is the machine's own
(127.0.0.1 is "localhost") or, with distinct peers, one made for the run.
With distinct peers each netmon run is measured once its lookups are over
(it stopped reading the hosts file), and the report gives how many of the
sender's flows had a name in the final JSON object.

Run as root:
  .venv/bin/python bench/footprint.py [--rounds R] [--window S] [--peers distinct] [--json]

Figures are indicative when other work shares the machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
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
    HERE,
    PipeMonitor,
    PtyMonitor,
    cpu_seconds,
    memory_kib,
    other_monitors,
    private_etc,
    read_chars,
    require_root,
    stop_process,
    wait_event,
)

SENDER_SOURCE = HERE / "udp_flows.c"
READY_TIMEOUT = 60.0  # launch to first output, generous: BCC compiles the probes at start
PEER_DOMAIN = "footprint.test"  # names in the generated hosts file (a reserved TLD)


def peer_address(i: int) -> str:
    """The address of flow i with distinct peers (as bench/udp_flows.c binds it)."""
    return f"127.1.{i // 254}.{i % 254 + 1}"


def peer_named(i: int) -> bool:
    """3 in 4 peers have a name in the hosts file; the others are misses."""
    return i % 4 != 3


def peers_hosts(flows: int) -> str:
    """The hosts file for distinct peers. glibc reads it line by line at each
    lookup, so a hit costs a scan to its line and a miss the whole file."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines += [f"{peer_address(i)}\tpeer-{i}.{PEER_DOMAIN}" for i in range(flows) if peer_named(i)]
    return "\n".join(lines) + "\n"


@dataclass
class Usage:
    cpu_percent: float  # of one core, over the window
    pss_mib: float  # memory at the end of the window
    private_mib: float
    rss_mib: float
    window_s: float
    others: dict[int, str]  # other monitors running when the window started


@dataclass
class Measure:
    config: str
    round: int
    usage: Usage
    ready_s: float  # launch until ready
    all_flows_seen: bool  # ready meant the flows were there (not the flows timeout)
    flows_seen: int | None  # sender flows (json, final object) or flows on screen (table)
    flows_other: int | None = None  # json: further sender flows (no destination)
    flows_total: int | None = None  # json: all flows in the final object
    dropped: int | None = None  # json: flows evicted from the kernel table
    peers: int | None = None  # json: distinct remote addresses of the sender's flows
    named: int | None = None  # json: sender flows with a remote_name
    names_s: float | None = None  # distinct peers: ready until the lookups were over


# ------------------------------------------------------------------ sender
class Sender:
    def __init__(self, workdir: Path, flows: int, rate: int, distinct: bool) -> None:
        gcc = shutil.which("gcc")
        if gcc is None:
            sys.exit("footprint: gcc not found (make install installs it)")
        binary = workdir / "udp_flows"
        subprocess.run([gcc, "-O2", "-Wall", "-o", str(binary), str(SENDER_SOURCE)], check=True)
        self.flows = flows
        self.rate = rate
        self.proc = subprocess.Popen(
            [str(binary), str(flows), str(rate), *(["distinct"] if distinct else [])],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.pid = self.proc.pid
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            stop_process(self.proc, signal.SIGKILL)
            sys.exit("footprint: the UDP sender did not start")

    def stop(self) -> tuple[int, float]:
        """Stop it; (datagrams sent, seconds it ran)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=30)
        try:
            sent, seconds = out.split()
            return int(sent), float(seconds)
        except ValueError:
            raise RuntimeError(f"the UDP sender failed ({self.proc.returncode}): {out!r}") from None


# ---------------------------------------------------------------- monitors
class ScreenFlows:
    """Watches the table's output for its status line showing >= N flows.

    The output is fed to a terminal emulator (pyte, a dev dependency) so the
    check reads the screen as a user would, whatever curses chose to redraw.
    """

    PATTERN = re.compile(r"Flows (\d+)")

    def __init__(self, cols: int, rows: int, want: int) -> None:
        import pyte

        self.screen = pyte.Screen(cols, rows)
        self.stream = pyte.ByteStream(self.screen)
        self.want = want
        self.seen: int | None = None

    def __call__(self, chunk: bytes) -> bool:
        self.stream.feed(chunk)
        for line in self.screen.display:
            match = self.PATTERN.search(line)
            if match:
                self.seen = int(match.group(1))
                return self.seen >= self.want
        return False


def netmon_args(args: argparse.Namespace) -> list[str]:
    argv = [*args.etc_prefix, args.netmon]
    if args.interval is not None:
        argv += ["--interval", str(args.interval)]
    if args.max_flows is not None:
        argv += ["--max-flows", str(args.max_flows)]
    return argv


def warn(message: str) -> None:
    print(f"footprint: WARNING: {message}", file=sys.stderr)


def mine(obj: dict[str, Any], pid: int) -> list[dict[str, Any]]:
    """The sender's UDP flows in a JSON object."""
    return [f for f in obj.get("flows", []) if f.get("pid") == pid and f.get("protocol") == "UDP"]


def sender_flows(obj: dict[str, Any], pid: int) -> tuple[int, int]:
    """(flows to a destination, other flows) of the sender in a JSON object."""
    flows = mine(obj, pid)
    addressed = sum(1 for f in flows if f.get("remote_ip") is not None and f.get("port"))
    return addressed, len(flows) - addressed


def lookups_over(pid: int, args: argparse.Namespace) -> float | None:
    """With distinct peers: wait until netmon's lookups are over, seconds
    waited (None past --names-timeout: measuring anyway). Every lookup reads
    the hosts file (a miss all of it), so they are over once netmon reads
    less than one hosts file's worth over two refreshes (lookups are queued
    at refreshes, at most 256 at a time, so a shorter period could fall
    between two batches)."""
    if args.peers != "distinct":
        return 0.0
    period = 2 * (args.interval or 1000) / 1000
    started = time.monotonic()
    before = read_chars(pid)
    while time.monotonic() - started < args.names_timeout:
        time.sleep(period)
        now = read_chars(pid)
        if now - before < args.hosts_bytes:
            return time.monotonic() - started
        before = now
    warn(
        f"netmon was still reading its hosts file {args.names_timeout:g} s after it showed "
        "the flows: lookups still running, measuring anyway"
    )
    return None


def window(pid: int, args: argparse.Namespace) -> Usage:
    """Warm up, then measure over the window."""
    time.sleep(args.warmup)
    others = other_monitors({os.getpid(), pid})
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(args.window)
    cpu1, t1 = cpu_seconds(pid), time.monotonic()
    mem = memory_kib(pid)
    return Usage(
        cpu_percent=100 * (cpu1 - cpu0) / (t1 - t0),
        pss_mib=mem["Pss"] / 1024,
        private_mib=mem["Private"] / 1024,
        rss_mib=mem["Rss"] / 1024,
        window_s=t1 - t0,
        others=others,
    )


def measure_table(args: argparse.Namespace, rnd: int) -> Measure:
    watch: ScreenFlows | None
    try:
        watch = ScreenFlows(args.cols, args.rows, args.flows)
    except ImportError:
        watch = None  # no pyte: ready at the first screen output
    started = time.monotonic()
    mon = PtyMonitor(netmon_args(args), args.cols, args.rows, watch)
    try:
        if not wait_event(mon.first_output, mon.proc, READY_TIMEOUT):
            raise RuntimeError(f"netmon's table drew nothing within {READY_TIMEOUT:g} s")
        full = wait_event(mon.drain.matched, mon.proc, args.flows_timeout)
        mon.drain.watch = None  # stop emulating the terminal, whatever was seen
        if not full and watch is not None:
            warn(
                f"the table showed {watch.seen} flows, not {args.flows}, "
                f"{args.flows_timeout:g} s after its first screen: measuring anyway"
            )
        ready = time.monotonic() - started
        names_s = lookups_over(mon.pid, args)
        usage = window(mon.pid, args)
        if mon.proc.poll() is not None:
            raise RuntimeError(f"netmon's table exited during the window ({mon.proc.returncode})")
    finally:
        mon.stop()
    m = Measure("table", rnd, usage, ready, full, watch.seen if watch else None)
    return dataclasses.replace(m, names_s=names_s)


def measure_json(args: argparse.Namespace, rnd: int, sender_pid: int) -> Measure:
    started = time.monotonic()
    mon = PipeMonitor([*netmon_args(args), "--json"])
    try:
        mon.wait_first_line(READY_TIMEOUT, "first JSON object")
        # Ready once an object holds every flow of the sender.
        deadline = time.monotonic() + args.flows_timeout
        while True:
            obj = mon.last_json()
            seen = sender_flows(obj, sender_pid)[0] if obj is not None else 0
            full = seen >= args.flows
            if full:
                break
            left = deadline - time.monotonic()
            if left <= 0 or not mon.drain.wait_lines(mon.drain.lines + 1, left):
                if mon.proc.poll() is not None:
                    mon.fail("exited before it saw the flows")
                warn(
                    f"netmon --json saw {seen} of the sender's {args.flows} flows "
                    f"{args.flows_timeout:g} s after its first object: measuring anyway"
                )
                break
        ready = time.monotonic() - started
        names_s = lookups_over(mon.pid, args)
        usage = window(mon.pid, args)
        if mon.proc.poll() is not None:
            mon.fail("exited during the window")
    except BaseException:
        stop_process(mon.proc, signal.SIGKILL)
        raise
    rc = mon.stop()
    final = mon.last_json()
    if rc != 0 or final is None:
        raise RuntimeError(f"netmon --json exited with {rc}: {mon.stderr_text()}")
    addressed, other = sender_flows(final, sender_pid)
    flows = mine(final, sender_pid)
    return Measure(
        "json",
        rnd,
        usage,
        ready,
        full,
        addressed,
        other,
        flows_total=len(final.get("flows", [])),
        dropped=final.get("dropped"),
        peers=len({f.get("remote_ip") for f in flows}),
        named=sum(1 for f in flows if f.get("remote_name")),
        names_s=names_s,
    )


def measure_nethogs(args: argparse.Namespace, rnd: int) -> Measure:
    started = time.monotonic()
    # Trace mode prints "Refreshing:" at every refresh: the first one means
    # capture is running. (A marker split across two reads is only seen at
    # the next refresh, a second later.)
    mon = PipeMonitor(
        [args.nethogs, *shlex.split(args.nethogs_args)],
        signal.SIGTERM,  # nethogs just dies on it in trace mode: fine here
        watch=lambda chunk: b"Refreshing:" in chunk,
    )
    try:
        if not wait_event(mon.drain.matched, mon.proc, READY_TIMEOUT):
            mon.fail(f"no first refresh within {READY_TIMEOUT:g} s")
        ready = time.monotonic() - started
        usage = window(mon.pid, args)
        if mon.proc.poll() is not None:
            mon.fail("exited during the window")
    finally:
        mon.stop()
    return Measure("nethogs", rnd, usage, ready, True, None)


# ------------------------------------------------------------------ the run
def run(args: argparse.Namespace) -> dict[str, Any]:
    configs = list(args.configs)
    if args.against:  # the other build beside each netmon configuration
        configs += [f"{c}@against" for c in args.configs if c in ("table", "json")]
    if "nethogs" in configs and shutil.which(args.nethogs) is None:
        configs.remove("nethogs")
        print("footprint: nethogs not installed, measuring netmon only", file=sys.stderr)
    measures: list[Measure] = []
    with tempfile.TemporaryDirectory(prefix="netmon-footprint-") as tmp:
        hosts = peers_hosts(args.flows) if args.peers == "distinct" else None
        args.etc_prefix = private_etc(Path(tmp), hosts)
        args.hosts_bytes = len(hosts.encode()) if hosts is not None else 0
        sender = Sender(Path(tmp), args.flows, args.rate, args.peers == "distinct")
        try:
            for rnd in range(args.rounds):
                shift = rnd % len(configs)
                for config in configs[shift:] + configs[:shift]:
                    base, _, other = config.partition("@")
                    run_args = argparse.Namespace(**{**vars(args), "netmon": args.against})
                    if not other:
                        run_args = args
                    if base == "table":
                        m = measure_table(run_args, rnd)
                    elif base == "json":
                        m = measure_json(run_args, rnd, sender.pid)
                    else:
                        m = measure_nethogs(args, rnd)
                    m = dataclasses.replace(m, config=config)
                    measures.append(m)
                    if not args.json:
                        print(
                            f"  round {rnd + 1}/{args.rounds} {config}: "
                            f"{m.usage.cpu_percent:.1f}% CPU, {m.usage.pss_mib:.0f} MiB PSS",
                            file=sys.stderr,
                        )
        except BaseException:
            stop_process(sender.proc, signal.SIGKILL)
            raise
        sent, seconds = sender.stop()

    summary = []
    for config in configs:
        ms = [m for m in measures if m.config == config]
        cpu = [m.usage.cpu_percent for m in ms]
        pss = [m.usage.pss_mib for m in ms]
        summary.append(
            {
                "config": config,
                "cpu_percent_median": statistics.median(cpu),
                "cpu_percent_min": min(cpu),
                "cpu_percent_max": max(cpu),
                "pss_mib_median": statistics.median(pss),
                "pss_mib_min": min(pss),
                "pss_mib_max": max(pss),
                "private_mib_median": statistics.median(m.usage.private_mib for m in ms),
                "rss_mib_median": statistics.median(m.usage.rss_mib for m in ms),
                "ready_s_median": statistics.median(m.ready_s for m in ms),
                "all_flows_seen": all(m.all_flows_seen for m in ms),
                "flows_seen": [m.flows_seen for m in ms],
                "flows_other": [m.flows_other for m in ms],
                "flows_total": [m.flows_total for m in ms],
                "dropped": [m.dropped for m in ms],
                "peers": [m.peers for m in ms],
                "named": [m.named for m in ms],
                "names_s": [None if m.names_s is None else round(m.names_s, 1) for m in ms],
            }
        )
    to = "one address, 127.0.0.1" if args.peers == "one" else "as many loopback addresses"
    return {
        "workload": f"{args.flows} live UDP flows on loopback to {to} (bench/udp_flows.c)",
        "peers_mode": args.peers,
        "named_want": sum(map(peer_named, range(args.flows))) if args.peers == "distinct" else None,
        "flows": args.flows,
        "rate_target": args.rate,
        "rate_achieved": sent / seconds,
        "interval_ms": args.interval,
        "max_flows": args.max_flows,
        "rounds": args.rounds,
        "warmup_s": args.warmup,
        "window_s": args.window,
        "terminal": f"{args.cols}x{args.rows}",
        "nethogs_args": args.nethogs_args if "nethogs" in configs else None,
        "other_monitors": {
            str(pid): what for m in measures for pid, what in m.usage.others.items()
        },
        "cpus": os.cpu_count(),
        "kernel": os.uname().release,
        "summary": summary,
        "measures": [asdict(m) for m in measures],
    }


def print_report(report: dict[str, Any]) -> None:
    interval = report["interval_ms"]
    print(
        f"netmon footprint: {report['workload']}, "
        f"{report['rate_achieved']:.0f} datagrams/s (target {report['rate_target']})\n"
        f"interval {'default' if interval is None else f'{interval} ms'}, "
        f"max-flows {report['max_flows'] or 'default'}, "
        f"{report['rounds']} rounds, {report['window_s']:g} s window after "
        f"{report['warmup_s']:g} s warm-up, table on a {report['terminal']} pty, "
        f"{report['cpus']} CPUs, kernel {report['kernel']}"
        + (f", nethogs {report['nethogs_args']}" if report["nethogs_args"] else "")
        + "\n"
    )
    print(
        f"{'config':<8} {'CPU % of a core':>16} {'range':>12} {'PSS MiB':>8} {'range':>10} "
        f"{'private':>8} {'RSS':>6}"
    )
    for s in report["summary"]:
        print(
            f"{s['config']:<8} {s['cpu_percent_median']:>15.1f}% "
            f"{s['cpu_percent_min']:>5.1f}-{s['cpu_percent_max']:<5.1f} "
            f"{s['pss_mib_median']:>8.0f} {s['pss_mib_min']:>4.0f}-{s['pss_mib_max']:<5.0f} "
            f"{s['private_mib_median']:>8.0f} {s['rss_mib_median']:>6.0f}"
        )
    print(
        "(memory at the end of each window, medians; PSS shares pages mapped by other\n"
        " processes too, such as another netmon's LLVM, so it falls when they run; private\n"
        " is what no other process shares)"
    )
    print()
    for s in report["summary"]:
        if s["config"] == "json":
            other = [o for o in s["flows_other"] if o]
            print(
                f"sender flows in the final JSON object of each json run: {s['flows_seen']}"
                f" (want {report['flows']})"
                + (f"; plus flows without a destination: {s['flows_other']}" if other else "")
                + f"\n  all flows: {s['flows_total']}, dropped (evicted): {s['dropped']}"
            )
            if report["peers_mode"] == "distinct":
                print(
                    f"  distinct peers of the sender: {s['peers']}; flows with a name: "
                    f"{s['named']} (the hosts file names {report['named_want']})"
                )
        elif s["config"] == "table":
            print(f"flows on the table's status line when ready: {s['flows_seen']}")
        if report["peers_mode"] == "distinct" and s["config"] != "nethogs":
            print(f"  {s['config']}: s from ready until the lookups were over: {s['names_s']}")
    short = [s["config"] for s in report["summary"] if not s["all_flows_seen"]]
    if short:
        print(
            f"WARNING: {', '.join(short)}: not every run saw all {report['flows']} flows "
            "before its window (other traffic filling the kernel flow table? see --max-flows)"
        )
    if report["other_monitors"]:
        print(
            "WARNING: other processes were tracing or capturing during the windows, "
            "competing for the CPUs: "
            + ", ".join(f"{pid} {what}" for pid, what in report["other_monitors"].items())
        )
    if report["rate_achieved"] < 0.95 * report["rate_target"]:
        print("WARNING: the sender fell behind its target rate; flows may have gone idle")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Run as root. Figures are indicative when other work shares the machine.",
    )
    parser.add_argument("--flows", type=int, default=10_000, help="live UDP flows (10000)")
    parser.add_argument(
        "--rate",
        type=int,
        default=20_000,
        help="datagrams per second over all flows (20000: each flow twice a second)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds, configurations rotated (3)")
    parser.add_argument("--warmup", type=float, default=5, help="s after ready, unmeasured (5)")
    parser.add_argument("--window", type=float, default=20, help="s of measured CPU time (20)")
    parser.add_argument(
        "--interval", type=int, default=None, help="netmon --interval MS (default: netmon's)"
    )
    parser.add_argument(
        "--max-flows",
        type=int,
        default=None,
        help="netmon --max-flows N (default: netmon's; other traffic on the machine "
        "shares the table with the sender's flows)",
    )
    parser.add_argument(
        "--flows-timeout",
        type=float,
        default=20,
        help="s after netmon's first output to wait for it to show all the flows; "
        "past it, measure anyway and say so (20)",
    )
    parser.add_argument(
        "--configs",
        default="table,json,nethogs",
        help="comma-separated, from table,json,nethogs (default: all)",
    )
    parser.add_argument(
        "--against",
        metavar="NETMON",
        help="another netmon executable (e.g. an older build's), measured beside --netmon "
        "in the same rounds as table@against and json@against",
    )
    parser.add_argument(
        "--peers",
        choices=("one", "distinct"),
        default="one",
        help="one: every flow to 127.0.0.1 (default); distinct: each flow to a loopback "
        "address of its own (127.1.x.y), 3 in 4 named by netmon's hosts file",
    )
    parser.add_argument(
        "--names-timeout",
        type=float,
        default=120,
        help="with distinct peers, s after netmon showed the flows to wait for its lookups "
        "to be over; past it, measure anyway and say so (120)",
    )
    parser.add_argument("--cols", type=int, default=200, help="pty columns (200)")
    parser.add_argument("--rows", type=int, default=50, help="pty rows (50)")
    parser.add_argument("--netmon", default=DEFAULT_NETMON, help="netmon executable")
    parser.add_argument("--nethogs", default="nethogs", help="nethogs executable")
    parser.add_argument(
        "--nethogs-args",
        default="-t -a",
        help="nethogs options (default '-t -a'; add -C to make it count UDP too)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    args.configs = [c for c in args.configs.split(",") if c]
    unknown = set(args.configs) - {"table", "json", "nethogs"}
    if unknown or not args.configs:
        parser.error(f"--configs: unknown {', '.join(sorted(unknown)) or 'empty list'}")
    if args.flows < 1 or args.rate < 1 or args.rounds < 1 or args.window <= 0:
        parser.error("--flows, --rate, --rounds and --window must be positive")
    if args.peers == "distinct" and args.flows > 254 * 256:
        parser.error("--peers distinct: at most 65024 flows (127.1.0.1 to 127.1.255.254)")
    require_root("footprint")
    started = time.monotonic()
    report = run(args)
    report["duration_s"] = round(time.monotonic() - started, 1)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
