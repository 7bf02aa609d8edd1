"""Flows that share a key.

Two kernel flows can end up with the same FlowKey: an IPv4 socket and an
IPv6 socket of one process talking to the same IPv4 host and port (the IPv6
one through an IPv4-mapped address, shown as IPv4, see netmon.peers). They
are one flow to whoever reads the table or the JSON (same process,
protocol, port, peer and side), so they are shown as one row with the sum of
their counters and rates. Each kernel flow keeps its own ledger slot, so
their counter restarts and their forgetting stay independent."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def twins(order: Sequence[int], keys: Sequence[Any], tie_starts: np.ndarray) -> np.ndarray | None:
    """For slots sorted by their full key (`order`, the slots; `keys`, each
    slot's key; `tie_starts`, 1 where a position's tie key differs from the
    previous one), each slot's first slot with an equal key; None when all
    keys differ (the usual case: nothing to merge)."""
    # Equal keys have equal ties: compare the full keys only where ties repeat.
    candidates = np.flatnonzero(tie_starts == 0)
    candidates = candidates[candidates > 0]
    if not len(candidates):
        return None
    same = np.array([keys[order[i]] == keys[order[i - 1]] for i in candidates.tolist()], bool)
    if not same.any():
        return None
    new_group = np.ones(len(order), dtype=bool)
    new_group[candidates[same]] = False
    slots = np.asarray(order, dtype=np.intp)
    first = slots[np.flatnonzero(new_group)]
    twin_of = np.empty(len(order), dtype=np.intp)
    twin_of[slots] = first[np.cumsum(new_group) - 1]
    return twin_of


def merge_twins(
    twin_of: np.ndarray, totals: np.ndarray, rate: np.ndarray, visible: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Totals and rates with each twin added to its first slot, and the
    slots to show (`visible` without the twins folded away)."""
    folded = twin_of != np.arange(len(twin_of))
    into, sources = twin_of[folded], np.flatnonzero(folded)
    totals, rate = totals.copy(), rate.copy()
    np.add.at(totals, into, totals[sources])
    np.add.at(rate, into, rate[sources])
    return totals, rate, visible & ~folded
