"""The UI loop: poll the feed when due, read keys, repaint on change.

`run_loop` works on any `Screen`, so it is tested with a fake one; `run_ui`
adds the curses session and the exit guarantees: whatever happens (q,
Ctrl-C, SIGTERM, SIGHUP, an exception) the terminal is restored first, then
the feed and the recorder are closed, then any error goes on to the caller.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from types import FrameType
from typing import Protocol

from netmon.feed import Feed
from netmon.model import Snapshot
from netmon.view import FooterAlerts, Frame, UIState, View, ViewSettings, apply_key


class UIConfig(Protocol):
    """What the UI reads from `netmon.config.Config`."""

    @property
    def interval_s(self) -> float: ...
    @property
    def alpha(self) -> float: ...
    @property
    def threshold_bps(self) -> float: ...
    @property
    def show_kernel(self) -> bool: ...
    @property
    def numeric(self) -> bool: ...


class SnapshotSink(Protocol):
    def write(self, snapshot: Snapshot) -> None: ...
    def close(self) -> None: ...


class Screen(Protocol):
    @property
    def unicode(self) -> bool: ...
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        ...

    def read_key(self, timeout_s: float) -> str | None:
        """Wait up to timeout_s for a key (a resize counts as one); None if
        there was none."""
        ...

    def paint(self, frame: Frame) -> None: ...


class SignalExit(BaseException):
    """A termination signal, turned into an orderly unwind."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


# SIGHUP does not exist on Windows, where replay also runs.
EXIT_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))


@contextlib.contextmanager
def exit_on_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP raise SignalExit once; later ones are ignored so
    that they cannot interrupt the cleanup."""
    exiting = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal exiting
        if exiting:
            return
        exiting = True
        raise SignalExit(signum)

    previous = {}
    try:
        for sig in EXIT_SIGNALS:
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# Between snapshots the loop sleeps in read_key until the next one is due,
# waking at least every MAX_WAIT_S (so that a signal is handled promptly
# even where the terminal library retries an interrupted wait) and waiting
# at least MIN_WAIT_S (a feed that stays due without a snapshot must not spin).
MAX_WAIT_S = 0.2
MIN_WAIT_S = 0.01


def run_loop(
    screen: Screen,
    feed: Feed,
    settings: ViewSettings,
    state: UIState,
    recorder: SnapshotSink | None = None,
    clock: Callable[[], float] = time.monotonic,
    alerts: Callable[[], FooterAlerts] | None = None,
) -> UIState:
    """Run until the user quits; returns the final state. `alerts` gives
    the alerts firing after each snapshot, for the footer."""
    view = View(settings)
    note = getattr(feed, "note", None)  # a remark for the status line (replay_status)
    latest: Snapshot | None = None
    height, width = screen.size()
    dirty = True
    while not state.quit:
        due = feed.next_due()
        if due is not None and clock() >= due:
            snap = feed.poll(clock())
            if snap is not None:
                if recorder is not None:
                    recorder.write(snap)
                latest = snap
                if not state.paused:
                    view.set_snapshot(snap)
                    if alerts is not None:
                        view.set_alerts(alerts())
                    dirty = True
        if note is not None and (text := note()) != view.note:
            view.set_note(text)
            dirty = True
        ended = feed.next_due() is None
        if ended != state.ended:
            state = replace(state, ended=ended)
            dirty = True
        if dirty:
            screen.paint(view.frame(state, width, height))
            dirty = False
        due = feed.next_due()
        wait = MAX_WAIT_S if due is None else due - clock()
        key = screen.read_key(min(max(wait, MIN_WAIT_S), MAX_WAIT_S))
        if key is None:
            continue
        dirty = True
        if key == "RESIZE":
            height, width = screen.size()
            continue
        new = apply_key(state, key, len(view.rows(state)), view.page_size(height))
        if state.paused and not new.paused and latest is not None and latest is not view.snapshot:
            view.set_snapshot(latest)
        state = new
    return state


def run_ui(
    config: UIConfig,
    feed: Feed,
    recorder: SnapshotSink | None = None,
    *,
    session: Callable[[], contextlib.AbstractContextManager[Screen]] | None = None,
    clock: Callable[[], float] = time.monotonic,
    alerts: Callable[[], FooterAlerts] | None = None,
) -> int:
    """Show the curses UI until q, Ctrl-C, SIGTERM or SIGHUP; returns 0.

    Snapshots go to `recorder` as they arrive, paused or not. The feed and
    the recorder are closed on the way out. `session` (the curses session by
    default) and `clock` are replaceable for tests."""
    if session is None:
        from netmon.ui.curses_ui import curses_session

        session = curses_session
    with exit_on_signals():
        try:
            with session() as screen:
                settings = ViewSettings(
                    interval_s=config.interval_s,
                    alpha=config.alpha,
                    threshold_bps=config.threshold_bps,
                    unicode=screen.unicode,
                    note="detectors re-run" if getattr(config, "replay", None) else "",
                    detectors=tuple(getattr(config, "detectors", ())),
                )
                state = UIState(show_kernel=config.show_kernel, numeric=config.numeric)
                run_loop(screen, feed, settings, state, recorder, clock, alerts)
        except (KeyboardInterrupt, SignalExit):
            pass  # the terminal is already restored: a normal, clean exit
        finally:
            try:
                feed.close()
            finally:
                if recorder is not None:
                    recorder.close()
    return 0
