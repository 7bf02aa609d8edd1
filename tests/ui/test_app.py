"""The UI loop against a fake screen and a stepped clock: no terminal, no sleep."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from netmon.errors import RecordingError
from netmon.model import Snapshot
from netmon.replay_status import ReplayStatus
from netmon.sources.replay import ReplayFeed
from netmon.ui.app import MAX_WAIT_S, MIN_WAIT_S, run_loop, run_ui
from netmon.view import Frame, UIState, ViewSettings

from .builders import MB, THRESHOLD, flow, snapshot

SETTINGS = ViewSettings(interval_s=1.0, alpha=0.4, threshold_bps=THRESHOLD)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeScreen:
    """Each read_key waits 10 ms of fake time at most (a real screen may also
    return before its timeout); keys arrive at scripted times."""

    clock: Clock
    script: list[tuple[float, str]]
    height: int = 24
    width: int = 100
    unicode: bool = True
    frames: list[tuple[float, Frame]] = field(default_factory=list)
    action: dict[float, object] = field(default_factory=dict)
    waits: list[tuple[float, float]] = field(default_factory=list)  # (when, timeout asked)

    def size(self) -> tuple[int, int]:
        return self.height, self.width

    def read_key(self, timeout_s: float) -> str | None:
        self.waits.append((self.clock.now, timeout_s))
        if self.script and self.clock.now >= self.script[0][0]:
            return self.script.pop(0)[1]
        self.clock.now = round(self.clock.now + min(timeout_s, 0.01), 2)
        if self.clock.now > 100:
            raise AssertionError("the loop did not stop")
        return None

    def paint(self, frame: Frame) -> None:
        self.frames.append((self.clock.now, frame))

    def text_at(self, t: float) -> str:
        """The screen as last painted at or before time t."""
        shown = [f for when, f in self.frames if when <= t][-1]
        return "\n".join("".join(s.text for s in line) for line in shown.lines)


@dataclass
class FakeRecorder:
    written: list[Snapshot] = field(default_factory=list)
    closed: int = 0

    def write(self, snapshot: Snapshot) -> None:
        self.written.append(snapshot)

    def close(self) -> None:
        self.closed += 1


def three_snapshots() -> list[Snapshot]:
    return [snapshot([flow(1, f"gen{i}", rate=i * MB)], ts=1000.0 + i) for i in (1, 2, 3)]


def test_pause_keeps_the_shown_snapshot_while_polling_and_recording_go_on() -> None:
    clock = Clock()
    feed = ReplayFeed(three_snapshots(), clock=clock)
    screen = FakeScreen(clock, [(0.5, "p"), (3.0, "p"), (3.5, "q")])
    rec = FakeRecorder()
    state = run_loop(screen, feed, SETTINGS, UIState(), rec, clock)
    assert state.quit
    assert [s.ts for s in rec.written] == [1001.0, 1002.0, 1003.0]
    assert "gen1" in screen.text_at(0.2) and "PAUSED" not in screen.text_at(0.2)
    paused = screen.text_at(2.9)
    assert "PAUSED" in paused and "end of replay" in paused
    assert "gen1" in paused and "gen3" not in paused
    resumed = screen.text_at(3.0)
    assert "gen3" in resumed and "PAUSED" not in resumed


def test_a_replay_says_how_many_gaps_it_shortened() -> None:
    """Snapshots 1 s apart, then a jump of an hour (played as 2 s, twice the
    interval), then another: the status line counts them as they come."""
    clock = Clock()
    stamps = (1000.0, 1001.0, 4601.0, 4602.0, 9000.0)
    feed = ReplayFeed(
        [snapshot([flow(1, f"gen{i}", rate=MB)], ts=ts) for i, ts in enumerate(stamps)],
        clock=clock,
        warn=lambda message: None,
    )
    screen = FakeScreen(clock, [(8.0, "q")])
    run_loop(screen, ReplayStatus(feed, feed), SETTINGS, UIState(), None, clock)
    status = [screen.text_at(t).splitlines()[1] for t in (0.5, 3.5, 7.5)]
    assert "shortened" not in status[0]
    assert "gaps > 2s shortened: 1" in status[1] and "gen2" in screen.text_at(3.5)
    assert "gaps > 2s shortened: 2" in status[2] and "gen4" in screen.text_at(7.5)
    # Without shortened gaps, or without the replay's status, no such note.
    plain = FakeScreen(clock := Clock(), [(3.0, "q")])
    run_loop(plain, ReplayFeed(three_snapshots(), clock=clock), SETTINGS, UIState(), None, clock)
    assert "shortened" not in plain.text_at(3.0)


def test_every_key_repaints_at_once() -> None:
    clock = Clock()
    feed = ReplayFeed(three_snapshots()[:1], clock=clock)
    screen = FakeScreen(clock, [(0.2, "g"), (0.2, "g"), (0.2, "h"), (0.3, "q")])
    run_loop(screen, feed, SETTINGS, UIState(), None, clock)
    at_02 = [f for when, f in screen.frames if when == 0.2]
    assert len(at_02) == 3  # one frame per key, without waiting for the next tick


def test_nothing_is_repainted_when_nothing_changes() -> None:
    clock = Clock()
    feed = ReplayFeed(three_snapshots()[:1], clock=clock)
    screen = FakeScreen(clock, [(5.0, "q")])
    run_loop(screen, feed, SETTINGS, UIState(), None, clock)
    assert len(screen.frames) <= 3  # first paint, the snapshot, end of replay


def test_resize_reads_the_new_size() -> None:
    clock = Clock()
    feed = ReplayFeed(three_snapshots()[:1], clock=clock)
    screen = FakeScreen(clock, [(0.5, "RESIZE"), (0.6, "q")])
    screen.height, screen.width = 24, 100

    original = screen.read_key

    def read_key(timeout_s: float) -> str | None:
        key = original(timeout_s)
        if key == "RESIZE":
            screen.height, screen.width = 10, 40
        return key

    screen.read_key = read_key  # type: ignore[method-assign]
    run_loop(screen, feed, SETTINGS, UIState(), None, clock)
    last = screen.frames[-1][1]
    assert (last.width, last.height) == (40, 10)
    assert len(last.lines) == 10


def test_the_loop_sleeps_until_the_next_snapshot_is_due() -> None:
    clock = Clock()
    feed = ReplayFeed(three_snapshots()[:2], clock=clock)  # due at 0 and 1
    screen = FakeScreen(clock, [(1.5, "q")])
    run_loop(screen, feed, SETTINGS, UIState(), None, clock)
    before_second = [w for when, w in screen.waits if when < 1.0]
    assert max(before_second) == MAX_WAIT_S
    for when, w in screen.waits:
        if when < 1.0:  # until the second snapshot is due, no later
            assert min(MAX_WAIT_S, 1.0 - when) - 1e-9 <= w <= max(1.0 - when, MIN_WAIT_S) + 1e-9
    assert all(MIN_WAIT_S <= w <= MAX_WAIT_S for _, w in screen.waits)
    # After the end of the replay nothing is due: the longest wait.
    assert {w for when, w in screen.waits if when > 1.0} == {MAX_WAIT_S}


# -- run_ui: exit paths -------------------------------------------------------


@dataclass
class Config:
    interval_s: float = 1.0
    alpha: float = 0.4
    threshold_bps: float = THRESHOLD
    show_kernel: bool = False
    numeric: bool = False


@dataclass
class Session:
    screen: FakeScreen
    events: list[str] = field(default_factory=list)

    @contextlib.contextmanager
    def __call__(self) -> Iterator[FakeScreen]:
        self.events.append("setup")
        try:
            yield self.screen
        finally:
            self.events.append("restored")


class TrackedFeed(ReplayFeed):
    def __init__(self, events: list[str], clock: Clock) -> None:
        super().__init__(three_snapshots(), clock=clock)
        self.events = events

    def close(self) -> None:
        self.events.append("feed closed")
        super().close()


def run_with(action: object) -> tuple[int | BaseException, list[str], FakeRecorder]:
    """Run run_ui; at t=2.5 the screen performs `action` (a key, a signal
    number to send to this process, or an exception to raise)."""
    clock = Clock()
    screen = FakeScreen(clock, [])
    session = Session(screen)
    events = session.events
    rec = FakeRecorder()
    original = screen.read_key

    def read_key(timeout_s: float) -> str | None:
        if clock.now == 2.5:
            if isinstance(action, str):
                return action
            if isinstance(action, int):
                os.kill(os.getpid(), action)
            if isinstance(action, BaseException):
                raise action
        return original(timeout_s)

    screen.read_key = read_key  # type: ignore[method-assign]
    feed = TrackedFeed(events, clock)
    try:
        result: int | BaseException = run_ui(Config(), feed, rec, session=session, clock=clock)
    except BaseException as exc:
        result = exc
    return result, events, rec


@pytest.mark.parametrize("action", ["q", signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_clean_exits_restore_then_close(action: object) -> None:
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    result, events, rec = run_with(action)
    assert result == 0
    assert events == ["setup", "restored", "feed closed"]
    assert rec.closed == 1
    assert len(rec.written) == 3
    assert {s: signal.getsignal(s) for s in handlers} == handlers  # put back


@pytest.mark.parametrize("error", [RuntimeError("boom"), RecordingError("disk full")])
def test_an_exception_restores_the_terminal_first_then_propagates(error: Exception) -> None:
    result, events, rec = run_with(error)
    assert result is error
    assert events == ["setup", "restored", "feed closed"]
    assert rec.closed == 1
