"""`--replay FILE`: play a recording (or any `--json` output) at its pace.

The file is read one line at a time as snapshots fall due, so memory does
not depend on the file's size and `--count 1` reads one line. A FIFO plays
as its writer produces; with `follow`, a regular file is also read as it
grows (like `tail -f`). Needs neither root nor bcc, and runs on any OS.

What is accepted, and what happens otherwise:
- a line longer than MAX_LINE_BYTES, a line that is not UTF-8 or not a valid
  snapshot (every field is checked for type and range, see netmon.jsonl):
  a RecordingError naming the path and the line; the lines before it have
  already played;
- an incomplete last line (a recording cut short by a crash or a full disk)
  is dropped with a warning, the lines before it play;
- a jump forward in `ts` longer than max_gap_s(interval_s) is played as that
  long, with a warning; time going backwards (concatenated recordings)
  plays the next snapshot at once.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator

from netmon.errors import RecordingError
from netmon.jsonl import SnapshotFormatError, is_cut_short, loads
from netmon.model import Snapshot

log = logging.getLogger("netmon.replay")

MAX_LINE_BYTES = 64 * 1024 * 1024  # about 250,000 flows in one snapshot
_CHUNK = 256 * 1024

# Gaps in `ts`: each wait is at most twice the snapshot's own interval_s,
# never less than MIN_GAP_S (so ordinary jitter plays as recorded) and never
# more than MAX_GAP_S (the longest --interval).
MIN_GAP_S = 1.0
MAX_GAP_S = 3600.0

# While a FIFO or a followed file has nothing new, look again this often.
RETRY_S = 0.1


def max_gap_s(interval_s: float) -> float:
    """The longest wait before a snapshot that covers `interval_s` seconds."""
    return min(max(2.0 * interval_s, MIN_GAP_S), MAX_GAP_S)


Warn = Callable[[str], None]


class ReplayFeed:
    """Plays snapshots at the pace of their `ts`, divided by `speed`.

    `snapshots` yields a Snapshot, or None when the next one has not arrived
    yet (a FIFO, a followed file); then the feed looks again RETRY_S later.
    The first snapshot is due when it is read; each next one the (capped)
    ts gap later, so a late arrival plays at once and the rest keep pace."""

    def __init__(
        self,
        snapshots: Iterable[Snapshot | None],
        speed: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        warn: Warn | None = None,
    ) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self._source: Iterator[Snapshot | None] = iter(snapshots)
        self._speed = speed
        self._clock = clock
        self._warn = warn if warn is not None else _log_warning
        self._pending: Snapshot | None = None
        self._due = 0.0  # of _pending
        self._last: tuple[float, float] | None = None  # (ts, due) of the last one read
        self._retry_at: float | None = None
        self._ended = False
        self._closed = False
        self.gaps_shortened = 0
        self.gap_limit_s: float | None = None  # what the last one was shortened to

    def _fetch(self) -> None:
        """Read the next snapshot into _pending if there is one by now."""
        if self._pending is not None or self._ended:
            return
        now = self._clock()
        if self._retry_at is not None and now < self._retry_at:
            return
        try:
            snap = next(self._source)
        except StopIteration:
            self._ended = True
            return
        except BaseException:
            self._ended = True  # a bad line: nothing after it plays
            raise
        if snap is None:
            self._retry_at = now + RETRY_S
            return
        self._retry_at = None
        if self._last is None:
            due = now
        else:
            last_ts, last_due = self._last
            gap = max(snap.ts - last_ts, 0.0)
            limit = max_gap_s(snap.interval_s)
            if gap > limit:
                self.gaps_shortened += 1
                self.gap_limit_s = limit
                self._warn(
                    f"the recording jumps {gap:.6g} s ahead (at ts {snap.ts:.6f}); "
                    f"played as {limit:g} s"
                )
                gap = limit
            due = last_due + gap / self._speed
        self._pending, self._due = snap, due
        self._last = (snap.ts, due)

    def next_due(self) -> float | None:
        if self._closed:
            return None
        self._fetch()
        if self._pending is not None:
            return self._due
        if self._ended:
            return None
        return self._retry_at

    def poll(self, now: float) -> Snapshot | None:
        due = self.next_due()
        snap = self._pending
        if snap is None or due is None or now < due:
            return None
        self._pending = None
        return snap

    def close(self) -> None:
        self._closed = True
        close = getattr(self._source, "close", None)
        if close is not None:
            close()


def _log_warning(message: str) -> None:
    log.warning("%s", message)


class RecordingReader:
    """Snapshots from an open file descriptor, one line at a time.

    Yields None when a FIFO or a followed file has nothing new yet. Raises
    RecordingError for a bad line or an empty recording."""

    def __init__(self, path: str, fd: int, *, follow: bool = False, warn: Warn | None = None):
        self.path = path
        self._fd: int | None = fd
        self._follow = follow
        self._warn = warn if warn is not None else _log_warning
        self._buf = bytearray()
        self._pos = 0  # start of the next line in _buf
        self._scan = 0  # where to look for the next newline
        self._eof = False
        self.line_no = 0  # of the last line handed out
        self.snapshots = 0

    def __iter__(self) -> RecordingReader:
        return self

    def __next__(self) -> Snapshot | None:
        while True:
            got = self._next_line()
            if got is None:
                return None
            if got is _EOF:
                if not self.snapshots:
                    raise RecordingError(f"{self.path}: empty recording (no snapshots)")
                raise StopIteration
            assert isinstance(got, tuple)
            raw, complete = got
            if not raw.strip():
                continue
            snap = self._parse(raw, complete)
            if snap is not None:
                self.snapshots += 1
                return snap

    def _parse(self, raw: bytes, complete: bool) -> Snapshot | None:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            if not complete and self.snapshots:
                self._drop_last_line()  # a multibyte character cut in two
                return None
            raise RecordingError(f"{self.path}: line {self.line_no}: not valid UTF-8") from None
        if not complete and is_cut_short(text):
            if not self.snapshots:
                raise RecordingError(
                    f"{self.path}: line {self.line_no}: truncated line at end of file"
                )
            self._drop_last_line()
            return None
        try:
            return loads(text, self.line_no)
        except SnapshotFormatError as exc:
            raise RecordingError(f"{self.path}: {exc}") from None

    def _drop_last_line(self) -> None:
        self._warn(
            f"{self.path}: line {self.line_no}: incomplete last line ignored "
            "(the recording was cut short)"
        )

    def _next_line(self) -> tuple[bytes, bool] | object | None:
        """(line without its newline, True), (last bytes without a newline,
        False) at end of file, _EOF, or None if nothing more has arrived."""
        buf = self._buf
        while True:
            newline = buf.find(b"\n", self._scan)
            if newline >= 0:
                line = bytes(buf[self._pos : newline])
                self._pos = self._scan = newline + 1
                self.line_no += 1
                if len(line) > MAX_LINE_BYTES:
                    raise self._too_long()
                return line, True
            self._scan = len(buf)
            if len(buf) - self._pos > MAX_LINE_BYTES:
                self.line_no += 1
                raise self._too_long()
            if self._eof:
                if self._pos < len(buf):
                    rest = bytes(buf[self._pos :])
                    self._pos = self._scan = len(buf)
                    self.line_no += 1
                    return rest, False
                return _EOF
            if self._pos:  # keep only the unfinished line
                del buf[: self._pos]
                self._scan -= self._pos
                self._pos = 0
            chunk = self._read()
            if chunk is None:
                return None
            if not chunk:
                if self._follow:
                    return None
                self._eof = True
            buf += chunk

    def _read(self) -> bytes | None:
        if self._fd is None:
            return b""
        try:
            return os.read(self._fd, _CHUNK)
        except BlockingIOError:
            return None
        except OSError as exc:
            raise RecordingError(f"{self.path}: cannot read recording: {exc.strerror}") from None

    def _too_long(self) -> RecordingError:
        return RecordingError(
            f"{self.path}: line {self.line_no}: longer than {MAX_LINE_BYTES // 2**20} MiB "
            "(not a recording?)"
        )

    def close(self) -> None:
        """Safe to call twice."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


_EOF = object()


def open_recording(path: str, *, follow: bool = False, warn: Warn | None = None) -> RecordingReader:
    """Open `path` for replay. A FIFO blocks here until a writer opens it,
    then is read without blocking."""
    flags = os.O_RDONLY
    for name in ("O_CLOEXEC", "O_NOCTTY", "O_BINARY"):  # not all exist on every OS
        flags |= getattr(os, name, 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise RecordingError(f"{path}: cannot read recording: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise RecordingError(f"{path}: cannot read recording: is a directory")
        if not stat.S_ISREG(mode) and hasattr(os, "set_blocking"):
            os.set_blocking(fd, False)  # FIFOs, sockets, terminals, devices
    except OSError as exc:
        os.close(fd)
        raise RecordingError(f"{path}: cannot read recording: {exc.strerror}") from None
    except RecordingError:
        os.close(fd)
        raise
    return RecordingReader(path, fd, follow=follow, warn=warn)


def open_replay_feed(
    path: str,
    speed: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    *,
    follow: bool = False,
    warn: Warn | None = None,
) -> ReplayFeed:
    """A Feed playing `path`. The first line is read now, so a file that is
    missing, empty or bad from its first line fails before anything starts
    (unless it is a FIFO or followed, where the first line may come later)."""
    reader = open_recording(path, follow=follow, warn=warn)
    feed = ReplayFeed(reader, speed, clock, warn=warn)
    try:
        feed.next_due()
    except BaseException:
        feed.close()
        raise
    return feed
