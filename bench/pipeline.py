#!/usr/bin/env python3
"""What netmon's per-interval work costs with many flows, without the kernel.

    .venv/bin/python bench/pipeline.py [--flows 10000] [--pids 1000] [--idle-timeout S] [--json]
    .venv/bin/python bench/pipeline.py --against REV [--rounds 5]

A fake kernel (here, not in netmon/) holds N flows over ~P processes, IPv4
and IPv6, and moves bytes on every flow before every interval. Its maps are
handed to netmon's real read path in the shape BCC's batch lookup gives them;
then netmon's real metrics engine, the write-back of rates, the JSON Lines
encoding, and the table's view build and one frame (the rows the painter
gets; curses itself is measured by bench/render.py). Each stage is timed on
every interval; the report gives the median ms per interval of each stage
and the totals of the two outputs:

  --json interval  = read + metrics + publish + names + detect + json
  table interval   = read + metrics + publish + names + detect + view + frame

`--names on` adds the peers' host names (netmon.names: the resolver's
per-interval request and the names attached to the snapshot; the lookups
themselves answer at once from a fake, in the resolver's worker threads,
and are left to settle before the timed intervals, so every address has its
answer: the steady state). `--names both` runs the two configurations side
by side on the same fake kernel, alternating which goes first, and prints
both with their ratio.

`detect` is the alert path: the detectors of `--detectors` (netmon's
default set unless given) and the marking of the flows they flag.

`--json` prints the figures as one JSON object. `--against REV` checks REV
out in a temporary git worktree and runs its bench/pipeline.py and this one
alternately, `--rounds` times each, and prints both sets of medians (the
median over rounds of each round's median) with their ratio.

`--scan N` makes N of the flows one process's scan of N ports of one host:
the fanout detector fires on it, and the alert path marks its flows (at
most 64 of them) in every interval's table.

`--idle-timeout S` has the source track idle flows as `netmon --idle-timeout`
does (every flow here moves on every interval, so none is removed: this
times the tracking); 0, the default, leaves it off.

Figures depend on the machine and on what else runs on it: indicative only.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import gc
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

import netmon  # noqa: E402
from netmon.abi import load_abi  # noqa: E402
from netmon.alerts.choice import DEFAULT_DETECTORS, make_detectors, parse_detectors  # noqa: E402
from netmon.alerts.feed import mark_flows  # noqa: E402
from netmon.alerts.manager import AlertManager  # noqa: E402
from netmon.export.snapshot_view import SnapshotView  # noqa: E402
from netmon.jsonl import dumps  # noqa: E402
from netmon.metrics import MetricsEngine  # noqa: E402
from netmon.model import RowFinder  # noqa: E402
from netmon.names import Resolver, TableNamer  # noqa: E402
from netmon.view import UIState, View, ViewSettings  # noqa: E402

MB = 1024 * 1024
ABI = load_abi()
STAGES = ("read", "metrics", "publish", "names", "detect", "json", "view", "frame")
NAMES = ["nginx", "postgres", "redis-server", "python3", "java", "node", "envoy", "chrome",
         "dnsmasq", "curl", "sshd", "中文进程"]  # fmt: skip


# -- the fake kernel: maps in the layout of bpf/netmon.h --------------------
# A copy of the C structs: BCC builds these types from the compiled program,
# which needs root. Keep in step with bpf/netmon.h.


class TrafficKey(ctypes.Structure):
    _fields_ = [("pid", ctypes.c_uint32), ("protocol", ctypes.c_uint8),
                ("family", ctypes.c_uint8), ("role", ctypes.c_uint8), ("pad", ctypes.c_uint8),
                ("port", ctypes.c_uint16), ("pad2", ctypes.c_uint16),
                ("remote_ip", ctypes.c_uint8 * 16)]  # fmt: skip


class TrafficStats(ctypes.Structure):
    _fields_ = [("bytes_sent", ctypes.c_uint64), ("bytes_recv", ctypes.c_uint64),
                ("packets_sent", ctypes.c_uint64), ("packets_recv", ctypes.c_uint64),
                ("named_ns", ctypes.c_uint64), ("comm", ctypes.c_char * 16),
                ("flags", ctypes.c_uint32), ("pad", ctypes.c_uint32),
                ("cgroup_id", ctypes.c_uint64)]  # fmt: skip


class FakeTable:
    """The part of BCC's table API netmon uses, over a dict of ctypes objects."""

    def __init__(self, key_type: Any, leaf_type: Any, max_entries: int) -> None:
        self.Key = key_type
        self.Leaf = leaf_type
        self.max_entries = max_entries
        self.data: dict[bytes, bytes] = {}

    def freeze(self) -> None:
        """Lay the entries out as the kernel's batch lookup copies them
        (done by the fake kernel, not timed as netmon's work)."""
        self.blob = (b"".join(self.data), b"".join(self.data.values()), len(self.data))

    def _pairs(self) -> Iterator[tuple[Any, Any]]:
        # Like BCC: arrays of max_entries, filled by the kernel, one object per entry.
        kblob, vblob, n = self.blob
        keys = (self.Key * self.max_entries)()
        values = (self.Leaf * self.max_entries)()
        ctypes.memmove(keys, kblob, len(kblob))
        ctypes.memmove(values, vblob, len(vblob))
        for i in range(n):
            yield keys[i], values[i]

    def items_lookup_batch(self) -> Iterator[tuple[Any, Any]]:
        return self._pairs()

    def items(self) -> list[tuple[Any, Any]]:
        self.freeze()
        return list(self._pairs())

    def items_update_batch(self, keys: Any, values: Any) -> None:
        # The kernel copies the arrays in; what it does with them is not netmon's cost.
        self.written = (bytes(keys), bytes(values))

    def __getitem__(self, key: Any) -> Any:
        return self.Leaf.from_buffer_copy(
            self.data.get(bytes(key), bytes(ctypes.sizeof(self.Leaf)))
        )

    def sum(self, key: Any) -> Any:
        """A per-CPU array's total for `key` (here: the one value)."""
        return self[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self.data[bytes(key)] = bytes(value)

    def __iter__(self) -> Iterator[Any]:
        return (self.Key.from_buffer_copy(k) for k in list(self.data))


class FakeKernel:
    """N flows of ~P processes; every flow moves bytes before every read."""

    def __init__(
        self, flows: int, pids: int, seed: int, churn: float = 0.0, scan: int = 0
    ) -> None:
        rnd = random.Random(seed)
        self.churn = churn
        self.rnd = rnd
        self.traffic = FakeTable(TrafficKey, TrafficStats, max(10240, flows))
        self.pid_stats = FakeTable(ctypes.c_uint32, TrafficStats, max(10240, flows))
        self.protocol_totals = FakeTable(ctypes.c_uint32, ctypes.c_uint64, 16)
        self.anomaly = FakeTable(TrafficKey, ctypes.c_uint64, max(10240, flows))
        self.counters = FakeTable(ctypes.c_int, ctypes.c_uint64, ABI.values["COUNTER_MAX"])
        self.exited = FakeTable(ctypes.c_uint32, ctypes.c_uint8, 1024)  # none exit here
        self.keys: list[bytes] = []
        self.stats: list[list[int]] = []  # bytes_sent, bytes_recv, packets_sent, packets_recv
        self.mean: list[float] = []  # bytes per interval of each flow
        self.pid_of: list[int] = []
        self.proto_of: list[int] = []
        pid_list = [2000 + 7 * i for i in range(pids)]
        self.comm = {pid: NAMES[i % len(NAMES)].encode()[:15] for i, pid in enumerate(pid_list)}
        self.pid_list = pid_list
        self.seen: set[bytes] = set()
        for i in range(min(scan, flows)):  # one process, one host, `scan` ports
            raw = self._scan_key(pid_list[0], 30000 + i)
            self.seen.add(raw)
            self.keys.append(raw)
            self.stats.append([0, 0, 0, 0])
            self.mean.append(200.0)
            self.pid_of.append(pid_list[0])
            self.proto_of.append(ABI.values["PROTO_UDP"])
        while len(self.keys) < flows:
            raw, pid, protocol = self._new_key()
            self.keys.append(raw)
            self.stats.append([0, 0, 0, 0])
            self.mean.append(rnd.expovariate(1 / 20_000))
            self.pid_of.append(pid)
            self.proto_of.append(protocol)
        self.flows_created = flows
        self.now_ns = 1_000_000_000
        self.cgroup_of: dict[int, int] = {}  # pid -> cgroup id, see with_cgroups

    def with_cgroups(self, ids: list[int]) -> None:
        """Put the processes in these cgroups, in turn."""
        self.cgroup_of = {pid: ids[i % len(ids)] for i, pid in enumerate(self.pid_list)}

    @staticmethod
    def _scan_key(pid: int, port: int) -> bytes:
        k = TrafficKey()
        k.pid = pid
        k.family = ABI.values["FAMILY_IPV4"]
        k.protocol = ABI.values["PROTO_UDP"]
        k.role = ABI.values["ROLE_CLIENT"]
        k.port = port
        k.remote_ip[:] = [10, 66, 66, 66] + [0] * 12
        return bytes(k)

    def _new_key(self) -> tuple[bytes, int, int]:
        rnd, proto = self.rnd, ABI.values
        while True:
            pid = rnd.choice(self.pid_list)
            k = TrafficKey()
            k.pid = pid
            v6 = rnd.random() < 0.3
            k.family = proto["FAMILY_IPV6"] if v6 else proto["FAMILY_IPV4"]
            k.protocol = proto["PROTO_TCP"] if rnd.random() < 0.3 else proto["PROTO_UDP"]
            server = rnd.random() < 0.4
            k.role = proto["ROLE_SERVER"] if server else proto["ROLE_CLIENT"]
            k.port = rnd.choice([53, 80, 443, 123, 5353, 8125, 6379, 5432]) if not server else (
                rnd.choice([53, 443, 8080, 9000]))  # fmt: skip
            if v6:
                ip = bytes([0x20, 0x01, 0x0D, 0xB8]) + rnd.randbytes(12)
            else:
                ip = bytes([10, rnd.randrange(256), rnd.randrange(256), rnd.randrange(1, 255)])
                ip += bytes(12)
            k.remote_ip[:] = list(ip)
            raw = bytes(k)
            if raw not in self.seen:
                self.seen.add(raw)
                return raw, pid, k.protocol

    def step(self, dt_ns: int) -> None:
        """One interval of traffic on every flow, then the maps as the kernel
        would hold them. With churn, that share of the flows is replaced by
        new ones first (the kernel's LRU map evicting old flows)."""
        self.now_ns += dt_ns
        rnd = self.rnd
        for i in rnd.sample(range(len(self.keys)), round(self.churn * len(self.keys))):
            self.traffic.data.pop(self.keys[i], None)
            self.keys[i], self.pid_of[i], self.proto_of[i] = self._new_key()
            self.stats[i] = [0, 0, 0, 0]
            self.flows_created += 1
        per_pid: dict[int, list[int]] = {}
        per_proto: dict[int, int] = {}
        leaf = TrafficStats()
        leaf.named_ns = 1
        traffic = self.traffic.data
        for i, raw in enumerate(self.keys):
            s = self.stats[i]
            sent = int(rnd.expovariate(1 / self.mean[i])) + 1
            recv = int(rnd.expovariate(1 / self.mean[i])) + 1
            s[0] += sent
            s[1] += recv
            s[2] += 1 + sent // 1400
            s[3] += 1 + recv // 1400
            pid = self.pid_of[i]
            leaf.bytes_sent, leaf.bytes_recv, leaf.packets_sent, leaf.packets_recv = s
            leaf.comm = self.comm[pid]
            leaf.cgroup_id = self.cgroup_of.get(pid, 0)
            traffic[raw] = bytes(leaf)
            p = per_pid.setdefault(pid, [0, 0, 0, 0])
            for j in range(4):
                p[j] += s[j]
            per_proto[self.proto_of[i]] = per_proto.get(self.proto_of[i], 0) + sent + recv
        for pid, p in per_pid.items():
            leaf.bytes_sent, leaf.bytes_recv, leaf.packets_sent, leaf.packets_recv = p
            leaf.comm = self.comm[pid]
            leaf.cgroup_id = self.cgroup_of.get(pid, 0)
            self.pid_stats.data[bytes(ctypes.c_uint32(pid))] = bytes(leaf)
        for proto, n in per_proto.items():
            key = bytes(ctypes.c_uint32(proto))
            old = int.from_bytes(self.protocol_totals.data.get(key, bytes(8)), "little")
            self.protocol_totals.data[key] = (old + n).to_bytes(8, "little")
        self.counters.data[bytes(ctypes.c_int(ABI.values["COUNTER_FLOWS_CREATED"]))] = (
            self.flows_created.to_bytes(8, "little"))  # fmt: skip
        self.counters.data.setdefault(bytes(ctypes.c_int(ABI.values["COUNTER_FLOW_DROPS"])),
                                      bytes(8))  # fmt: skip
        for table in (self.traffic, self.pid_stats):
            table.freeze()

    def bpf(self) -> dict[str, Any]:
        return {"traffic_map": self.traffic, "pid_stats": self.pid_stats,
                "protocol_totals": self.protocol_totals, "anomaly_map": self.anomaly,
                "counters": self.counters, "exited_pids": self.exited}  # fmt: skip


# -- netmon's per-interval path --------------------------------------------


class Pipeline:
    """The stages of one interval, each a call into netmon's own code."""

    def __init__(
        self,
        kernel: FakeKernel,
        cols: int,
        rows: int,
        idle_timeout_s: float = 0.0,
        names: bool = False,
        detectors: tuple[str, ...] = DEFAULT_DETECTORS,
    ) -> None:
        from netmon.sources.live import LiveSource, numpy_dtype

        class BenchSource(LiveSource):
            """The live source, with the kernel's batch copy of a map done
            by the fake kernel."""

            def _dump(self, name: str, table: Any) -> tuple[Any, Any]:
                keys, values, _ = table.blob
                return (np.frombuffer(keys, numpy_dtype(table.Key)).copy(),
                        np.frombuffer(values, numpy_dtype(table.Leaf)).copy())  # fmt: skip

        self.kernel = kernel
        self.source = BenchSource(kernel.bpf(), "socket", ABI)
        self._cgroup_tree = tempfile.TemporaryDirectory()
        self._use_cgroups(Path(self._cgroup_tree.name))
        if idle_timeout_s:
            self.source.retire_idle_after(idle_timeout_s)
        self.engine = MetricsEngine(0.4, 10 * MB, 1.0)
        self.view = View(ViewSettings(interval_s=1.0, alpha=0.4, threshold_bps=10 * MB))
        self.state = UIState()
        self.cols, self.rows = cols, rows
        self.resolver = Resolver(fake_lookup) if names else None
        self.namer = TableNamer(self.resolver) if self.resolver else None
        self.alerts = AlertManager(make_detectors(detectors, 10 * MB))
        self.row_finder = RowFinder()

    def _use_cgroups(self, tree: Path) -> None:
        """A directory tree standing in for the cgroup2 mount: 100 services
        and containers, the processes spread over them (a source without
        cgroup support, from an older build, ignores them)."""
        try:
            from netmon.cgroups import CgroupNames
        except ImportError:
            return
        ids = []
        for i in range(100):
            unit = f"system.slice/svc-{i}.service" if i % 2 else f"docker-{i:064x}.scope"
            (tree / unit).mkdir(parents=True)
            ids.append((tree / unit).stat().st_ino)
        self.kernel.with_cgroups(ids)
        self.source._cgroups = CgroupNames(tree)

    def interval(self) -> dict[str, float]:
        """One interval; ms per stage."""
        out: dict[str, Any] = {}
        times: dict[str, float] = {}

        def stage(name: str, fn: Callable[[], Any]) -> Any:
            t0 = time.perf_counter_ns()
            result = fn()
            times[name] = (time.perf_counter_ns() - t0) / 1e6
            return result

        sample = stage("read", self.source.read)
        snap = stage("metrics", lambda: self.engine.update(sample))
        stage("publish", lambda: self.source.publish_rates(self.engine.rates()))
        snap = stage("names", lambda: self.named(snap))

        def detect() -> Any:
            self.alerts.update(SnapshotView(snap))
            return mark_flows(snap, self.alerts, self.row_finder)

        out["snap"] = snap = stage("detect", detect)
        stage("json", lambda: dumps(snap))

        def view() -> None:
            self.view.set_snapshot(snap)
            self.view.rows(self.state)

        stage("view", view)
        stage("frame", lambda: self.view.frame(self.state, self.cols, self.rows))
        self.flows_shown = len(snap.flows)
        self.flagged = int(np.count_nonzero(snap.table.anomaly))
        self.names_shown = len(snap.table.names)
        return times

    def named(self, snap: Any) -> Any:
        """What netmon.names.NamingFeed does to each snapshot."""
        if self.namer is None:
            return snap
        return dataclasses.replace(snap, flows=self.namer.named(snap.table))

    def settled(self) -> bool:
        """Every address has had its answer (names off: always)."""
        r = self.resolver
        return r is None or (r.wait_idle(10.0) and r.lookups >= self.addresses)

    @property
    def addresses(self) -> int:
        return len({bytes(k)[-16:] for k in self.kernel.keys})


def fake_lookup(ip: str) -> str | None:
    """Three addresses in four have a name, of a common length."""
    if sum(map(ord, ip)) % 4 == 0:
        return None
    return "host-" + ip.replace(":", "-").replace(".", "-") + ".dc1.example.net"


JSON_STAGES = ("read", "metrics", "publish", "names", "detect", "json")
TABLE_STAGES = ("read", "metrics", "publish", "names", "detect", "view", "frame")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """One configuration (--names off or on), or both side by side."""
    configs = {"off": [False], "on": [True], "both": [False, True]}[args.names]
    kernel = FakeKernel(args.flows, args.pids, args.seed, args.churn, args.scan)
    pipes = [
        Pipeline(kernel, args.cols, args.rows, args.idle_timeout, names=n, detectors=args.detectors)
        for n in configs
    ]
    per_stage: list[dict[str, list[float]]] = [{s: [] for s in STAGES} for _ in pipes]
    warm = 0
    while True:  # untimed: the warm-up, and for names, until every answer is in
        kernel.step(1_000_000_000)
        for pipe in pipes:
            pipe.interval()
        warm += 1
        if warm >= args.warmup and all(p.settled() for p in pipes):
            break
    for i in range(args.intervals):
        kernel.step(1_000_000_000)
        gc.collect()  # the fake kernel's garbage is not netmon's
        order = range(len(pipes)) if i % 2 == 0 else reversed(range(len(pipes)))
        for n in order:
            times = pipes[n].interval()
            for s in STAGES:
                per_stage[n][s].append(times[s])
    results = [_result(args, pipe, stages) for pipe, stages in zip(pipes, per_stage, strict=True)]
    if len(results) == 1:
        return results[0]
    off, on = results
    return {**on, "names": "both", "names_off": off["median_ms"], "median_ms": on["median_ms"]}


def _result(
    args: argparse.Namespace, pipe: Pipeline, per_stage: dict[str, list[float]]
) -> dict[str, Any]:
    totals = {
        "json interval": [sum(per_stage[s][i] for s in JSON_STAGES)
                          for i in range(args.intervals)],
        "table interval": [sum(per_stage[s][i] for s in TABLE_STAGES)
                           for i in range(args.intervals)],
    }  # fmt: skip
    medians = {name: statistics.median(xs) for name, xs in {**per_stage, **totals}.items()}
    return {
        "names": "on" if pipe.resolver is not None else "off",
        "addresses": pipe.addresses,
        "names_shown": pipe.names_shown,
        "flows": args.flows,
        "flows_shown": pipe.flows_shown,  # of the last interval
        "flagged": pipe.flagged,  # flows marked by the alert path, last interval
        "scan": args.scan,
        "pids": args.pids,
        "detectors": ",".join(args.detectors) or "none",
        "churn": args.churn,
        "idle_timeout_s": args.idle_timeout,
        "intervals": args.intervals,
        "screen": f"{args.cols}x{args.rows}",
        "netmon": str(Path(netmon.__file__).resolve().parent),
        "python": sys.version.split()[0],
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "median_ms": medians,
    }


def held_memory(args: argparse.Namespace) -> float:
    """MB allocated by netmon's code and still held after the intervals: the
    engine's state, the source's and encoder's caches, the view and the last
    snapshot (tracemalloc; the fake kernel's memory is not counted)."""
    import tracemalloc

    tree = str(Path(netmon.__file__).resolve().parent)
    kernel = FakeKernel(args.flows, args.pids, args.seed, args.churn, args.scan)
    tracemalloc.start(32)
    pipe = Pipeline(
        kernel, args.cols, args.rows, args.idle_timeout, names=args.names == "on",
        detectors=args.detectors,
    )  # fmt: skip
    for _ in range(args.warmup + 3):
        kernel.step(1_000_000_000)
        pipe.interval()
    gc.collect()
    snap = tracemalloc.take_snapshot()
    tracemalloc.stop()
    mine = snap.filter_traces([tracemalloc.Filter(True, tree + "/*", all_frames=True)])
    return sum(t.size for t in mine.traces) / (1024 * 1024)


def print_report(result: dict[str, Any]) -> None:
    print(f"netmon pipeline bench: {result['flows']} flows ({result['flows_shown']} shown, "
          f"{result.get('churn', 0) * 100:g}% replaced per interval), "
          f"idle timeout {result.get('idle_timeout_s', 0):g} s, "
          f"{result['pids']} pids, {result['intervals']} intervals, screen {result['screen']}, "
          f"detectors {result.get('detectors', '-')}, "
          f"Python {result['python']}")  # fmt: skip
    print(f"netmon from {result['netmon']}")
    print(f"distinct peer addresses {result['addresses']}, names shown {result['names_shown']}")
    if "flagged" in result:
        print(f"port scan flows {result.get('scan', 0)}, flows flagged {result['flagged']}")
    if result["names"] == "both":
        off, on = result["names_off"], result["median_ms"]
        print("names off and on, side by side, alternating which goes first")
        print(f"{'stage':16} {'off ms':>10} {'on ms':>10} {'ratio':>8}")
        for name in on:
            ratio = on[name] / off[name] if off[name] else float("nan")
            print(f"{name:16} {off[name]:10.2f} {on[name]:10.2f} {ratio:8.3f}")
    else:
        print(f"names {result['names']}")
        print(f"{'stage':16} {'median ms/interval':>20}")
        for name, ms in result["median_ms"].items():
            print(f"{name:16} {ms:20.2f}")
    for name in ("json interval", "table interval"):
        ms = result["median_ms"][name]
        print(f"{name}: {ms:.1f} ms = {ms / 10:.1f}% of a core at a 1 s interval")
    print(f"max RSS of this process (fake kernel included): {result['max_rss_mb']:.0f} MB")
    if "held_mb" in result:
        print(f"held by netmon's code after the run (tracemalloc): {result['held_mb']:.1f} MB")


def against(args: argparse.Namespace, rest: list[str]) -> int:
    """Alternate this tree's bench with REV's, round by round."""
    with tempfile.TemporaryDirectory() as tmp:
        other = Path(tmp) / "other"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(other),
                        args.against], check=True)  # fmt: skip
        try:
            benches = {args.against: other / "bench" / "pipeline.py",
                       "this tree": Path(__file__).resolve()}  # fmt: skip
            rounds: dict[str, list[dict[str, float]]] = {name: [] for name in benches}
            for r in range(args.rounds):
                order = list(benches) if r % 2 == 0 else list(reversed(benches))
                for name in order:
                    proc = subprocess.run(
                        [sys.executable, str(benches[name]), "--json", *rest],
                        capture_output=True,
                        text=True,
                    )
                    if proc.returncode != 0:
                        raise SystemExit(f"the bench of {name} failed:\n{proc.stderr}")
                    rounds[name].append(json.loads(proc.stdout)["median_ms"])
                    print(f"round {r + 1}/{args.rounds}: {name} done", file=sys.stderr)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(other)],
                           check=False)  # fmt: skip
    before, after = rounds[args.against], rounds["this tree"]
    names = [n for n in after[0] if n in before[0]]
    print(f"median over {args.rounds} alternating rounds of each round's median, ms/interval")
    print(f"{'stage':16} {args.against[:12]:>12} {'this tree':>12} {'ratio':>8}")
    for n in names:
        b = statistics.median(x[n] for x in before)
        a = statistics.median(x[n] for x in after)
        print(f"{n:16} {b:12.2f} {a:12.2f} {a / b if b else float('nan'):8.3f}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--flows", type=int, default=10_000)
    ap.add_argument("--pids", type=int, default=1_000)
    ap.add_argument("--intervals", type=int, default=30, help="timed intervals")
    ap.add_argument("--warmup", type=int, default=3, help="untimed intervals first")
    ap.add_argument("--cols", type=int, default=200)
    ap.add_argument("--rows", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--detectors", type=parse_detectors, default=DEFAULT_DETECTORS,
                    help="detectors to run: a list, all or none (default: netmon's)")  # fmt: skip
    ap.add_argument(
        "--churn",
        type=float,
        default=0.0,
        help="share of the flows replaced by new ones every interval",
    )
    ap.add_argument(
        "--scan",
        type=int,
        default=0,
        metavar="N",
        help="N of the flows are one process's port scan of one host, so that the fanout "
        "detector fires and the flagged flows are marked every interval (0: none)",
    )
    ap.add_argument(
        "--idle-timeout",
        type=float,
        default=0.0,
        metavar="S",
        help="track idle flows as netmon --idle-timeout does, in seconds (0: off)",
    )
    ap.add_argument(
        "--names",
        choices=("off", "on", "both"),
        default="off",
        help="peer host names: off, on, or both side by side (default: off)",
    )
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument(
        "--memory",
        action="store_true",
        help="also measure the memory netmon's code holds (a separate, slow run)",
    )
    ap.add_argument("--against", metavar="REV", help="compare with git revision REV")
    ap.add_argument("--rounds", type=int, default=5, help="with --against: rounds")
    args = ap.parse_args()
    if args.against:
        rest = [f"--flows={args.flows}", f"--pids={args.pids}", f"--intervals={args.intervals}",
                f"--warmup={args.warmup}", f"--cols={args.cols}", f"--rows={args.rows}",
                f"--seed={args.seed}"]  # fmt: skip
        if args.churn:  # benches older than --churn do not know it
            rest.append(f"--churn={args.churn}")
        if args.idle_timeout:  # nor --idle-timeout
            rest.append(f"--idle-timeout={args.idle_timeout}")
        if args.names != "off":  # nor --names
            rest.append(f"--names={args.names}")
        if args.scan:  # nor --scan
            rest.append(f"--scan={args.scan}")
        return against(args, rest)
    result = run(args)
    if args.memory:
        result["held_mb"] = held_memory(args)
    if args.json:
        print(json.dumps(result))
    else:
        print_report(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
