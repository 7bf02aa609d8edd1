"""`new-peer`: a process past its learning period starts talking to a remote
address and port it has never used, and moves more than a few bytes there.

What is learned is per process name (netmon.alerts.keys: a thread number
dropped), so a restarted service keeps its peers. For `learn_s` after a name
is first seen, every peer it uses is learned; afterwards, a client flow to
an (address, port) not learned yet is flagged once it has moved
`floor_bytes`, then learned. A flagged flow stays reported for `hold_s`.
Server flows (a server's clients) are not peers a process chose: ignored.

Memory is bounded: at most `max_peers` peers per name (a name that uses
more is treated as one that talks to anyone: it is no longer flagged), and
at most `max_names` names (the least recently seen go).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Set
from dataclasses import dataclass, field

from netmon.alerts.detectors import Finding
from netmon.alerts.events import Subject
from netmon.alerts.keys import Arrivals, process_name
from netmon.export.snapshot_view import SnapshotView
from netmon.model import FlowKey
from netmon.units import format_bytes


@dataclass(frozen=True)
class NewPeerSettings:
    learn_s: float = 600.0
    floor_bytes: int = 16 * 1024
    hold_s: float = 30.0
    max_peers: int = 4096
    max_names: int = 4096


@dataclass
class _Name:
    first: float
    last: float
    peers: set[tuple[str, int]] = field(default_factory=set)
    full: bool = False


class NewPeerDetector:
    name = "new-peer"
    unit = "B"

    def __init__(self, settings: NewPeerSettings | None = None) -> None:
        self.settings = settings or NewPeerSettings()
        self._names: OrderedDict[str, _Name] = OrderedDict()
        self._arrivals = Arrivals()
        self._pending: list[FlowKey] = []  # new peers below the byte floor so far
        self._held: dict[FlowKey, tuple[float, Finding]] = {}  # flagged -> until, finding

    def __len__(self) -> int:
        """Names held now."""
        return len(self._names)

    def detect(self, view: SnapshotView, firing: Set[Hashable]) -> list[Finding]:
        s = self.settings
        now = view.ts
        cols = view.flow_columns()
        keys = cols.keys
        new = self._arrivals.rows(keys, cols.uids)
        # The flows still below the floor, if they are still there.
        pending = self._arrivals.find(self._pending)
        rows = [*new.tolist(), *pending[pending >= 0].tolist()]
        self._pending = []
        kernel = view.flow_kernel()
        seen_names: set[str] = set()
        for row in rows:
            key = keys[row]
            if kernel[row] or key.role == "server" or key.remote_ip is None:
                continue
            comm = cols.comms[row]
            entry = self._touch(process_name(comm), now, seen_names)
            peer = (key.remote_ip, key.port)
            if entry.full or peer in entry.peers:
                continue
            if now - entry.first < s.learn_s:
                self._learn(entry, peer)
                continue
            moved = int(cols.counts[row, 0]) + int(cols.counts[row, 1])
            if moved < s.floor_bytes:
                self._pending.append(key)
                continue
            self._learn(entry, peer)
            self._held[key] = (now + s.hold_s, self._finding(key, comm, moved))
        for key in [k for k, (until, _) in self._held.items() if until <= now]:
            del self._held[key]
        return [f for _, f in self._held.values()]

    def _touch(self, name: str, now: float, seen: set[str]) -> _Name:
        entry = self._names.get(name)
        if entry is None:
            entry = self._names[name] = _Name(first=now, last=now)
            if len(self._names) > self.settings.max_names:
                self._names.popitem(last=False)
        elif name not in seen:
            self._names.move_to_end(name)
            entry.last = now
        seen.add(name)
        return entry

    def _learn(self, entry: _Name, peer: tuple[str, int]) -> None:
        if len(entry.peers) >= self.settings.max_peers:
            entry.full = True
            entry.peers.clear()
        else:
            entry.peers.add(peer)

    def _finding(self, key: FlowKey, comm: str, moved: int) -> Finding:
        peer = (
            f"[{key.remote_ip}]:{key.port}"
            if ":" in (key.remote_ip or "")
            else (f"{key.remote_ip}:{key.port}")
        )
        reason = f"first use of {peer} ({format_bytes(moved)} moved)"
        return Finding(key, Subject.of_flow_key(key, comm), float(moved),
                       float(self.settings.floor_bytes), reason, tag="new peer")  # fmt: skip
