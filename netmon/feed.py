"""A feed hands out snapshots when they are due; the UI and the JSON writer
drive it with their own clock, so tests can step it without sleeping."""

from __future__ import annotations

from typing import Protocol

from netmon.model import Snapshot


class Feed(Protocol):
    def next_due(self) -> float | None:
        """Monotonic seconds at which poll() will have a new snapshot, or
        None when the feed is exhausted (end of a replay)."""
        ...

    def poll(self, now: float) -> Snapshot | None:
        """Return a new snapshot if one is due at `now` (monotonic seconds),
        else None."""
        ...

    def close(self) -> None:
        """Release the underlying source. Safe to call twice."""
        ...
