"""Replay: whole file parsed up front, clear errors, recorded pace, speed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from netmon.errors import RecordingError
from netmon.jsonl import dumps
from netmon.model import Snapshot
from netmon.sources.replay import ReplayFeed, open_replay_feed


def snap(ts: float, dropped: int = 0) -> Snapshot:
    return Snapshot(ts=ts, interval_s=1.0, flows=(), processes=(), protocols={}, dropped=dropped)


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def write(path: Path, snaps: list[Snapshot]) -> str:
    path.write_text("".join(dumps(s) + "\n" for s in snaps))
    return str(path)


def drain(feed: ReplayFeed, clock: Clock) -> list[tuple[float, float]]:
    """(time played, ts) for every snapshot, stepping the clock to each due time."""
    played = []
    while (due := feed.next_due()) is not None:
        assert feed.poll(due - 0.001) is None  # not early
        clock.now = due
        s = feed.poll(clock.now)
        assert s is not None
        played.append((clock.now, s.ts))
    return played


def test_plays_at_the_recorded_pace(tmp_path: Path) -> None:
    clock = Clock(100.0)
    path = write(tmp_path / "r.jsonl", [snap(1000.0), snap(1001.0), snap(1003.5)])
    feed = open_replay_feed(path, clock=clock)
    assert drain(feed, clock) == [(100.0, 1000.0), (101.0, 1001.0), (103.5, 1003.5)]
    assert feed.next_due() is None
    assert feed.poll(1e9) is None


def test_speed_divides_the_gaps(tmp_path: Path) -> None:
    clock = Clock(0.0)
    path = write(tmp_path / "r.jsonl", [snap(10.0), snap(14.0), snap(18.0)])
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
    assert len(feed) == 2
    first = feed.poll(1e9)
    assert first is not None and first.dropped == 3


def test_invalid_speed() -> None:
    with pytest.raises(ValueError):
        ReplayFeed([snap(1.0)], speed=0.0)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read recording"),
        (b"", "empty recording"),
        (b"\n\n", "empty recording"),
        (b"OK\n", "line 1: invalid JSON"),
        (dumps(snap(1.0)).encode() + b"\n{\"ts\": 2\n", "line 2: invalid JSON"),
        (dumps(snap(1.0)).encode() + b"\n" + dumps(snap(2.0)).encode()[:30],
         "line 2: truncated line at end of file"),
        (dumps(snap(1.0)).encode() + b"\n\n{\"ts\": 1.0}\n", "line 3: missing field"),
        (b'{"ts": "x", "interval_s": 1, "flows": [], "processes": []}\n', "line 1: 'ts'"),
        (b"[1, 2]\n", "line 1: not a JSON object"),
        (dumps(snap(1.0)).encode() + b"\n\xff\xfe\n", "line 2: not valid UTF-8"),
    ],
)  # fmt: skip
def test_bad_files_fail_at_start_naming_path_and_line(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "bad.jsonl"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(RecordingError) as info:
        open_replay_feed(str(path))
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


def test_a_directory_is_a_recording_error(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="cannot read"):
        open_replay_feed(str(tmp_path))


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
    played = drain(feed, clock)
    assert len(played) >= 10
    last = feed._snapshots[-1]
    assert last.flows and last.processes and last.protocols
    assert any(f.anomaly for f in last.flows)  # shows both footer states' alert side
