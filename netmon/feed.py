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


class PidFilter:
    """A feed that shows only some processes (`netmon --pid`)."""

    def __init__(self, feed: Feed, pids: frozenset[int]) -> None:
        self._feed = feed
        self._pids = pids

    def next_due(self) -> float | None:
        return self._feed.next_due()

    def poll(self, now: float) -> Snapshot | None:
        snap = self._feed.poll(now)
        return None if snap is None else keep_pids(snap, self._pids)

    def flush(self, now: float) -> Snapshot | None:
        """Forwarded to feeds that can flush (the live feed), else None."""
        flush = getattr(self._feed, "flush", None)
        snap = flush(now) if flush is not None else None
        return None if snap is None else keep_pids(snap, self._pids)

    def close(self) -> None:
        self._feed.close()


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


class ServiceFilter(PidFilter):
    """A feed that shows only some services (`netmon --service`)."""

    def __init__(self, feed: Feed, names: frozenset[str]) -> None:
        super().__init__(feed, frozenset())
        self._names = names

    def poll(self, now: float) -> Snapshot | None:
        snap = self._feed.poll(now)
        return None if snap is None else keep_services(snap, self._names)

    def flush(self, now: float) -> Snapshot | None:
        flush = getattr(self._feed, "flush", None)
        snap = flush(now) if flush is not None else None
        return None if snap is None else keep_services(snap, self._names)
