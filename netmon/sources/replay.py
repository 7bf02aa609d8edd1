"""`--replay FILE`: play a recording (or any `--json` output) at its pace.

The whole file is parsed up front, so a bad file fails before the UI starts,
with the line at fault. Needs neither root nor bcc, and runs on any OS.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Sequence

from netmon.errors import RecordingError
from netmon.jsonl import SnapshotFormatError, read_snapshots
from netmon.model import Snapshot


class ReplayFeed:
    """Snapshot i is due (ts_i - ts_0) / speed seconds after the start.

    Time going backwards in the file (concatenated recordings) does not
    move the schedule back: such snapshots follow the previous one at once."""

    def __init__(
        self,
        snapshots: Sequence[Snapshot],
        speed: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self._snapshots = list(snapshots)
        start = clock()
        self._due: list[float] = []
        due = start
        for i, snap in enumerate(self._snapshots):
            if i:
                due += max(snap.ts - self._snapshots[i - 1].ts, 0.0) / speed
            self._due.append(due)
        self._next = 0
        self._closed = False

    def __len__(self) -> int:
        return len(self._snapshots)

    def next_due(self) -> float | None:
        if self._closed or self._next >= len(self._snapshots):
            return None
        return self._due[self._next]

    def poll(self, now: float) -> Snapshot | None:
        due = self.next_due()
        if due is None or now < due:
            return None
        snap = self._snapshots[self._next]
        self._next += 1
        return snap

    def close(self) -> None:
        self._closed = True


def load_snapshots(path: str) -> list[Snapshot]:
    """All snapshots of a JSON Lines file; RecordingError names the path
    and, for bad content, the line."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise RecordingError(f"{path}: cannot read recording: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_no = data.count(b"\n", 0, exc.start) + 1
        raise RecordingError(f"{path}: line {line_no}: not valid UTF-8") from None
    try:
        snapshots = list(read_snapshots(io.StringIO(text, newline="\n")))
    except SnapshotFormatError as exc:
        raise RecordingError(f"{path}: {exc}") from None
    except RecursionError:
        raise RecordingError(f"{path}: nested too deeply to be a recording") from None
    if not snapshots:
        raise RecordingError(f"{path}: empty recording (no snapshots)")
    return snapshots


def open_replay_feed(
    path: str, speed: float = 1.0, clock: Callable[[], float] = time.monotonic
) -> ReplayFeed:
    """A Feed playing `path`; the first snapshot is due at once."""
    return ReplayFeed(load_snapshots(path), speed, clock)
