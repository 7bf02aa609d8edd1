"""Replay: read line by line as it plays, clear errors naming the line,
recorded pace (long gaps shortened), speed, FIFOs and growing files."""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import tracemalloc
from pathlib import Path

import pytest

from netmon.errors import RecordingError
from netmon.jsonl import dumps
from netmon.model import FlowStat, ProcessStat, Snapshot
from netmon.sources import replay
from netmon.sources.replay import ReplayFeed, max_gap_s, open_replay_feed

from .helpers import key


def snap(ts: float, dropped: int = 0, interval_s: float = 1.0) -> Snapshot:
    return Snapshot(
        ts=ts, interval_s=interval_s, flows=(), processes=(), protocols={}, dropped=dropped
    )


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def write(path: Path, snaps: list[Snapshot]) -> str:
    path.write_text("".join(dumps(s) + "\n" for s in snaps))
    return str(path)


def drain(
    feed: ReplayFeed, clock: Clock, into: list[Snapshot] | None = None
) -> list[tuple[float, float]]:
    """(time played, ts) for every snapshot, stepping the clock to each due time."""
    played = []
    while (due := feed.next_due()) is not None:
        assert feed.poll(due - 0.001) is None  # not early
        clock.now = due
        s = feed.poll(clock.now)
        assert s is not None
        played.append((clock.now, s.ts))
        if into is not None:
            into.append(s)
    return played


def test_plays_at_the_recorded_pace(tmp_path: Path) -> None:
    clock = Clock(100.0)
    snaps = [snap(1000.0), snap(1001.0), snap(1003.5, interval_s=2.5)]
    path = write(tmp_path / "r.jsonl", snaps)
    feed = open_replay_feed(path, clock=clock)
    assert drain(feed, clock) == [(100.0, 1000.0), (101.0, 1001.0), (103.5, 1003.5)]
    assert feed.next_due() is None
    assert feed.poll(1e9) is None


def test_speed_divides_the_gaps(tmp_path: Path) -> None:
    clock = Clock(0.0)
    snaps = [snap(10.0), snap(14.0, interval_s=4.0), snap(18.0, interval_s=4.0)]
    path = write(tmp_path / "r.jsonl", snaps)
    feed = open_replay_feed(path, speed=4.0, clock=clock)
    assert [t for t, _ in drain(feed, clock)] == [0.0, 1.0, 2.0]


def test_time_going_backwards_does_not_rewind_the_schedule() -> None:
    clock = Clock(0.0)
    feed = ReplayFeed([snap(10.0), snap(12.0), snap(5.0), snap(6.0)], clock=clock)
    assert [t for t, _ in drain(feed, clock)] == [0.0, 2.0, 2.0, 3.0]


def test_a_late_poll_returns_snapshots_one_at_a_time_in_order() -> None:
    clock = Clock(0.0)
    feed = ReplayFeed([snap(1.0), snap(2.0), snap(3.0)], clock=clock)
    got = [feed.poll(50.0), feed.poll(50.0), feed.poll(50.0), feed.poll(50.0)]
    assert [s.ts if s else None for s in got] == [1.0, 2.0, 3.0, None]


def test_close_ends_the_feed() -> None:
    feed = ReplayFeed([snap(1.0), snap(2.0)], clock=Clock())
    feed.close()
    feed.close()
    assert feed.next_due() is None


def test_reads_json_output_with_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text("\n" + dumps(snap(1.0, dropped=3)) + "\n\n" + dumps(snap(2.0)) + "\n")
    feed = open_replay_feed(str(path), clock=Clock())
    first = feed.poll(1e9)
    assert first is not None and first.dropped == 3
    assert feed.poll(1e9) == snap(2.0)
    assert feed.next_due() is None


def test_invalid_speed() -> None:
    with pytest.raises(ValueError):
        ReplayFeed([snap(1.0)], speed=0.0)


def test_max_gap() -> None:
    assert max_gap_s(0.0) == 1.0  # a first snapshot or a new session: at least 1 s
    assert max_gap_s(0.2) == 1.0
    assert max_gap_s(5.0) == 10.0
    assert max_gap_s(3000.0) == 3600.0  # never more than an hour


@pytest.mark.parametrize(
    ("ts2", "interval_s", "waited"),
    [(1e9, 1.0, 2.0), (253402300799.0, 1.0, 2.0), (1e9, 7200.0, 3600.0), (1012.0, 0.0, 1.0)],
)
def test_a_long_jump_in_time_is_shortened_and_said(
    ts2: float, interval_s: float, waited: float
) -> None:
    clock = Clock(0.0)
    warnings: list[str] = []
    snaps = [snap(1000.0), snap(ts2, interval_s=interval_s), snap(ts2 + 1.0)]
    feed = ReplayFeed(snaps, speed=2.0, clock=clock, warn=warnings.append)
    assert drain(feed, clock) == [(0.0, 1000.0), (waited / 2, ts2), (waited / 2 + 0.5, ts2 + 1)]
    assert feed.gaps_shortened == 1
    assert len(warnings) == 1 and f"played as {waited:g} s" in warnings[0]


def test_a_gap_within_twice_the_interval_plays_as_recorded() -> None:
    clock = Clock(0.0)
    warnings: list[str] = []
    feed = ReplayFeed([snap(10.0), snap(11.9, interval_s=1.0)], clock=clock, warn=warnings.append)
    assert [t for t, _ in drain(feed, clock)] == [0.0, pytest.approx(1.9)]
    assert warnings == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read recording"),
        (b"", "empty recording"),
        (b"\n\n", "empty recording"),
        (b"OK\n", "line 1: invalid JSON"),
        (dumps(snap(2.0)).encode()[:30], "line 1: truncated line at end of file"),
        (b'{"ts": "x", "interval_s": 1, "flows": [], "processes": []}\n', "line 1: 'ts'"),
        (b"[1, 2]\n", "line 1: not a JSON object"),
        (b"\xff\xfe\n", "line 1: not valid UTF-8"),
        (b"\n" + b"[" * 100000 + b"\n", "line 2: nested too deeply"),
    ],
)  # fmt: skip
def test_a_file_bad_from_its_first_line_fails_at_open(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "bad.jsonl"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(RecordingError) as info:
        open_replay_feed(str(path))
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


def sample_snapshot(ts: float = 1000.0, flows: int = 1, comm: str = "curl") -> Snapshot:
    return Snapshot(
        ts=ts,
        interval_s=1.0,
        flows=tuple(
            FlowStat(key(pid=100 + i, port=1000 + i), comm, 10 * i, 20 * i, i, 2 * i, 1.5, False)
            for i in range(flows)
        ),
        processes=(ProcessStat(100, comm, 10, 20, 1.5),),
        protocols={"TCP": 30},
    )


def good(ts: float) -> bytes:
    return dumps(snap(ts)).encode() + b"\n"


def bad_flow(**fields: object) -> bytes:
    obj = json.loads(dumps(sample_snapshot()))
    obj["flows"][0].update(fields)
    return json.dumps(obj).encode() + b"\n"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (b'{"ts": 2\n', "line 3: invalid JSON"),
        (b'\n{"ts": 1.0}\n', "line 4: missing field 'flows'"),
        (b"\xff\xfe\n", "line 3: not valid UTF-8"),
        (b'{"ts": 3, "interval_s": 1, "flows": "abc", "processes": []}\n',
         "line 3: 'flows' must be a list"),
        (b'{"ts": 3, "interval_s": 1, "flows": [null], "processes": []}\n',
         "line 3: 'flows' item 1 must be an object"),
        (b'{"ts": 3, "interval_s": 1, "flows": [], "processes": [1]}\n',
         "line 3: 'processes' item 1 must be an object"),
        (b'{"ts": 1e308, "interval_s": 1, "flows": [], "processes": []}\n', "line 3: 'ts'"),
        (b'{"ts": 3, "interval_s": -1, "flows": [], "processes": []}\n', "line 3: 'interval_s'"),
        (b'{"ts": 3, "interval_s": 1, "flows": [], "processes": [], "dropped": -1}\n',
         "line 3: 'dropped' must be from 0"),
        (bad_flow(bytes_sent=-5), "line 3: 'bytes_sent' must be from 0"),
        (bad_flow(bytes_recv=2**64), "line 3: 'bytes_recv' must be from 0"),
        (bad_flow(port=65536), "line 3: 'port' must be from 0 to 65535"),
        (bad_flow(anomaly="yes"), "line 3: 'anomaly' must be true or false"),
        (bad_flow(rate_bps=float("nan")), "line 3: NaN is not a number"),
        (bad_flow(rate_bps=float("inf")), "line 3: Infinity is not a number"),
        (bad_flow(rate_bps=-1.0), "line 3: 'rate_bps' must be a finite number"),
        (bad_flow(comm="x" * 5000), "line 3: 'comm' is longer than 4096"),
        (bad_flow(bytes_sent=10**4000).replace(b"1" + b"0" * 4000, b"9" * 4000),
         "line 3: integer of 4000 digits is out of range"),
    ],
)  # fmt: skip
def test_a_bad_line_stops_the_replay_after_the_good_ones(
    tmp_path: Path, bad: bytes, message: str
) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(good(1.0) + good(2.0) + bad + good(9.0))
    clock = Clock(0.0)
    feed = open_replay_feed(str(path), clock=clock)
    played: list[Snapshot] = []
    with pytest.raises(RecordingError) as info:
        drain(feed, clock, into=played)
    assert [s.ts for s in played] == [1.0, 2.0]
    assert str(info.value).startswith(f"{path}: {message}")
    assert feed.next_due() is None  # nothing after a bad line plays


def test_too_long_a_line_is_an_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replay, "MAX_LINE_BYTES", 4096)
    path = tmp_path / "r.jsonl"
    path.write_bytes(good(1.0) + b" " * 5000)  # no newline: must stop reading
    feed = open_replay_feed(str(path), clock=Clock(0.0))
    assert feed.poll(1e9) == snap(1.0)
    with pytest.raises(RecordingError, match="line 2: longer than"):
        feed.next_due()


@pytest.mark.parametrize("cut", [1, 30, -2])
def test_an_incomplete_last_line_is_dropped_with_a_warning(tmp_path: Path, cut: int) -> None:
    line = dumps(sample_snapshot(comm="名前")).encode()
    path = tmp_path / "r.jsonl"
    path.write_bytes(good(1.0) + good(2.0) + line[:cut])
    warnings: list[str] = []
    clock = Clock(0.0)
    feed = open_replay_feed(str(path), clock=clock, warn=warnings.append)
    assert [ts for _, ts in drain(feed, clock)] == [1.0, 2.0]
    assert warnings == [
        f"{path}: line 3: incomplete last line ignored (the recording was cut short)"
    ]


def test_an_incomplete_last_line_cutting_a_character_in_two(tmp_path: Path) -> None:
    # Other writers of JSON Lines may write UTF-8 rather than \\u escapes.
    obj = json.loads(dumps(sample_snapshot(comm="名前")))
    line = json.dumps(obj, ensure_ascii=False).encode()
    cut = line.index("名".encode()) + 1
    path = tmp_path / "r.jsonl"
    path.write_bytes(good(999.0) + line + b"\n" + line[:cut])
    warnings: list[str] = []
    clock = Clock(0.0)
    feed = open_replay_feed(str(path), clock=clock, warn=warnings.append)
    snapshots: list[Snapshot] = []
    drain(feed, clock, into=snapshots)
    assert [s.ts for s in snapshots] == [999.0, 1000.0]
    assert snapshots[1].flows[0].comm == "名前"
    assert len(warnings) == 1 and "line 3: incomplete last line" in warnings[0]


def test_a_complete_last_line_without_newline_plays(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(good(1.0) + dumps(snap(2.0)).encode())
    clock = Clock(0.0)
    assert [ts for _, ts in drain(open_replay_feed(str(path), clock=clock), clock)] == [1.0, 2.0]


def test_lines_are_read_only_when_due(tmp_path: Path) -> None:
    """--count 1 reads one snapshot: a bad second line is never reached."""
    path = tmp_path / "r.jsonl"
    path.write_bytes(good(1.0) + b"garbage\n")
    feed = open_replay_feed(str(path), clock=Clock(0.0))
    assert feed.poll(0.0) == snap(1.0)
    feed.close()


def test_memory_does_not_grow_with_the_file(tmp_path: Path) -> None:
    """A 5.5 MB recording plays in under 2 MB (reading it whole took ~9x its size)."""
    path = tmp_path / "big.jsonl"
    with path.open("w") as f:
        for i in range(2000):
            f.write(dumps(sample_snapshot(1000.0 + i, flows=12)) + "\n")
    size = path.stat().st_size
    assert size > 5 * 2**20
    clock = Clock(0.0)
    tracemalloc.start()
    try:
        feed = open_replay_feed(str(path), speed=1e6, clock=clock)
        played = len(drain(feed, clock))
        feed.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert played == 2000
    assert peak < 2 * 2**20, f"peak {peak} bytes for a {size}-byte file"


def test_a_directory_is_a_recording_error(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="is a directory"):
        open_replay_feed(str(tmp_path))


def stream(feed: ReplayFeed, clock: Clock) -> list[float]:
    """The ts of every snapshot until the end; waiting for data moves the
    clock to the next look."""
    played = []
    while (due := feed.next_due()) is not None:
        clock.now = max(clock.now, due)
        s = feed.poll(clock.now)
        if s is not None:
            played.append(s.ts)
    return played


def open_fifo_pair(fifo: Path, clock: Clock) -> tuple[ReplayFeed, int]:
    """Open a FIFO's reader (the replay) and writer together: each open waits
    for the other."""
    writer: queue.Queue[int] = queue.Queue()
    thread = threading.Thread(target=lambda: writer.put(os.open(fifo, os.O_WRONLY)))
    thread.start()
    feed = open_replay_feed(str(fifo), clock=clock)
    thread.join(timeout=30)
    return feed, writer.get(timeout=30)


def test_a_fifo_plays_as_it_is_written(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    clock = Clock(0.0)
    feed, w = open_fifo_pair(fifo, clock)
    try:
        due = feed.next_due()
        assert due is not None  # nothing yet, but not the end
        assert feed.poll(clock.now) is None
        os.write(w, good(1.0) + dumps(snap(2.0)).encode()[:20])
        clock.now = due
        assert feed.poll(clock.now) == snap(1.0)
        clock.now = feed.next_due() or 0.0
        assert feed.poll(clock.now) is None  # half a line: wait for the rest
        os.write(w, dumps(snap(2.0)).encode()[20:] + b"\n")
    finally:
        os.close(w)
    assert stream(feed, clock) == [2.0]
    assert feed.next_due() is None  # the writer closed: the end


def test_follow_reads_a_growing_file(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(good(1.0))
    clock = Clock(0.0)
    feed = open_replay_feed(str(path), clock=clock, follow=True)
    assert feed.poll(0.0) == snap(1.0)
    for part in (dumps(snap(2.0)).encode()[:10], dumps(snap(2.0)).encode()[10:] + b"\n"):
        due = feed.next_due()
        assert due is not None and feed.poll(due) is None  # at the end: wait
        with path.open("ab") as f:
            f.write(part)
        clock.now = due
    due = feed.next_due()
    assert due is not None
    clock.now = due
    assert feed.poll(due) == snap(2.0)
    assert feed.next_due() is not None  # still following
    feed.close()
    assert feed.next_due() is None


def test_replay_does_not_import_bcc_or_the_live_source() -> None:
    import subprocess

    code = (
        "import sys, netmon.sources.replay, netmon.ui.app, netmon.view, netmon.record;"
        "bad = [m for m in ('bcc', 'netmon.sources.live', 'curses', '_curses')"
        " if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_shipped_sample_recording_replays() -> None:
    sample = Path(__file__).resolve().parents[2] / "examples" / "sample.jsonl"
    clock = Clock(0.0)
    feed = open_replay_feed(str(sample), clock=clock)
    snapshots: list[Snapshot] = []
    played = drain(feed, clock, into=snapshots)
    assert len(played) >= 10
    last = snapshots[-1]
    assert last.flows and last.processes and last.protocols
    assert any(f.anomaly for f in last.flows)  # shows both footer states' alert side
