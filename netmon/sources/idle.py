"""Which flows of successive reads have moved nothing for a while.

The kernel's flow table loses entries only when it is full (LRU), so on a
server that runs for days a flow that stopped long ago would be read on
every refresh. The live source removes flows idle for the idle timeout;
this module tells which those are, row by row of each read.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

import numpy as np


class IdleRows:
    """Remembers, for each flow of the last read, its counters and since
    when they have not changed."""

    def __init__(self, timeout_ns: int) -> None:
        if timeout_ns <= 0:
            raise ValueError(f"idle timeout must be > 0, got {timeout_ns} ns")
        self.timeout_ns = timeout_ns
        self._ids: Sequence[Hashable] = []
        self._token: bytes | None = None
        self._counts = np.zeros((0, 4), dtype=np.uint64)
        self._since = np.zeros(0, dtype=np.int64)

    def idle(
        self,
        ids: Callable[[], Sequence[Hashable]],
        token: bytes | None,
        counts: np.ndarray,
        now_ns: int,
    ) -> np.ndarray:
        """Which rows of a read (`counts`, one row per flow) have had the same
        counters for at least the timeout. `ids` gives the rows' ids; an equal
        `token` means the same rows as last time, in the same order."""
        if token is None or token != self._token:
            self._align(ids(), now_ns)
            self._token = token
        changed = (counts != self._counts).any(axis=1)
        self._since[changed] = now_ns
        self._counts = counts.copy()
        idle: np.ndarray = now_ns - self._since >= self.timeout_ns
        return idle

    def drop(self, rows: np.ndarray) -> None:
        """Forget the flows at `rows` (a mask over the last read's rows): they
        were removed, and one that comes back starts anew."""
        keep = ~rows
        self._ids = [i for i, k in zip(self._ids, keep.tolist(), strict=True) if k]
        self._counts, self._since = self._counts[keep], self._since[keep]
        self._token = None

    def _align(self, ids: Sequence[Hashable], now_ns: int) -> None:
        """Carry each flow's state over to the rows of a new read; a flow
        not seen before is idle from now."""
        before = {row_id: n for n, row_id in enumerate(self._ids)}
        at = np.array([before.get(i, -1) for i in ids], dtype=np.intp)
        known = at >= 0
        counts = np.zeros((len(ids), 4), dtype=np.uint64)
        since = np.full(len(ids), now_ns, dtype=np.int64)
        counts[known] = self._counts[at[known]]
        since[known] = self._since[at[known]]
        self._ids, self._counts, self._since = ids, counts, since
