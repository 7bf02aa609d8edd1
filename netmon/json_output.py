"""--json: one snapshot per line on stdout until count, end of feed, or a stop."""

from __future__ import annotations

import contextlib
import select
import signal
import socket
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Protocol, TextIO, runtime_checkable

from netmon.feed import Feed
from netmon.jsonl import dumps
from netmon.model import Snapshot

# If a feed says a snapshot is due but has none (a skipped read) and does not
# move its schedule, wait this long rather than spin.
_RETRY_S = 0.1


class StopRequest(Protocol):
    """What run_json needs to know about stopping; threading.Event fits."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


@runtime_checkable
class Flushable(Protocol):
    def flush(self, now: float) -> Snapshot | None:
        """A snapshot of everything counted up to now, off schedule."""
        ...


class SignalStop:
    """A stop flag that a signal handler can set safely.

    threading.Event.set() takes a lock, which can deadlock if the signal lands
    while the main thread holds it; a byte on a socketpair cannot, and wakes
    the select() in wait() at once."""

    def __init__(self) -> None:
        self._requested = False
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)

    def set(self) -> None:
        self._requested = True
        with contextlib.suppress(OSError):  # already woken, or closed
            self._w.send(b"\0")

    def is_set(self) -> bool:
        return self._requested

    def wait(self, timeout: float | None = None) -> bool:
        if not self._requested:
            select.select([self._r], [], [], timeout)
        with contextlib.suppress(OSError):  # BlockingIOError once drained
            while self._r.recv(64):
                pass
        return self._requested

    def close(self) -> None:
        self._r.close()
        self._w.close()


@contextlib.contextmanager
def stop_on_signals(
    stop: SignalStop, signums: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)
) -> Iterator[None]:
    """Route SIGINT/SIGTERM to `stop` for the duration; restores the old handlers.
    Does nothing outside the main thread, where handlers cannot be installed."""

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous: dict[int, signal.Handlers | Callable[[int, FrameType | None], object] | int | None]
    previous = {}
    try:
        for signum in signums:
            previous[signum] = signal.signal(signum, handler)
    except ValueError:
        pass  # not the main thread
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _write(out: TextIO | None, encode: Callable[[Snapshot], str], snap: Snapshot) -> None:
    if out is None:
        return
    out.write(encode(snap) + "\n")
    out.flush()


def run_json(
    feed: Feed,
    out: TextIO | None,
    count: int | None = None,
    clock: Callable[[], float] = time.monotonic,
    wait: Callable[[float], object] | None = None,
    *,
    stop: StopRequest | None = None,
    encode: Callable[[Snapshot], str] = dumps,
) -> int:
    """Write one JSON line per snapshot; returns the exit status (0).

    Stops after `count` objects, when the feed is exhausted, or when `stop` is
    set. On a stop, a feed that can flush (the live feed) contributes one last
    object covering everything counted up to that moment. `wait(seconds)`
    blocks until the next snapshot is due or a stop arrives; it defaults to
    `stop.wait`, or time.sleep without a stop. `encode` makes a snapshot's
    line. With `out` None nothing is written: the feed is only driven (the
    service without --json)."""
    if wait is None:
        wait = stop.wait if stop is not None else time.sleep
    written = 0
    while count is None or written < count:
        if stop is not None and stop.is_set():
            if isinstance(feed, Flushable):
                snap = feed.flush(clock())
                if snap is not None:
                    _write(out, encode, snap)
            return 0
        due = feed.next_due()
        if due is None:
            return 0
        now = clock()
        if now < due:
            wait(due - now)
            continue
        snap = feed.poll(now)
        if snap is None:
            after = feed.next_due()
            if after is not None and after <= now:
                wait(_RETRY_S)
            continue
        _write(out, encode, snap)
        written += 1
    return 0
