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

_TRAILING_NUMBER = re.compile(r"(?:[\s#:/_.-]*\d+)+$")


@lru_cache(maxsize=8192)
def process_name(comm: str) -> str:
    """`comm` without a trailing thread number; unchanged if nothing is left."""
    stripped = _TRAILING_NUMBER.sub("", comm)
    return stripped or comm


class Arrivals:
    """Which rows of each snapshot hold a flow that was not in the previous one.

    The live source keeps one key object per flow while the flow lives, so
    this compares the objects' ids, vectorised, instead of hashing every key
    on every interval. The previous snapshot's keys are held, so their ids
    cannot be reused meanwhile. A flow whose key object is new but equal to
    an old one (a replay makes new objects for every snapshot) counts as
    arriving again: the detectors treat a repeat as nothing new."""

    def __init__(self) -> None:
        self._held: Sequence[object] = ()
        self._ids = np.zeros(0, dtype=np.int64)  # sorted
        self._rows = np.zeros(0, dtype=np.int64)  # the row of each of _ids

    def rows(self, keys: Sequence[object]) -> np.ndarray:
        """The rows of `keys` that are new since the last call."""
        ids = np.fromiter(map(id, keys), np.int64, len(keys))
        order = np.argsort(ids)
        ids = ids[order]
        new = np.zeros(len(keys), dtype=bool)
        new[order] = self._lookup(ids) < 0  # sorted needles: a cache-friendly search
        self._held, self._ids, self._rows = keys, ids, order
        return np.flatnonzero(new)

    def find(self, objects: Sequence[object]) -> np.ndarray:
        """The row of each of these very objects in the last keys given to
        `rows` (-1 where it is not there)."""
        return self._lookup(np.fromiter(map(id, objects), np.int64, len(objects)))

    def _lookup(self, ids: np.ndarray) -> np.ndarray:
        if not len(self._ids):
            return np.full(len(ids), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self._ids, ids), len(self._ids) - 1)
        return np.where(self._ids[pos] == ids, self._rows[pos], -1)
