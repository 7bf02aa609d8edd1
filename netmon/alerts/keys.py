"""Stable names for what the detectors learn about.

The kernel records the name of the thread that moved the bytes, and
threads rename themselves ("DNS Resolver #12", "worker-3", "kworker/0:1"):
keying a baseline or a set of known peers on that would start from nothing
for every new thread. `process_name` drops such a trailing number, so
that the threads of one program share what is learned about it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from netmon.model import arrived_rows

_TRAILING_NUMBER = re.compile(r"(?:[\s#:/_.-]*\d+)+$")


@lru_cache(maxsize=8192)
def process_name(comm: str) -> str:
    """`comm` without a trailing thread number; unchanged if nothing is left."""
    stripped = _TRAILING_NUMBER.sub("", comm)
    return stripped or comm


class Arrivals:
    """Which rows of each snapshot hold a flow that was not in the previous one.

    With the metrics engine's flow serials (FlowTable.uids), a new flow is
    one with a serial above every serial seen so far: one comparison per
    row. Without them (a replay), the live source's habit of keeping one key
    object per flow is used: the objects' ids are compared, vectorised,
    instead of hashing every key on every interval. The previous snapshot's
    keys are held, so their ids cannot be reused meanwhile. A flow whose key
    object is new but equal to an old one (a replay makes new objects for
    every snapshot) counts as arriving again: the detectors treat a repeat
    as nothing new."""

    def __init__(self) -> None:
        self._held: Sequence[object] = ()
        self._ids = np.zeros(0, dtype=np.int64)  # sorted
        self._rows = np.zeros(0, dtype=np.int64)  # the row of each of _ids
        self._by_uid = False  # the last keys came with serials (_ids unused)
        self._newest = 0  # the highest serial seen

    def rows(self, keys: Sequence[object], uids: np.ndarray | None = None) -> np.ndarray:
        """The rows of `keys` that are new since the last call."""
        if uids is not None:
            new, self._newest = arrived_rows(uids, self._newest)
            self._held, self._by_uid = keys, True
            return new
        ids = np.fromiter(map(id, keys), np.int64, len(keys))
        order = np.argsort(ids)
        ids = ids[order]
        new = np.zeros(len(keys), dtype=bool)
        new[order] = self._lookup(ids) < 0  # sorted needles: a cache-friendly search
        self._held, self._ids, self._rows, self._by_uid = keys, ids, order, False
        return np.flatnonzero(new)

    def find(self, objects: Sequence[object]) -> np.ndarray:
        """The row of each of these very objects in the last keys given to
        `rows` (-1 where it is not there)."""
        if not objects:
            return np.zeros(0, dtype=np.int64)
        if self._by_uid:  # asked rarely (few objects): a pass over the rows
            wanted = {id(o): n for n, o in enumerate(objects)}
            found = np.full(len(objects), -1, dtype=np.int64)
            for row, key in enumerate(self._held):
                n = wanted.get(id(key))
                if n is not None:
                    found[n] = row
            return found
        return self._lookup(np.fromiter(map(id, objects), np.int64, len(objects)))

    def _lookup(self, ids: np.ndarray) -> np.ndarray:
        if not len(self._ids):
            return np.full(len(ids), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self._ids, ids), len(self._ids) - 1)
        return np.where(self._ids[pos] == ids, self._rows[pos], -1)
