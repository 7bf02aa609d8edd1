"""Rendering cost of the netmon UI with 10K flows.

    .venv/bin/python bench/render.py [--flows 10000] [--cols 200] [--rows 60]

Measures, side by side:
  - building the view (sort + filter) once per data update;
  - building a frame (only the visible rows), with 100 vs 10K flows;
  - painting a frame with real curses into a pseudo-terminal;
  - the delay from a key press to the updated screen, running
    `python -m netmon --replay` in a pseudo-terminal read through pyte
    (timed to the arrival of the output that completes the update).
Targets: under 2 ms per frame, under 20 ms from key to screen.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from netmon.jsonl import dumps  # noqa: E402
from netmon.model import FlowKey, FlowStat, ProcessStat, Snapshot  # noqa: E402
from netmon.view import HEADER_LINES, Col, UIState, View, ViewSettings  # noqa: E402

MB = 1024 * 1024
SETTINGS = ViewSettings(interval_s=1.0, alpha=0.4, threshold_bps=10 * MB)
NAMES = [
    "nginx",
    "curl",
    "postgres",
    "redis-server",
    "sshd",
    "python3",
    "java",
    "chrome",
    "中文进程",
]


def make_snapshot(n: int, seed: int = 1) -> Snapshot:
    rnd = random.Random(seed)
    flows = []
    procs: dict[int, ProcessStat] = {}
    for i in range(n):
        pid = 1000 + i % max(n // 4, 1)
        rate = rnd.expovariate(1 / (1 * MB))
        comm = NAMES[pid % len(NAMES)]
        f = FlowStat(
            key=FlowKey(
                pid=pid,
                protocol=rnd.choice(["TCP", "TCP", "UDP", "ICMP"]),
                family="IPv4",
                port=rnd.choice([443, 80, 53, 5432, 6379, 22]) + i // 1000,
                remote_ip=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
                role=rnd.choice(["client", "server"]),
            ),
            comm=comm,
            bytes_sent=rnd.randrange(1 << 40),
            bytes_recv=rnd.randrange(1 << 40),
            packets_sent=1,
            packets_recv=1,
            rate_bps=rate,
            anomaly=rate > 10 * MB,
        )
        flows.append(f)
        p = procs.get(pid)
        procs[pid] = ProcessStat(pid, comm, f.bytes_sent + (p.bytes_sent if p else 0),
                                 f.bytes_recv + (p.bytes_recv if p else 0),
                                 rate + (p.rate_bps if p else 0.0))  # fmt: skip
    return Snapshot(
        ts=1_700_000_000.0,
        interval_s=1.0,
        flows=tuple(flows),
        processes=tuple(procs.values()),
        protocols={"TCP": 1 << 40, "UDP": 1 << 30, "ICMP": 1 << 20},
    )


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    """Milliseconds per call."""
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t0) / 1e6)
    return out


def p95(xs: list[float]) -> float:
    return sorted(xs)[max(int(len(xs) * 0.95) - 1, 0)]


# -- view and frame building ----------------------------------------------


def bench_view(flows: int, cols: int, rows: int, repeat: int) -> dict[str, list[float]]:
    view = View(SETTINGS)
    state = UIState()
    results: dict[str, list[float]] = {}
    for n in (100, flows):
        snap = make_snapshot(n)

        def rebuild(snap: Snapshot = snap) -> None:
            view.set_snapshot(snap)
            view.rows(state)

        results[f"view build, {n} flows (totals + sort)"] = timed(rebuild, repeat)
        new_data = []
        for _ in range(repeat):
            rebuild()  # not timed: the frame right after new data formats every row
            new_data += timed(lambda: view.frame(state, cols, rows), 1)
        results[f"frame build, {n} flows, new data"] = new_data
    by_name = replace(state, sort=Col.NAME)

    def resort() -> None:
        view._cache_key = None  # as if the sort column had just changed
        view.rows(by_name)

    results[f"re-sort {flows} flows by name (key s)"] = timed(resort, repeat)
    offsets = iter(range(10**9))
    results[f"frame build, {flows} flows, scrolling"] = timed(
        lambda: view.frame(replace(state, offset=next(offsets) % 1000), cols, rows), repeat
    )
    return results


# -- painting with real curses, in a pseudo-terminal ------------------------


def paint_child(out: str, flows: int, repeat: int) -> None:
    """Runs inside the pty: paint frames with curses and time them."""
    from netmon.ui.curses_ui import curses_session

    snap = make_snapshot(flows)
    with curses_session() as screen:
        height, width = screen.size()
        view = View(replace(SETTINGS, unicode=screen.unicode))
        view.set_snapshot(snap)
        frames = [view.frame(UIState(offset=k), width, height) for k in (0, 1)]
        screen.paint(frames[0])
        changed: list[float] = []
        same: list[float] = []
        scrolling: list[float] = []
        new_data: list[float] = []
        for i in range(repeat):
            changed += timed(lambda: screen.paint(frames[(i + 1) % 2]), 1)  # noqa: B023
        for _ in range(repeat):
            same += timed(lambda: screen.paint(frames[1]), 1)
        for i in range(repeat):
            state = UIState(offset=i % 1000)
            scrolling += timed(lambda: screen.paint(view.frame(state, width, height)), 1)  # noqa: B023
        state = UIState()
        updates = [snap, make_snapshot(flows, seed=2)]  # new values in every row
        for i in range(repeat):
            view.set_snapshot(updates[i % 2])
            view.rows(state)
            new_data += timed(lambda: screen.paint(view.frame(state, width, height)), 1)
    results = {"changed": changed, "same": same, "scrolling": scrolling, "new_data": new_data}
    Path(out).write_text(json.dumps(results))


def bench_paint(flows: int, cols: int, rows: int, repeat: int) -> dict[str, list[float]]:
    from ui.ptyterm import Terminal

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "paint.json"
        argv = [sys.executable, str(Path(__file__).resolve()), "--paint-child", str(out),
                "--flows", str(flows), "--repeat", str(repeat)]  # fmt: skip
        with Terminal(argv, cols, rows) as term:
            # Drain the pty as fast as a terminal would, without emulating
            # it, so that the painter never waits for a slow reader.
            output = bytearray()
            while term.proc.poll() is None:
                ready, _, _ = select.select([term.master], [], [], 0.1)
                if ready:
                    output += os.read(term.master, 1 << 20)
            if term.proc.returncode != 0:
                raise SystemExit(f"paint child failed: {output[-2000:].decode(errors='replace')}")
        data = json.loads(out.read_text())
    return {
        "paint only, every row changed": data["changed"],
        "paint only, nothing changed": data["same"],
        "FRAME: build + paint, scrolling": data["scrolling"],
        "FRAME: build + paint, new data": data["new_data"],
    }


# -- key press to updated screen ------------------------------------------


def bench_keys(flows: int, cols: int, rows: int, presses: int) -> dict[str, list[float]]:
    import queue
    import threading

    from ui.ptyterm import Terminal, netmon_argv

    class TimedTerminal(Terminal):
        """Reads the pty in a thread that timestamps each chunk as it
        arrives, so the emulator's parsing time is not counted."""

        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            self.chunks: queue.Queue[tuple[int, bytes]] = queue.Queue()
            self.arrived = 0
            threading.Thread(target=self._reader, daemon=True).start()

        def _reader(self) -> None:
            while True:
                try:
                    data = os.read(self.master, 65536)
                except OSError:
                    return
                if not data:
                    return
                self.chunks.put((time.perf_counter_ns(), data))

        def _pump(self, timeout: float) -> bool:
            try:
                self.arrived, data = self.chunks.get(timeout=timeout)
            except queue.Empty:
                return False
            self.raw += data
            self.stream.feed(data)
            return True

    sys.setswitchinterval(1e-4)  # let the reader thread timestamp promptly

    snap = make_snapshot(flows)
    view = View(SETTINGS)
    view.set_snapshot(snap)
    count = rows - HEADER_LINES - 1

    def last_row(state: UIState) -> str:
        row = view.visible_rows(state, count)[-1]
        return f"{row.key.pid} {row.comm}"

    results: dict[str, list[float]] = {"key r -> screen (reverse)": [],
                                       "key s -> screen (re-sort 10K)": []}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.jsonl"
        path.write_text(dumps(snap) + "\n")
        with TimedTerminal(netmon_argv("--replay", str(path)), cols, rows) as term:

            def shows(state: UIState) -> Callable[[Terminal], bool]:
                # The last table row is painted last: when it is right, the
                # table is.
                want = last_row(state)
                return lambda t: " ".join(t.line(rows - 2).split()[:2]) == want

            state = UIState()
            term.wait_for(shows(state), timeout=60, what="first frame")
            for i in range(presses):
                key, name = ("r", "key r -> screen (reverse)") if i % 2 == 0 else (
                    "s", "key s -> screen (re-sort 10K)")  # fmt: skip
                if key == "r":
                    state = replace(state, reverse=not state.reverse)
                else:
                    ids = [Col.PID, Col.NAME, Col.PROTO, Col.PORT, Col.REMOTE, Col.SENT,
                           Col.RECV, Col.RATE]  # fmt: skip
                    state = replace(state, sort=ids[(ids.index(state.sort) + 1) % len(ids)],
                                    reverse=False)  # fmt: skip
                predicate = shows(state)
                t0 = time.perf_counter_ns()
                term.send(key)
                term.wait_for(predicate, timeout=10, what=f"key {key}")
                # Until the chunk that completed the screen arrived.
                results[name].append((term.arrived - t0) / 1e6)
            term.send("q")
            term.wait_exit()
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--flows", type=int, default=10_000)
    ap.add_argument("--cols", type=int, default=200)
    ap.add_argument("--rows", type=int, default=60)
    ap.add_argument("--repeat", type=int, default=100)
    ap.add_argument("--presses", type=int, default=40)
    ap.add_argument("--paint-child", metavar="OUT", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.paint_child:
        paint_child(args.paint_child, args.flows, args.repeat)
        return 0

    print(f"netmon render bench: {args.flows} flows, {args.cols}x{args.rows} terminal, "
          f"Python {sys.version.split()[0]}")  # fmt: skip
    results = bench_view(args.flows, args.cols, args.rows, max(args.repeat // 5, 10))
    results.update(bench_paint(args.flows, args.cols, args.rows, args.repeat))
    results.update(bench_keys(args.flows, args.cols, args.rows, args.presses))

    targets = {
        "FRAME: build + paint, scrolling": 2.0,
        "FRAME: build + paint, new data": 2.0,
        "key r -> screen (reverse)": 20.0,
        "key s -> screen (re-sort 10K)": 20.0,
    }
    print(f"{'':42} {'median ms':>10} {'p95 ms':>8} {'max ms':>8}  target")
    for name, xs in results.items():
        target = targets.get(name)
        verdict = ""
        if target is not None:
            verdict = f"< {target:g} ms " + ("ok" if statistics.median(xs) < target else "MISSED")
        print(f"{name:42} {statistics.median(xs):10.3f} {p95(xs):8.3f} {max(xs):8.3f}  {verdict}")
    big = statistics.median(results[f"frame build, {args.flows} flows, new data"])
    small = statistics.median(results["frame build, 100 flows, new data"])
    print(f"frame build, {args.flows} flows vs 100 flows: {big / small:.2f}x "
          "(1.0x: the frame cost does not grow with the number of flows)")  # fmt: skip
    big = statistics.median(results[f"view build, {args.flows} flows (totals + sort)"])
    small = statistics.median(results["view build, 100 flows (totals + sort)"])
    print(f"view build, {args.flows} flows vs 100 flows: {big / small:.0f}x "
          "(once per data update, every --interval)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
