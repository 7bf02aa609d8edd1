"""Closed flows: the bytes of flows netmon no longer lists.

A flow leaves the table when its process exits, when it moved nothing for
the idle timeout (`--idle-timeout`), or when the kernel's table lost it long
ago; its counts then go into one aggregate, so that the listed flows plus
the closed ones never add up to less than before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CLOSED_FIELDS = ("flows", "bytes_sent", "bytes_recv", "packets_sent", "packets_recv")


@dataclass(frozen=True)
class ClosedFlows:
    """How many flows were closed, and what they moved in total."""

    flows: int = 0
    bytes_sent: int = 0
    bytes_recv: int = 0
    packets_sent: int = 0
    packets_recv: int = 0

    @property
    def bytes(self) -> int:
        return self.bytes_sent + self.bytes_recv

    def to_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in CLOSED_FIELDS}


class ClosedTally:
    """The running aggregate the metrics engine adds closed flows to."""

    def __init__(self) -> None:
        self._flows = 0
        self._counts = np.zeros(4, dtype=np.uint64)
        self.current = ClosedFlows()

    def add(self, totals: np.ndarray) -> None:
        """Add flows' totals (rows of bytes_sent, bytes_recv, packets_sent,
        packets_recv)."""
        if not len(totals):
            return
        self._flows += len(totals)
        self._counts += totals.sum(axis=0, dtype=np.uint64)
        self.current = ClosedFlows(self._flows, *(int(c) for c in self._counts))
