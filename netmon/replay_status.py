"""What the table says about a replay besides its snapshots.

A replay's rows carry the anomaly flags of the recording (made with the
recording's threshold), so the footer counts those and says so."""

from __future__ import annotations

from netmon.feed import Feed
from netmon.model import Snapshot


class ReplayStatus:
    """A replay's feed as the table plays it (the outermost feed): passes the
    snapshots on and tells the table what to say about them."""

    recorded_flags = True  # the rows' flags are the recording's

    def __init__(self, feed: Feed) -> None:
        self._feed = feed

    def next_due(self) -> float | None:
        return self._feed.next_due()

    def poll(self, now: float) -> Snapshot | None:
        return self._feed.poll(now)

    def close(self) -> None:
        self._feed.close()
