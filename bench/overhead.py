#!/usr/bin/env python3
"""How much netmon's probes slow down a syscall-heavy program.

The workloads come from bench/udp_send_loop.c, compiled here with gcc; each
runs N timed iterations of one-byte UDP traffic on loopback, on one CPU (the
last, unless --cpu says otherwise: a loop left to the scheduler moves between
CPUs, which slows it and makes its time per iteration vary more):

  sendrecv  an unconnected sendto() to a bound receiver, then recv() of it
  send      a connected socket, send() only
  sendto    an unconnected socket, sendto() only

(default: sendrecv,send). Each is run under several configurations, side by
side in one run:

  none         nothing attached (the baseline)
  netmon       netmon's probes, default mode (auto); netmon:socket and
               netmon:syscalls pick a mode
  noop         the floor: BPF programs that do nothing, on
               sock:sock_send_length and sock:sock_recv_length
               (noop:sendto: one on syscalls:sys_enter_sendto instead)
  nethogs      `nethogs -t -a -C` running (skipped when not installed)
  netmon@against  with --against CHECKOUT: another checkout's netmon probes,
               held by that checkout's own copy of this script

Every configuration is attached by a process of its own, started for the
round and gone before the next configuration runs, so nothing one leaves
behind can slow down another. netmon's probes are opened with its
LiveSource and not polled while the loops run: the pure probe cost
(`--attach cli` runs `netmon --json` instead, poller included, names on, in
a private mount namespace whose resolver is a closed loopback port: see
bench/benchproc.py, private_etc). Each round
runs every configuration in a rotated order, so drift and background load
hit every configuration alike.

The report gives the median time per iteration, the ratio to the baseline
(median / median), the range of the per-round ratios and the ratio of the
fastest runs, which background load disturbs least. For netmon it checks
that the bytes counted for each loop are exactly the bytes it sent and
received. With bpf_stats (default), each attachment also runs every workload
once more, untimed, with the kernel's BPF run-time statistics on (they add
their own cost to every program run), to report how often each BPF program
ran and how long it took.

Run as root:  .venv/bin/python bench/overhead.py [--json] [--rounds R] [-n N]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import select
import shlex
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from benchproc import private_etc

HERE = Path(__file__).resolve().parent
LOOP_SOURCE = HERE / "udp_send_loop.c"
WORKLOADS = ("sendrecv", "send", "sendto")
DEFAULT_WORKLOADS = "sendrecv,send"
BASELINE = "none"
DEFAULT_CONFIGS = "netmon,noop,nethogs"
NETHOGS_ARGS = "-t -a -C"  # trace mode; all devices incl. loopback; TCP and UDP
STATS_SYSCTL = Path("/proc/sys/kernel/bpf_stats_enabled")
ATTACH_TIMEOUT_S = 180.0  # compiling with BCC on a loaded 2-CPU machine can be slow

# The floor: programs that run on the same events as netmon's and do nothing.
NOOP_PROGRAMS = {
    "noop": (
        "TRACEPOINT_PROBE(sock, sock_send_length) { return 0; }\n"
        "TRACEPOINT_PROBE(sock, sock_recv_length) { return 0; }\n"
    ),
    "noop:sendto": "TRACEPOINT_PROBE(syscalls, sys_enter_sendto) { return 0; }\n",
}


# ----------------------------------------------------------------- workload
@dataclass(frozen=True)
class LoopResult:
    ns_per_iter: float
    iterations: int  # including warm-up
    bytes_sent: int
    bytes_recv: int
    pid: int


def compile_loop(workdir: Path) -> Path:
    binary = workdir / "udp_send_loop"
    gcc = shutil.which("gcc")
    if gcc is None:
        sys.exit("overhead: gcc not found (make install installs it)")
    subprocess.run([gcc, "-O2", "-Wall", "-o", str(binary), str(LOOP_SOURCE)], check=True)
    return binary


def run_loop(
    binary: Path, workload: str, n: int, warmup: int, cpu: int | None = None
) -> LoopResult:
    """One run of the loop; on CPU `cpu` only, if given."""
    proc = subprocess.Popen(
        [str(binary), workload, str(n), str(warmup)],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=None if cpu is None else (lambda: os.sched_setaffinity(0, {cpu})),
    )
    out, _ = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{binary.name} {workload} exited with {proc.returncode}")
    ns, iterations, sent, received = out.split()
    return LoopResult(float(ns), int(iterations), int(sent), int(received), proc.pid)


# ----------------------------------------------------------------- bpf_stats
BPF_ENABLE_STATS = 32
BPF_STATS_RUN_TIME = 0


def _enable_stats_fd() -> int | None:
    """bpf(BPF_ENABLE_STATS): run-time statistics stay on while the fd is open.

    Unlike the sysctl, this is counted per holder, so another tool switching
    kernel.bpf_stats_enabled off in the middle of the run cannot disturb it.
    """
    from netmon.sources.bpf_link import BpfError, bpf

    attr = ctypes.create_string_buffer(struct.pack("I", BPF_STATS_RUN_TIME), 16)
    try:
        return bpf(BPF_ENABLE_STATS, attr)
    except BpfError:
        return None


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


def stats_already_on() -> bool:
    """Someone else has bpf_stats on: every program run then pays for it."""
    try:
        return STATS_SYSCTL.read_text().strip() != "0"
    except OSError:
        return False


ProgStats = dict[int, tuple[int, int]]  # prog id -> (run_cnt, run_time_ns)


def read_prog_stats(pid: int) -> ProgStats:
    """run_cnt and run_time_ns of every BPF program that process `pid` holds."""
    stats: ProgStats = {}
    try:
        entries = list(Path(f"/proc/{pid}/fdinfo").iterdir())
    except OSError:
        return stats
    for entry in entries:
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

    Another tool (or another netmon) tracing the same events slows every
    configuration down and makes the ratios look smaller than they are.
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


def foreign_packet_sockets(exclude: set[int]) -> dict[int, int]:
    """pid -> packet sockets (nethogs, tcpdump...) held by processes not in `exclude`.

    A packet tap sees every loopback datagram: it slows every configuration
    down, like a foreign tracing program.
    """
    try:
        lines = Path("/proc/net/packet").read_text().splitlines()[1:]
    except OSError:
        return {}
    inodes = {f"socket:[{line.split()[-1]}]" for line in lines if line.split()}
    holders: dict[int, int] = {}
    if not inodes:
        return holders
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) in exclude:
            continue
        try:
            links = [os.readlink(fd) for fd in (proc / "fd").iterdir()]
        except OSError:
            continue
        count = sum(link in inodes for link in links)
        if count:
            holders[int(proc.name)] = count
    return holders


def stats_delta(before: ProgStats, after: ProgStats) -> ProgStats:
    return {
        prog: (cnt - before.get(prog, (0, 0))[0], ns - before.get(prog, (0, 0))[1])
        for prog, (cnt, ns) in after.items()
    }


def short_name(name: str) -> str:
    return name.removeprefix("tracepoint__").replace("__", ":", 1)


# ------------------------------------------- the holder (a child process)
@dataclass(frozen=True)
class Counted:
    """What netmon counted for the loops."""

    bytes: dict[int, tuple[int, int]]  # loop pid -> (bytes sent, bytes received)
    dropped: int  # flows its kernel table could not keep (others' traffic can fill it)


def _prog_id_of_fd(fd: int) -> int | None:
    for line in Path(f"/proc/self/fdinfo/{fd}").read_text().splitlines():
        if line.startswith("prog_id:"):
            return int(line.split(":", 1)[1])
    return None


def _bcc_program_names(bpf: Any) -> dict[int, str]:
    # BCC keeps the loaded programs in BPF.funcs (name -> Function with fd).
    names: dict[int, str] = {}
    for name, fn in bpf.funcs.items():
        prog_id = _prog_id_of_fd(fn.fd)
        if prog_id is not None:
            names[prog_id] = short_name(name.decode() if isinstance(name, bytes) else name)
    return names


class Holder(Protocol):
    mode: str

    def program_names(self) -> dict[int, str]: ...

    def count(self, pids: list[int]) -> Counted | None: ...

    def close(self) -> None: ...


class NetmonHolder:
    """netmon's LiveSource, opened and then left alone until the loops end."""

    def __init__(self, probes: str) -> None:
        from netmon.sources.live import LiveSource

        self.source = LiveSource.open(probes=probes)
        self.mode = self.source.mode

    def program_names(self) -> dict[int, str]:
        return _bcc_program_names(getattr(self.source, "_bpf"))  # noqa: B009

    def count(self, pids: list[int]) -> Counted:
        sample = self.source.read()
        counted = {pid: (0, 0) for pid in pids}
        for key, counters in sample.flows.items():
            if key.pid in counted:
                sent, recv = counted[key.pid]
                counted[key.pid] = (sent + counters.bytes_sent, recv + counters.bytes_recv)
        return Counted(counted, sample.dropped)

    def close(self) -> None:
        self.source.close()


class NoopHolder:
    """Throw-away programs that only return: the cost of being attached at all."""

    def __init__(self, spec: str) -> None:
        from netmon.sources.live import import_bcc

        self.bpf = import_bcc().BPF(text=NOOP_PROGRAMS[spec])
        self.mode = spec

    def program_names(self) -> dict[int, str]:
        return _bcc_program_names(self.bpf)

    def count(self, pids: list[int]) -> None:
        return None

    def close(self) -> None:
        self.bpf.cleanup()


def hold(spec: str) -> int:
    """Child side of a configuration: attach, say so, wait for the parent's
    list of loop pids, report what was counted for them, detach, exit.

    One line of JSON each way on stdin/stdout; anything a library prints is
    sent to stderr so it cannot garble that protocol.
    """
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)

    def say(obj: dict[str, Any]) -> None:
        out.write(json.dumps(obj) + "\n")
        out.flush()

    holder: Holder
    try:
        if spec in NOOP_PROGRAMS:
            holder = NoopHolder(spec)
        else:
            holder = NetmonHolder(spec.split(":", 1)[1] if ":" in spec else "auto")
    except Exception as exc:  # reported to the parent, which stops the run
        say({"error": f"{type(exc).__name__}: {exc}"})
        return 1
    try:
        say({"mode": holder.mode, "programs": holder.program_names()})
        line = sys.stdin.readline()
        pids = json.loads(line)["pids"] if line else []
        counted = holder.count(pids)
        if counted is None:
            say({"counted": None})
        else:
            per_pid = {str(p): c for p, c in counted.bytes.items()}
            say({"counted": per_pid, "dropped": counted.dropped})
    finally:
        holder.close()
    return 0


# ------------------------------------------- attaching (the parent's side)
class Attached(Protocol):
    mode: str  # what actually ran, e.g. "socket" for netmon in auto mode
    pid: int  # the process holding the BPF programs, if any

    def program_names(self) -> dict[int, str]: ...

    def finish(self, loop_pids: list[int]) -> Counted | None:
        """Detach; return the bytes counted for each loop pid (None: not a counter)."""
        ...


def _read_line(stream: IO[bytes], timeout: float) -> bytes:
    ready, _, _ = select.select([stream], [], [], timeout)
    return stream.readline() if ready else b""


def _stderr_text(f: IO[bytes]) -> str:
    f.seek(0)
    return f.read().decode(errors="replace").strip()


class HeldProcess:
    """A configuration attached by `overhead.py --hold SPEC` in its own process."""

    def __init__(self, spec: str, against: Path | None = None) -> None:
        self.spec = spec
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in finish)
        command = [sys.executable, str(Path(__file__).resolve()), "--hold", spec]
        env = None
        if against is not None:  # the other checkout's netmon, and its own copy of this script
            command = [sys.executable, "-S", str(against / "bench" / "overhead.py"), "--hold"]
            command.append(spec.removesuffix("@against"))
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(against), *_site_dirs()])}
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, env=env
        )
        self.pid = self.proc.pid
        assert self.proc.stdout is not None
        line = _read_line(self.proc.stdout, ATTACH_TIMEOUT_S)
        reply: dict[str, Any] = json.loads(line) if line else {"error": "no answer"}
        if "error" in reply:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(
                f"attaching {spec} failed: {reply['error']}\n{_stderr_text(self._stderr)}"
            )
        self.mode = str(reply["mode"])
        self._names = {int(k): str(v) for k, v in reply["programs"].items()}

    def program_names(self) -> dict[int, str]:
        return self._names

    def finish(self, loop_pids: list[int]) -> Counted | None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write((json.dumps({"pids": loop_pids}) + "\n").encode())
            self.proc.stdin.flush()
            line = _read_line(self.proc.stdout, 60)
        finally:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not line or self.proc.returncode != 0:
            raise RuntimeError(
                f"{self.spec} holder exited with {self.proc.returncode}: "
                + _stderr_text(self._stderr)
            )
        self._stderr.close()
        reply = json.loads(line)
        if reply["counted"] is None:
            return None
        per_pid = {int(pid): (int(s), int(r)) for pid, (s, r) in reply["counted"].items()}
        return Counted(per_pid, int(reply["dropped"]))


class NetmonCli:
    """`netmon --json --probes MODE` as its own process, poller included."""

    def __init__(self, probes: str, netmon: list[str], interval_ms: int) -> None:
        self.mode = probes
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in finish)
        self.proc = subprocess.Popen(
            [*netmon, "--json", "--probes", probes, "--interval", str(interval_ms)],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        self.pid = self.proc.pid
        assert self.proc.stdout is not None
        if not _read_line(self.proc.stdout, ATTACH_TIMEOUT_S):
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(
                f"netmon --probes {probes} gave no first snapshot: " + _stderr_text(self._stderr)
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

    def finish(self, loop_pids: list[int]) -> Counted:
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=60)
        self._stderr.close()
        lines = out.decode().splitlines()
        if self.proc.returncode != 0 or not lines:
            raise RuntimeError(f"netmon exited with {self.proc.returncode}")
        final = json.loads(lines[-1])
        counted = {pid: (0, 0) for pid in loop_pids}
        for flow in final["flows"]:
            if flow["pid"] in counted:
                sent, recv = counted[flow["pid"]]
                counted[flow["pid"]] = (sent + flow["bytes_sent"], recv + flow["bytes_recv"])
        return Counted(counted, int(final.get("dropped", 0)))


class Nethogs:
    """nethogs in trace mode; attached once its first refresh is printed."""

    def __init__(self, binary: str, args: list[str]) -> None:
        self.mode = " ".join(["nethogs", *args])
        self._out = tempfile.TemporaryFile()  # noqa: SIM115 (closed in finish)
        self.proc = subprocess.Popen(
            [binary, *args], stdout=self._out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        self.pid = self.proc.pid
        deadline = time.monotonic() + 30
        while not self._output().count(b"Refreshing:"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait()
                raise RuntimeError(f"{self.mode} did not start: {self._output()[-500:]!r}")
            time.sleep(0.05)

    def _output(self) -> bytes:
        self._out.seek(0)
        return self._out.read()

    def program_names(self) -> dict[int, str]:
        return {}

    def finish(self, loop_pids: list[int]) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._out.close()
        return None


def _site_dirs() -> list[str]:
    """This interpreter's package directories, for a child started with -S
    (so that this checkout's editable install does not shadow the other's)."""
    import site

    dirs = [*site.getsitepackages(), "/usr/lib/python3/dist-packages"]
    return [d for d in dirs if Path(d).is_dir()]


def attach(config: str, args: argparse.Namespace) -> Attached:
    if config == "nethogs":
        return Nethogs(args.nethogs_path, shlex.split(args.nethogs_args))
    if config.startswith("netmon") and "@" not in config and args.attach == "cli":
        probes = config.split(":", 1)[1] if ":" in config else "auto"
        return NetmonCli(probes, [*args.etc_prefix, args.netmon], args.interval)
    return HeldProcess(config, args.against if config.endswith("@against") else None)


def check_config(config: str) -> str | None:
    """Why `config` is not a configuration this script knows, or None."""
    if config in NOOP_PROGRAMS or config in ("netmon", "nethogs"):
        return None
    if config in ("netmon@against", "netmon:socket@against"):
        return None
    if config.startswith("netmon:") and config.split(":", 1)[1] in ("auto", "socket", "syscalls"):
        return None
    return f"unknown configuration {config!r}"


# ------------------------------------------------------------------ the run
@dataclass
class ConfigResult:
    """All rounds of one (workload, configuration)."""

    ns: list[float] = field(default_factory=list)
    sent: int = 0
    recv: int = 0
    counted_sent: int | None = None  # None: the configuration does not count
    counted_recv: int | None = None
    iterations: int = 0  # timed runs, warm-up included


@dataclass
class ProgramResult:
    runs: int = 0
    time_ns: int = 0
    iterations: int = 0  # of the stats runs, warm-up included


def label(config: str, resolved: dict[str, str]) -> str:
    mode = resolved.get(config)
    if config.startswith("netmon") and mode is not None and not config.endswith(":" + mode):
        return f"{config} ({mode})"
    return config


def stats_runs(
    binary: Path,
    attached: Attached,
    config: str,
    args: argparse.Namespace,
    programs: dict[tuple[str, str, str], ProgramResult],
) -> list[LoopResult]:
    """One untimed run of each workload with bpf_stats on; adds to `programs`."""
    names = attached.program_names()
    runs = []
    for workload in args.workloads:
        with bpf_stats_enabled():
            before = read_prog_stats(attached.pid)
            extra = run_loop(binary, workload, args.n, args.warmup, args.cpu)
            after = read_prog_stats(attached.pid)
        runs.append(extra)
        for prog, (cnt, ns) in stats_delta(before, after).items():
            name = names.get(prog, "(programs, names unknown)")
            pr = programs.setdefault((config, workload, name), ProgramResult())
            pr.runs += cnt
            pr.time_ns += ns
            pr.iterations += extra.iterations
    return runs


def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[tuple[str, str], ConfigResult] = {}
    programs: dict[tuple[str, str, str], ProgramResult] = {}
    resolved: dict[str, str] = {}
    foreign: dict[int, int] = {}  # pid -> tracing programs held by others during runs
    taps: dict[int, int] = {}  # pid -> packet sockets held by others during runs
    dropped: dict[str, int] = {}  # config -> flows netmon's kernel table dropped
    stats_on_while_timed = False
    configs = [BASELINE, *args.configs]
    me = os.getpid()

    with tempfile.TemporaryDirectory(prefix="netmon-bench-") as tmp:
        binary = compile_loop(Path(tmp))
        args.etc_prefix = private_etc(Path(tmp))
        for rnd in range(args.rounds):
            shift = rnd % len(configs)
            for config in configs[shift:] + configs[:shift]:
                attached = None if config == BASELINE else attach(config, args)
                if attached is not None:
                    resolved[config] = attached.mode
                loops: list[tuple[str, LoopResult]] = []
                counted: Counted | None = None
                try:
                    holder = {me} if attached is None else {me, attached.pid}
                    for pid, count in foreign_tracing_programs(holder).items():
                        foreign[pid] = max(foreign.get(pid, 0), count)
                    for pid, count in foreign_packet_sockets(holder).items():
                        taps[pid] = max(taps.get(pid, 0), count)
                    stats_on_while_timed |= stats_already_on()
                    if args.bpf_stats and attached is not None:
                        for extra in stats_runs(binary, attached, config, args, programs):
                            loops.append(("(stats)", extra))
                    # Last, so that netmon counts them right after: a busy table
                    # (others' flows) has less time to evict the loops' flows.
                    for workload in args.workloads:
                        result = run_loop(binary, workload, args.n, args.warmup, args.cpu)
                        loops.append((workload, result))
                finally:
                    if attached is not None:
                        counted = attached.finish([loop.pid for _, loop in loops])
                if counted is not None:
                    dropped[config] = dropped.get(config, 0) + counted.dropped
                for workload, loop in loops:
                    if workload == "(stats)":
                        continue
                    res = results.setdefault((workload, config), ConfigResult())
                    res.ns.append(loop.ns_per_iter)
                    res.sent += loop.bytes_sent
                    res.recv += loop.bytes_recv
                    res.iterations += loop.iterations
                    if counted is not None:
                        sent, recv = counted.bytes.get(loop.pid, (0, 0))
                        res.counted_sent = (res.counted_sent or 0) + sent
                        res.counted_recv = (res.counted_recv or 0) + recv
                if not args.json:
                    print(f"  round {rnd + 1}/{args.rounds}: {config} done", file=sys.stderr)

    rows = []
    for workload in args.workloads:
        base = results[(workload, BASELINE)]
        for config in configs:
            res = results[(workload, config)]
            ratios = [b / a for a, b in zip(base.ns, res.ns, strict=True)]
            rows.append(
                {
                    "workload": workload,
                    "config": config,
                    "label": label(config, resolved),
                    "resolved": resolved.get(config, config),
                    "ns_per_iter": statistics.median(res.ns),
                    "baseline_ns_per_iter": statistics.median(base.ns),
                    "ratio": statistics.median(res.ns) / statistics.median(base.ns),
                    "ratio_best": min(res.ns) / min(base.ns),
                    "ratio_per_round_min": min(ratios),
                    "ratio_per_round_max": max(ratios),
                    "ns_all": res.ns,
                    "bytes_sent": res.sent,
                    "bytes_recv": res.recv,
                    "bytes_counted_sent": res.counted_sent,
                    "bytes_counted_recv": res.counted_recv,
                    "flows_dropped": dropped.get(config) if res.counted_sent is not None else None,
                    "exact": None
                    if res.counted_sent is None
                    else (res.counted_sent, res.counted_recv) == (res.sent, res.recv),
                }
            )
    progs: list[dict[str, Any]] = []
    order = {name: i for i, name in enumerate([*configs, *args.workloads])}
    for (config, workload, name), pr in sorted(
        programs.items(), key=lambda kv: (order[kv[0][0]], order[kv[0][1]], kv[0][2])
    ):
        if pr.runs == 0:
            continue
        progs.append(
            {
                "config": config,
                "label": label(config, resolved),
                "workload": workload,
                "program": name,
                "run_cnt": pr.runs,
                "run_time_ns": pr.time_ns,
                "ns_per_run": pr.time_ns / pr.runs,
                "runs_per_iter": pr.runs / pr.iterations,
                "ns_per_iter": pr.time_ns / pr.iterations,
            }
        )
    return {
        "workloads": {
            "sendrecv": "one-byte UDP sendto() to a bound receiver + recv() on loopback",
            "send": "one-byte UDP send() on a connected socket on loopback, never read",
            "sendto": "one-byte UDP sendto() on loopback, never read",
        },
        "source": "bench/udp_send_loop.c",
        "n_per_run": args.n,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "cpu": args.cpu,
        "configs": configs,
        "skipped": args.skipped,
        "attach": args.attach,
        "bpf_stats": args.bpf_stats,
        "bpf_stats_on_during_timing": stats_on_while_timed,
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "foreign_tracing_programs": {str(pid): n for pid, n in foreign.items()},
        "foreign_packet_sockets": {str(pid): n for pid, n in taps.items()},
        "results": rows,
        "programs": progs,
    }


def print_table(report: dict[str, Any]) -> None:
    print(
        f"netmon overhead: one-byte UDP on loopback ({report['source']})\n"
        f"{report['n_per_run']} timed iterations per run after {report['warmup']} warm-up, "
        f"{report['rounds']} rounds in rotated order, netmon attached "
        f"{'in its own process (LiveSource)' if report['attach'] == 'inproc' else 'as the CLI'}, "
        f"kernel {report['kernel']}, {report['cpus']} CPUs, "
        + ("loops unpinned" if report.get("cpu") is None else f"loops on CPU {report['cpu']}")
    )
    for workload in dict.fromkeys(r["workload"] for r in report["results"]):
        print(f"  {workload}: {report['workloads'][workload]}")
    for config, why in report["skipped"].items():
        print(f"  {config}: skipped ({why})")
    print()
    if report["foreign_tracing_programs"]:
        print(
            "WARNING: other processes held tracing BPF programs during the runs "
            "(pid: programs): "
            + ", ".join(f"{pid}: {n}" for pid, n in report["foreign_tracing_programs"].items())
            + "\nthey slow every configuration down and shrink the ratios.\n"
        )
    if report["foreign_packet_sockets"]:
        print(
            "WARNING: other processes held packet sockets during the runs (pid: sockets): "
            + ", ".join(f"{pid}: {n}" for pid, n in report["foreign_packet_sockets"].items())
            + "\nthey tap every loopback packet and shrink the ratios.\n"
        )
    if report["bpf_stats_on_during_timing"]:
        print("WARNING: kernel.bpf_stats_enabled was on: the timings include its cost.\n")
    width = max(len(r["label"]) for r in report["results"])
    print(
        f"{'workload':<9} {'config':<{width}} {'ns/iter':>8} {'ratio':>7} "
        f"{'per-round':>12} {'best/best':>9}  counted/moved bytes"
    )
    for r in report["results"]:
        line = f"{r['workload']:<9} {r['label']:<{width}} {r['ns_per_iter']:>8.0f}"
        if r["config"] != BASELINE:
            line += (
                f" {r['ratio']:>6.2f}x "
                f"{r['ratio_per_round_min']:>6.2f}-{r['ratio_per_round_max']:.2f}x "
                f"{r['ratio_best']:>8.2f}x"
            )
        if r["exact"] is not None:
            line += (
                f"  {'exact' if r['exact'] else 'MISMATCH'}: sent "
                f"{r['bytes_counted_sent']}/{r['bytes_sent']}"
            )
            if r["bytes_recv"]:
                line += f", received {r['bytes_counted_recv']}/{r['bytes_recv']}"
            if not r["exact"] and r["flows_dropped"]:
                line += (
                    f" (its kernel table dropped {r['flows_dropped']} flows: "
                    "other traffic filled it)"
                )
        print(line)
    if not report["bpf_stats"]:
        print("\n(--no-bpf-stats: no per-program figures)")
        return
    # Programs that ran for other processes' events only are in the JSON.
    shown = [p for p in report["programs"] if p["runs_per_iter"] >= 0.01]
    if not shown:
        return
    print(
        "\nBPF programs, from extra untimed runs with bpf_stats on (events of all "
        "processes count;\nprograms that ran less than once per 100 iterations left out):"
    )
    pwidth = max(len(p["program"]) for p in shown)
    lwidth = max(len(p["label"]) for p in shown)
    print(
        f"{'workload':<9} {'config':<{lwidth}} {'program':<{pwidth}} "
        f"{'runs/iter':>9} {'ns/run':>7} {'ns/iter':>8}"
    )
    for p in shown:
        print(
            f"{p['workload']:<9} {p['label']:<{lwidth}} {p['program']:<{pwidth}} "
            f"{p['runs_per_iter']:>9.2f} {p['ns_per_run']:>7.0f} {p['ns_per_iter']:>8.0f}"
        )


def parse_cpu(text: str) -> int | None:
    if text == "none":
        return None
    if text == "last":
        return max(os.sched_getaffinity(0))
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("want a CPU number, 'last' or 'none'") from None


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-n", type=int, default=200_000, help="timed iterations per run")
    parser.add_argument("--warmup", type=int, default=10_000, help="untimed iterations first")
    parser.add_argument("--rounds", type=int, default=7, help="rounds (default: 7)")
    parser.add_argument(
        "--cpu",
        type=parse_cpu,
        default=parse_cpu("last"),
        metavar="N|last|none",
        help="run the loops on this CPU only (default: the last one). Left to the "
        "scheduler, the loop migrates between CPUs, which slows the baseline and so "
        "makes every ratio smaller",
    )
    parser.add_argument(
        "--workloads",
        default=DEFAULT_WORKLOADS,
        help=f"comma-separated, from {', '.join(WORKLOADS)} (default: {DEFAULT_WORKLOADS})",
    )
    parser.add_argument(
        "--configs",
        default=DEFAULT_CONFIGS,
        help="comma-separated configurations measured beside the baseline: netmon, "
        "netmon:socket, netmon:syscalls, noop, noop:sendto, nethogs "
        f"(default: {DEFAULT_CONFIGS})",
    )
    parser.add_argument(
        "--attach",
        choices=("inproc", "cli"),
        default="inproc",
        help="netmon configurations: open its LiveSource (no polling) in a process of "
        "their own, or run `netmon --json` (poller included)",
    )
    parser.add_argument(
        "--netmon", default=str(HERE.parent / ".venv" / "bin" / "netmon"), help="for --attach cli"
    )
    parser.add_argument("--interval", type=int, default=1000, help="ms, for --attach cli")
    parser.add_argument(
        "--against",
        type=Path,
        help="another checkout of netmon (its root, with its bpf/ and bench/): adds the "
        "configuration netmon@against, that build's probes, beside this build's",
    )
    parser.add_argument(
        "--nethogs-args",
        default=NETHOGS_ARGS,
        help=f"nethogs options for the nethogs configuration (default: {NETHOGS_ARGS!r})",
    )
    parser.add_argument(
        "--no-bpf-stats",
        dest="bpf_stats",
        action="store_false",
        help="skip the extra runs with the kernel's BPF statistics (per-program figures)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--hold", help=argparse.SUPPRESS)  # internal: a configuration's process
    args = parser.parse_args()
    if args.hold is not None:
        return hold(args.hold)

    args.workloads = [w for w in args.workloads.split(",") if w]
    args.configs = list(dict.fromkeys(c for c in args.configs.split(",") if c))
    for workload in args.workloads:
        if workload not in WORKLOADS:
            parser.error(f"unknown workload {workload!r}")
    if args.against is not None:
        if not (args.against / "bench" / "overhead.py").is_file():
            parser.error(f"--against: no bench/overhead.py in {args.against}")
        args.against = args.against.resolve()
        args.configs += [f"{c}@against" for c in args.configs if c in ("netmon", "netmon:socket")]
    for config in args.configs:
        problem = check_config(config)
        if problem is not None:
            parser.error(problem)
    if not args.workloads or args.rounds < 1 or args.n < 1:
        parser.error("need at least one workload, one round and one iteration")
    args.skipped = {}
    args.nethogs_path = shutil.which("nethogs")
    if "nethogs" in args.configs and args.nethogs_path is None:
        args.configs.remove("nethogs")
        args.skipped["nethogs"] = "not installed"
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
