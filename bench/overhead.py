#!/usr/bin/env python3
"""How much netmon's probes slow down a syscall-heavy program.

The workload is bench/udp_send_loop.c, compiled here with gcc: N one-byte UDP
sends on loopback, once with a connected socket and send(), once with an
unconnected socket and sendto(). Each round runs the workload without netmon
and with netmon attached in each probe mode, in a rotating order, so drift
and background noise hit every configuration alike. The report gives the
median time per send, the slowdown (median with / median without, and the
range of the per-round ratios, and the ratio of the fastest runs, which
background load disturbs least), and from the kernel's BPF statistics
(enabled for the run with bpf(BPF_ENABLE_STATS), or where that is missing
with kernel.bpf_stats_enabled, restored after) how often
each BPF program ran during the measured loops and how long it took per run.
It also checks that netmon counted exactly the bytes the loop sent.

Run as root:  .venv/bin/python bench/overhead.py [--json] [--rounds R] [-n N]

By default netmon is attached in this process (LiveSource, no polling while
the loop runs: the pure probe cost). `--attach cli` runs `netmon --json` as a
separate process instead, poller included.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import select
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

HERE = Path(__file__).resolve().parent
LOOP_SOURCE = HERE / "udp_send_loop.c"
CALLS = ("send", "sendto")
BASELINE = "none"
STATS_SYSCTL = Path("/proc/sys/kernel/bpf_stats_enabled")


# ----------------------------------------------------------------- workload
@dataclass(frozen=True)
class LoopResult:
    ns_per_send: float
    sends: int  # including warm-up
    bytes_sent: int
    pid: int


def compile_loop(workdir: Path) -> Path:
    binary = workdir / "udp_send_loop"
    gcc = shutil.which("gcc")
    if gcc is None:
        sys.exit("overhead: gcc not found (make install installs it)")
    subprocess.run([gcc, "-O2", "-Wall", "-o", str(binary), str(LOOP_SOURCE)], check=True)
    return binary


def run_loop(binary: Path, call: str, n: int, warmup: int) -> LoopResult:
    proc = subprocess.Popen(
        [str(binary), call, str(n), str(warmup)], stdout=subprocess.PIPE, text=True
    )
    out, _ = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{binary.name} {call} exited with {proc.returncode}")
    ns, sends, nbytes = out.split()
    return LoopResult(float(ns), int(sends), int(nbytes), proc.pid)


# ----------------------------------------------------------------- bpf_stats
BPF_SYSCALL = {"x86_64": 321, "aarch64": 280}
BPF_ENABLE_STATS = 32
BPF_STATS_RUN_TIME = 0


def _enable_stats_fd() -> int | None:
    """bpf(BPF_ENABLE_STATS): run-time statistics stay on while the fd is open.

    Unlike the sysctl, this is counted per holder, so another tool switching
    kernel.bpf_stats_enabled off in the middle of the run cannot disturb it.
    """
    nr = BPF_SYSCALL.get(platform.machine())
    if nr is None:
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    attr = ctypes.create_string_buffer(struct.pack("I", BPF_STATS_RUN_TIME), 16)
    fd = int(libc.syscall(nr, BPF_ENABLE_STATS, attr, len(attr.raw)))
    return fd if fd >= 0 else None


@contextmanager
def bpf_stats_enabled() -> Iterator[None]:
    fd = _enable_stats_fd()
    if fd is not None:
        try:
            yield
        finally:
            os.close(fd)
        return
    # Older kernels: the sysctl, restored afterwards.
    before = STATS_SYSCTL.read_text().strip()
    STATS_SYSCTL.write_text("1\n")
    try:
        yield
    finally:
        STATS_SYSCTL.write_text(before + "\n")


ProgStats = dict[int, tuple[int, int]]  # prog id -> (run_cnt, run_time_ns)


def read_prog_stats(pid: int) -> ProgStats:
    """run_cnt and run_time_ns of every BPF program that process `pid` holds."""
    stats: ProgStats = {}
    fdinfo = Path(f"/proc/{pid}/fdinfo")
    for entry in fdinfo.iterdir():
        try:
            fields = dict(
                line.split(":", 1) for line in entry.read_text().splitlines() if ":" in line
            )
        except OSError:
            continue
        if "prog_id" in fields and "run_cnt" in fields:
            stats[int(fields["prog_id"])] = (
                int(fields["run_cnt"]),
                int(fields["run_time_ns"]),
            )
    return stats


# kprobe, tracepoint, raw tracepoint, tracing: programs that could fire in the loop
TRACING_PROG_TYPES = {2, 5, 17, 26}


def foreign_tracing_programs(exclude: set[int]) -> dict[int, int]:
    """pid -> number of tracing BPF programs held by processes not in `exclude`.

    Another tool (or another netmon) tracing the same syscalls would slow the
    baseline down too and make the slowdown look smaller than it is.
    """
    holders: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) in exclude:
            continue
        try:
            entries = list((proc / "fdinfo").iterdir())
        except OSError:
            continue
        for entry in entries:
            try:
                text = entry.read_text()
            except OSError:
                continue
            for line in text.splitlines():
                if line.startswith("prog_type:"):
                    if int(line.split(":", 1)[1]) in TRACING_PROG_TYPES:
                        holders[int(proc.name)] = holders.get(int(proc.name), 0) + 1
                    break
    return holders


def stats_delta(before: ProgStats, after: ProgStats) -> ProgStats:
    return {
        prog: (cnt - before.get(prog, (0, 0))[0], ns - before.get(prog, (0, 0))[1])
        for prog, (cnt, ns) in after.items()
    }


def short_name(name: str) -> str:
    return name.removeprefix("tracepoint__").replace("__", ":", 1)


# ---------------------------------------------------------------- attaching
class Attached(Protocol):
    mode: str
    pid: int  # the process holding the BPF program fds

    def program_names(self) -> dict[int, str]: ...

    def finish(self, loop_pids: list[int]) -> dict[int, int]:
        """Detach; return the bytes netmon counted as sent by each loop pid."""
        ...


def _prog_id_of_fd(fd: int) -> int | None:
    for line in Path(f"/proc/self/fdinfo/{fd}").read_text().splitlines():
        if line.startswith("prog_id:"):
            return int(line.split(":", 1)[1])
    return None


class InProcess:
    """netmon's LiveSource opened in this process."""

    def __init__(self, probes: str) -> None:
        from netmon.sources.live import LiveSource

        self.source = LiveSource.open(probes=probes)
        self.mode = self.source.mode
        self.pid = os.getpid()

    def program_names(self) -> dict[int, str]:
        # BCC keeps the loaded programs in BPF.funcs (name -> Function with fd).
        names: dict[int, str] = {}
        for name, fn in getattr(self.source, "_bpf").funcs.items():  # noqa: B009
            prog_id = _prog_id_of_fd(fn.fd)
            if prog_id is not None:
                names[prog_id] = short_name(name.decode() if isinstance(name, bytes) else name)
        return names

    def finish(self, loop_pids: list[int]) -> dict[int, int]:
        try:
            sample = self.source.read()
        finally:
            self.source.close()
        counted = dict.fromkeys(loop_pids, 0)
        for key, counters in sample.flows.items():
            if key.pid in counted:
                counted[key.pid] += counters.bytes_sent
        return counted


class Subprocess:
    """`netmon --json --probes MODE` as its own process, poller included."""

    def __init__(self, probes: str, netmon: str, interval_ms: int) -> None:
        self.mode = probes
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in finish)
        self.proc = subprocess.Popen(
            [netmon, "--json", "--probes", probes, "--interval", str(interval_ms)],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        self.pid = self.proc.pid
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 60)
        first = self.proc.stdout.readline() if ready else b""
        if not first:
            self.proc.kill()
            self.proc.wait()
            self._stderr.seek(0)
            raise RuntimeError(
                f"netmon --probes {probes} gave no first snapshot: "
                + self._stderr.read().decode(errors="replace").strip()
            )

    def program_names(self) -> dict[int, str]:
        bpftool = shutil.which("bpftool")
        if bpftool is None:
            return {}
        out = subprocess.run(
            [bpftool, "prog", "show", "--json"], capture_output=True, text=True, check=False
        )
        try:
            progs = json.loads(out.stdout)
        except json.JSONDecodeError:
            return {}
        return {p["id"]: short_name(p.get("name", "?")) for p in progs if "id" in p}

    def finish(self, loop_pids: list[int]) -> dict[int, int]:
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=60)
        self._stderr.close()
        lines = out.decode().splitlines()
        if self.proc.returncode != 0 or not lines:
            raise RuntimeError(f"netmon exited with {self.proc.returncode}")
        final = json.loads(lines[-1])
        counted = dict.fromkeys(loop_pids, 0)
        for flow in final["flows"]:
            if flow["pid"] in counted:
                counted[flow["pid"]] += flow["bytes_sent"]
        return counted


# ------------------------------------------------------------------ the run
@dataclass
class ConfigResult:
    """All rounds of one (call, probes) configuration."""

    ns: list[float] = field(default_factory=list)
    sent: int = 0
    counted: int = 0
    measured_sends: int = 0


@dataclass
class ProgramResult:
    runs: int = 0
    time_ns: int = 0


def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[tuple[str, str], ConfigResult] = {}
    programs: dict[tuple[str, str], ProgramResult] = {}
    resolved: dict[str, str] = {}
    foreign: dict[int, int] = {}  # pid -> tracing programs seen during baseline runs
    configs = [BASELINE, *args.probes]

    with tempfile.TemporaryDirectory(prefix="netmon-bench-") as tmp:
        binary = compile_loop(Path(tmp))
        stats: AbstractContextManager[None] = (
            bpf_stats_enabled() if args.bpf_stats else nullcontext()
        )
        with stats:
            for rnd in range(args.rounds):
                shift = rnd % len(configs)
                order = configs[shift:] + configs[:shift]
                for config in order:
                    attached: Attached | None = None
                    if config != BASELINE:
                        if args.attach == "cli":
                            attached = Subprocess(config, args.netmon, args.interval)
                        else:
                            attached = InProcess(config)
                        resolved[config] = attached.mode
                    if attached is None:
                        for pid, count in foreign_tracing_programs({os.getpid()}).items():
                            foreign[pid] = max(foreign.get(pid, 0), count)
                    loops: list[tuple[str, LoopResult]] = []
                    try:
                        before = read_prog_stats(attached.pid) if attached else {}
                        for call in CALLS:
                            loops.append((call, run_loop(binary, call, args.n, args.warmup)))
                        after = read_prog_stats(attached.pid) if attached else {}
                        names = attached.program_names() if attached else {}
                    finally:
                        counted = attached.finish([r.pid for _, r in loops]) if attached else {}
                    for call, loop in loops:
                        res = results.setdefault((call, config), ConfigResult())
                        res.ns.append(loop.ns_per_send)
                        res.sent += loop.bytes_sent
                        res.counted += counted.get(loop.pid, 0)
                        res.measured_sends += args.n
                    for prog, (cnt, ns) in stats_delta(before, after).items():
                        prog_result = programs.setdefault(
                            (config, names.get(prog, f"prog id {prog}")), ProgramResult()
                        )
                        prog_result.runs += cnt
                        prog_result.time_ns += ns
                    if not args.json:
                        print(f"  round {rnd + 1}/{args.rounds}: {config} done", file=sys.stderr)

    rows = []
    for call in CALLS:
        base = results[(call, BASELINE)]
        for probes in args.probes:
            res = results[(call, probes)]
            ratios = [b / a for a, b in zip(base.ns, res.ns, strict=True)]
            rows.append(
                {
                    "call": call,
                    "probes": probes,
                    "probes_resolved": resolved.get(probes, probes),
                    "baseline_ns_per_send": statistics.median(base.ns),
                    "netmon_ns_per_send": statistics.median(res.ns),
                    "slowdown": statistics.median(res.ns) / statistics.median(base.ns),
                    "slowdown_best": min(res.ns) / min(base.ns),
                    "slowdown_per_round_min": min(ratios),
                    "slowdown_per_round_max": max(ratios),
                    "baseline_ns_all": base.ns,
                    "netmon_ns_all": res.ns,
                    "bytes_sent": res.sent,
                    "bytes_counted": res.counted,
                }
            )
    progs: list[dict[str, Any]] = []
    for (probes, name), pr in sorted(programs.items()):
        if pr.runs == 0:
            continue
        sends = sum(results[(call, probes)].sent for call in CALLS)
        progs.append(
            {
                "probes": probes,
                "program": name,
                "run_cnt": pr.runs,
                "run_time_ns": pr.time_ns,
                "ns_per_run": pr.time_ns / pr.runs,
                "runs_per_send": pr.runs / sends,
            }
        )
    per_send = {}
    for probes in args.probes:
        sends = sum(results[(call, probes)].sent for call in CALLS)
        total_ns = sum(p["run_time_ns"] for p in progs if p["probes"] == probes)
        per_send[probes] = total_ns / sends
    return {
        "workload": "one-byte UDP sends on loopback (bench/udp_send_loop.c)",
        "n_per_run": args.n,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "attach": args.attach,
        "bpf_stats": args.bpf_stats,
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "foreign_tracing_programs": {str(pid): n for pid, n in foreign.items()},
        "results": rows,
        "programs": progs,
        "bpf_ns_per_send": per_send,
    }


def print_table(report: dict[str, Any]) -> None:
    print(
        f"netmon overhead: {report['workload']}\n"
        f"{report['n_per_run']} timed sends per run after {report['warmup']} warm-up, "
        f"{report['rounds']} interleaved rounds, netmon attached {report['attach']}, "
        f"bpf_stats {'on' if report['bpf_stats'] else 'off'}, "
        f"kernel {report['kernel']}, {report['cpus']} CPUs\n"
    )
    if report["foreign_tracing_programs"]:
        print(
            "WARNING: other processes held tracing BPF programs during baseline runs "
            "(pid: programs): "
            + ", ".join(f"{pid}: {n}" for pid, n in report["foreign_tracing_programs"].items())
            + "\nthe baseline may be slowed by them too.\n"
        )
    print(
        f"{'call':<7} {'probes':<9} {'without':>10} {'with':>10} {'slowdown':>9} "
        f"{'per-round range':>16} {'best/best':>9}  counted/sent bytes"
    )
    for r in report["results"]:
        probes = r["probes"]
        if r["probes_resolved"] != probes:
            probes = f"{probes}={r['probes_resolved']}"
        exact = "exact" if r["bytes_counted"] == r["bytes_sent"] else "MISMATCH"
        print(
            f"{r['call']:<7} {probes:<9} {r['baseline_ns_per_send']:>7.0f} ns "
            f"{r['netmon_ns_per_send']:>7.0f} ns {r['slowdown']:>8.2f}x "
            f"{r['slowdown_per_round_min']:>10.2f}-{r['slowdown_per_round_max']:.2f}x "
            f"{r['slowdown_best']:>8.2f}x  "
            f"{r['bytes_counted']}/{r['bytes_sent']} {exact}"
        )
    if not report["bpf_stats"]:
        print("\n(bpf_stats not enabled: no per-program figures)")
        return
    print("\nBPF programs during the timed loops (bpf_stats; all processes' events):")
    print(f"{'probes':<9} {'program':<40} {'runs':>10} {'runs/send':>9} {'ns/run':>8}")
    for p in report["programs"]:
        print(
            f"{p['probes']:<9} {p['program']:<40} {p['run_cnt']:>10} "
            f"{p['runs_per_send']:>9.2f} {p['ns_per_run']:>8.0f}"
        )
    print()
    for probes, ns in report["bpf_ns_per_send"].items():
        extra = [
            r["netmon_ns_per_send"] - r["baseline_ns_per_send"]
            for r in report["results"]
            if r["probes"] == probes
        ]
        print(
            f"{probes}: {ns:.0f} ns of BPF program time per send; measured extra time per send "
            + ", ".join(f"{e:.0f} ns" for e in extra)
            + f" ({', '.join(CALLS)})"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=200_000, help="timed sends per run")
    parser.add_argument("--warmup", type=int, default=10_000, help="untimed sends first")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    parser.add_argument(
        "--probes",
        default="socket,syscalls",
        help="comma-separated probe modes to measure (default: socket,syscalls)",
    )
    parser.add_argument(
        "--attach",
        choices=("inproc", "cli"),
        default="inproc",
        help="attach netmon in this process, or run `netmon --json` as a subprocess",
    )
    parser.add_argument(
        "--netmon", default=str(HERE.parent / ".venv" / "bin" / "netmon"), help="for --attach cli"
    )
    parser.add_argument("--interval", type=int, default=1000, help="ms, for --attach cli")
    parser.add_argument(
        "--no-bpf-stats",
        dest="bpf_stats",
        action="store_false",
        help="leave kernel.bpf_stats_enabled alone (its own cost is then not in the timings)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    args.probes = [p for p in args.probes.split(",") if p]
    if os.geteuid() != 0:
        print("overhead: run as root (BPF programs and bpf_stats need it)", file=sys.stderr)
        return 3
    started = time.monotonic()
    report = run(args)
    report["duration_s"] = round(time.monotonic() - started, 1)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
