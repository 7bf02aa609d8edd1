"""Per process name and protocol counters for the metrics, that never go down.

netmon's per-flow totals only grow, but flows come and go: the metrics
engine forgets a flow absent from the kernel table for a while, a process
exits, a name changes. Summing the current flows per name would go down when
they do. So the book keeps, per flow in the last snapshot, the counters it
had, and adds each flow's increase since then to its name's totals. A flow
seen for the first time (or again, after netmon forgot it) adds all it has:
netmon counts from zero when capture starts and when it re-creates a flow.
A counter smaller than the last one seen means the flow restarted: all of
it is new.

Cardinality: Prometheus stores one series per label value, forever. The
busiest `max_names` process names get their own label value; the others are
summed into `process="other"`. When a name has traffic and a slot is free,
the busiest such names (bytes in that interval) are admitted. A name keeps
its slot until it has moved nothing for `idle_s` seconds; its series then
leaves the output and its totals are remembered (for `remember` names), so
that if it is admitted again its counters go on from where they were. Bytes
go to exactly one place at a time, so every counter, `other` included, only
grows. A process literally named "other" is counted in `other`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from netmon.export.snapshot_view import Counts, FlowColumns
from netmon.model import FlowKey
from netmon.ui.text import sanitize

OTHER = "other"
DEFAULT_MAX_NAMES = 50
DEFAULT_IDLE_S = 15 * 60.0

# protocol -> [bytes_sent, bytes_recv, packets_sent, packets_recv]
_PerProtocol = dict[str, list[int]]


@lru_cache(maxsize=4096)
def label_for(comm: str) -> str:
    """A process name as a label value: control characters in caret
    notation (a scrape shown on a terminal cannot carry escape sequences)."""
    return sanitize(comm) or "unknown"


def _add(into: _PerProtocol, protocol: str, amount: Iterable[int]) -> None:
    row = into.setdefault(protocol, [0, 0, 0, 0])
    for i, value in enumerate(amount):
        row[i] += value


@dataclass
class _Name:
    totals: _PerProtocol = field(default_factory=dict)
    last_active: float = 0.0


@dataclass(frozen=True)
class TrafficRow:
    process: str  # a label value: an admitted name or "other"
    protocol: str
    counts: Counts


class TrafficBook:
    def __init__(
        self,
        max_names: int = DEFAULT_MAX_NAMES,
        idle_s: float = DEFAULT_IDLE_S,
        remember: int | None = None,
    ) -> None:
        if max_names < 0:
            raise ValueError(f"max_names must be >= 0, got {max_names}")
        self.max_names = max_names
        self.idle_s = idle_s
        self.remember = 10 * max_names if remember is None else remember
        # The last snapshot's flows: their keys (kept alive, so that their
        # ids stay theirs), the keys' ids and their counters, row by row.
        self._last_keys: Sequence[FlowKey] = ()
        self._last_ids = np.zeros(0, dtype=np.uint64)
        self._last_counts = np.zeros((0, 4), dtype=np.uint64)
        self._names: dict[str, _Name] = {}
        self._retired: OrderedDict[str, _PerProtocol] = OrderedDict()
        self._other: _PerProtocol = {}

    def update(self, flows: FlowColumns, now: float) -> None:
        """Fold in one snapshot's flows; `now` is its time in seconds."""
        moved = self._moved(flows)
        self._expire(now)
        self._admit(moved, now)
        for name, per_protocol in moved.items():
            slot = self._names.get(name)
            if slot is not None:
                slot.last_active = now
            target = slot.totals if slot is not None else self._other
            for protocol, amount in per_protocol.items():
                _add(target, protocol, amount)

    def _previous_rows(self, keys: Sequence[FlowKey], ids: np.ndarray) -> np.ndarray:
        """Each flow's row in the last snapshot, -1 if it was not there.

        The metrics engine hands out the same key object for a flow from one
        snapshot to the next, so keys are matched by identity first (on
        arrays: no per-flow hashing); keys that are only equal (a snapshot
        read from a file) by value."""
        last_ids = self._last_ids
        rows = np.full(len(keys), -1, dtype=np.int64)
        if len(last_ids):
            order = np.argsort(last_ids)
            at = np.minimum(np.searchsorted(last_ids[order], ids), len(last_ids) - 1)
            found = last_ids[order[at]] == ids
            rows[found] = order[at[found]]
        missing = np.flatnonzero(rows < 0)
        if len(missing) and len(self._last_keys):
            unmatched = np.ones(len(self._last_keys), dtype=bool)
            unmatched[rows[rows >= 0]] = False
            if unmatched.any():
                by_value = {self._last_keys[r]: r for r in np.flatnonzero(unmatched).tolist()}
                for i in missing.tolist():
                    rows[i] = by_value.get(keys[i], -1)
        return rows

    def _moved(self, flows: FlowColumns) -> dict[str, _PerProtocol]:
        """What each (name, protocol) moved since the last snapshot."""
        keys, counts = flows.keys, flows.counts
        ids = np.fromiter(map(id, keys), dtype=np.uint64, count=len(keys))
        rows = self._previous_rows(keys, ids)
        seen = rows >= 0
        before = np.zeros_like(counts)
        if seen.any():
            before[seen] = self._last_counts[rows[seen]].astype(counts.dtype)
        restarted = ~seen | (counts < before).any(axis=1)
        increase = np.where(restarted[:, None], counts, counts - before)
        self._last_keys, self._last_ids, self._last_counts = keys, ids, counts
        changed = np.flatnonzero(increase.any(axis=1))
        if not len(changed):
            return {}
        # Sum per (name, protocol) on arrays; names become labels per group.
        comms = flows.comms
        groups: dict[tuple[str, str], int] = {}
        group_of = np.fromiter(
            (
                groups.setdefault((comms[r], keys[r].protocol), len(groups))
                for r in changed.tolist()
            ),
            dtype=np.int64,
            count=len(changed),
        )
        sums = np.zeros((len(groups), 4), dtype=increase.dtype)
        np.add.at(sums, group_of, increase[changed])
        moved: dict[str, _PerProtocol] = {}
        for (comm, protocol), amount in zip(groups, sums.tolist(), strict=True):
            _add(moved.setdefault(label_for(comm), {}), protocol, amount)
        return moved

    def _expire(self, now: float) -> None:
        for name in [n for n, s in self._names.items() if now - s.last_active > self.idle_s]:
            self._retired[name] = self._names.pop(name).totals
            self._retired.move_to_end(name)
        while len(self._retired) > self.remember:
            self._retired.popitem(last=False)

    def _admit(self, moved: dict[str, _PerProtocol], now: float) -> None:
        free = self.max_names - len(self._names)
        if free <= 0:
            return
        waiting = [n for n in moved if n not in self._names and n != OTHER]
        waiting.sort(key=lambda n: (-sum(r[0] + r[1] for r in moved[n].values()), n))
        for name in waiting[:free]:
            self._names[name] = _Name(self._retired.pop(name, {}), now)

    @property
    def names(self) -> list[str]:
        """The admitted names."""
        return list(self._names)

    def rows(self) -> list[TrafficRow]:
        """Every series: admitted names, then other."""
        out = [
            TrafficRow(name, protocol, (r[0], r[1], r[2], r[3]))
            for name, slot in self._names.items()
            for protocol, r in slot.totals.items()
        ]
        out.extend(
            TrafficRow(OTHER, protocol, (r[0], r[1], r[2], r[3]))
            for protocol, r in self._other.items()
        )
        return out


class MonotonicTotal:
    """A cumulative value from a source that may restart (a replayed file,
    a re-created kernel entry): grows by each increase, never goes down."""

    def __init__(self) -> None:
        self._last: int | None = None
        self.total = 0

    def update(self, value: int) -> int:
        if self._last is None or value < self._last:
            self.total += value
        else:
            self.total += value - self._last
        self._last = value
        return self.total
