"""A feed hands out snapshots when they are due; the UI and the JSON writer
drive it with their own clock, so tests can step it without sleeping."""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

import numpy as np

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


def keep_pids(snap: Snapshot, pids: frozenset[int]) -> Snapshot:
    """Only the flows and processes of `pids`; protocol totals stay whole."""
    table = snap.table
    return replace(
        snap,
        flows=table.take(np.isin(table.pid, np.fromiter(pids, np.int64, len(pids)))),
        processes=tuple(p for p in snap.processes if p.pid in pids),
    )


def flush_feed(feed: Feed, now: float) -> Snapshot | None:
    """The feed's last snapshot on shutdown, from feeds that can flush (the
    live feed); None from the others."""
    flush = getattr(feed, "flush", None)
    return flush(now) if flush is not None else None


class SnapshotFilter:
    """A feed that passes on its inner feed's snapshots, each cut down by
    `keep`."""

    def __init__(self, feed: Feed) -> None:
        self._feed = feed

    def keep(self, snap: Snapshot) -> Snapshot:
        raise NotImplementedError

    def next_due(self) -> float | None:
        return self._feed.next_due()

    def poll(self, now: float) -> Snapshot | None:
        snap = self._feed.poll(now)
        return None if snap is None else self.keep(snap)

    def flush(self, now: float) -> Snapshot | None:
        snap = flush_feed(self._feed, now)
        return None if snap is None else self.keep(snap)

    def close(self) -> None:
        self._feed.close()


class PidFilter(SnapshotFilter):
    """A feed that shows only some processes (`netmon --pid`)."""

    def __init__(self, feed: Feed, pids: frozenset[int]) -> None:
        super().__init__(feed)
        self._pids = pids

    def keep(self, snap: Snapshot) -> Snapshot:
        return keep_pids(snap, self._pids)


def _named(names: frozenset[str], service: str | None, cgroup: str | None) -> bool:
    """A service matches by its name or by its cgroup's path (with or
    without the leading slash)."""
    return (service is not None and service in names) or (
        cgroup is not None and (cgroup in names or cgroup.lstrip("/") in names)
    )


def keep_services(snap: Snapshot, names: frozenset[str]) -> Snapshot:
    """Only the flows and processes of these services (`netmon --service`);
    protocol totals stay whole."""
    table = snap.table
    cgroups = table.cgroups or [None] * len(table)
    mask = np.fromiter(
        (c is not None and _named(names, c.service, c.path) for c in cgroups),
        dtype=bool,
        count=len(table),
    )
    return replace(
        snap,
        flows=table.take(mask),
        processes=tuple(p for p in snap.processes if _named(names, p.service, p.cgroup)),
    )


class ServiceFilter(SnapshotFilter):
    """A feed that shows only some services (`netmon --service`)."""

    def __init__(self, feed: Feed, names: frozenset[str]) -> None:
        super().__init__(feed)
        self._names = names

    def keep(self, snap: Snapshot) -> Snapshot:
        return keep_services(snap, self._names)
