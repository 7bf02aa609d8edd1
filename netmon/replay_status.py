"""What the table says about a replay besides its snapshots.

When replay shortened long jumps in time, the status line says how many.
(Flags are not the recording's: the detectors run again on the recorded
snapshots, so the highlighted rows and the footer agree.)"""

from __future__ import annotations

from netmon.feed import Feed
from netmon.model import Snapshot
from netmon.sources.replay import ReplayFeed


def gaps_note(replay: ReplayFeed) -> str:
    """'gaps > 2s shortened: 3', or '' while none was."""
    if not replay.gaps_shortened or replay.gap_limit_s is None:
        return ""
    return f"gaps > {replay.gap_limit_s:g}s shortened: {replay.gaps_shortened}"


class ReplayStatus:
    """A replay's feed as the table plays it (the outermost feed): passes the
    snapshots on and tells the table what to say about them."""

    def __init__(self, feed: Feed, replay: ReplayFeed) -> None:
        self._feed = feed
        self._replay = replay  # the innermost feed, which knows the gaps

    def note(self) -> str:
        """For the status line."""
        return gaps_note(self._replay)

    def next_due(self) -> float | None:
        return self._feed.next_due()

    def poll(self, now: float) -> Snapshot | None:
        return self._feed.poll(now)

    def close(self) -> None:
        self._feed.close()
