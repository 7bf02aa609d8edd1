"""`fanout`: one process talking to many remote ports of one host (a port
scan), or to many hosts on one port (a host sweep), within a window.

Only the client side counts (a flow whose port is the remote one); a
server's many clients are not a scan. Each new flow adds its port to the
set of (pid, host) and its host to the set of (pid, protocol, port), with
the time; entries older than `window_s` fall out. A set that reaches
`ports` (or `hosts`) distinct entries fires; a firing set is reported
until it holds fewer than half as many.

Memory is bounded: a set holds at most `cap` entries (enough to say
"scan 64+ ports"), at most `max_keys` sets are kept (the least recently
active go), and a set with nothing in its window is dropped.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Set
from dataclasses import dataclass

from netmon.alerts.detectors import Finding
from netmon.alerts.events import Subject
from netmon.alerts.keys import Arrivals
from netmon.export.snapshot_view import SnapshotView
from netmon.model import FlowKey


@dataclass(frozen=True)
class FanoutSettings:
    ports: int = 15  # distinct ports of one host (Zeek's port scan)
    hosts: int = 25  # distinct hosts on one port (Zeek's address scan)
    window_s: float = 300.0
    cap: int = 64
    max_keys: int = 10_000


@dataclass(frozen=True)
class PortScanKey:
    pid: int
    remote_ip: str


@dataclass(frozen=True)
class HostSweepKey:
    pid: int
    protocol: str
    port: int


@dataclass
class _Set:
    comm: str
    last: float  # newest entry's time
    items: dict[Hashable, float]  # port or host -> when it was first seen
    flows: dict[Hashable, FlowKey]  # the flow that brought each entry


class FanoutDetector:
    name = "fanout"
    unit = "peers"

    def __init__(self, settings: FanoutSettings | None = None) -> None:
        self.settings = settings or FanoutSettings()
        self._sets: OrderedDict[Hashable, _Set] = OrderedDict()  # least recently active first
        self._arrivals = Arrivals()
        self._touched: set[Hashable] = set()  # sets that grew this interval

    def __len__(self) -> int:
        """Sets held now."""
        return len(self._sets)

    def detect(self, view: SnapshotView, firing: Set[Hashable]) -> list[Finding]:
        s = self.settings
        now = view.ts
        cols = view.flow_columns()
        keys = cols.keys
        for row in self._arrivals.rows(keys, cols.uids).tolist():
            key = keys[row]
            if key.role == "server" or key.remote_ip is None or key.port == 0:
                continue
            comm = cols.comms[row]
            self._add(PortScanKey(key.pid, key.remote_ip), key.port, key, comm, now)
            self._add(HostSweepKey(key.pid, key.protocol, key.port), key.remote_ip, key, comm, now)
        self._expire(now)
        found = []
        for set_key in {*self._touched, *(k for k in firing if k in self._sets)}:
            entry = self._sets.get(set_key)
            if entry is None:
                continue
            self._trim(entry, now)
            limit = s.ports if isinstance(set_key, PortScanKey) else s.hosts
            n = len(entry.items)
            if n >= limit or (set_key in firing and 2 * n >= limit):
                found.append(self._finding(set_key, entry, n, limit))
        self._touched.clear()
        return found

    def _add(self, set_key: Hashable, item: Hashable, flow: FlowKey, comm: str,
             now: float) -> None:  # fmt: skip
        entry = self._sets.get(set_key)
        if entry is None:
            entry = self._sets[set_key] = _Set(comm, now, {}, {})
            if len(self._sets) > self.settings.max_keys:
                self._sets.popitem(last=False)
        else:
            self._sets.move_to_end(set_key)
        entry.last = now
        entry.comm = comm
        if item not in entry.items:
            self._trim(entry, now)
            if len(entry.items) < self.settings.cap:
                entry.items[item] = now
                entry.flows[item] = flow
        self._touched.add(set_key)

    def _trim(self, entry: _Set, now: float) -> None:
        old = [i for i, t in entry.items.items() if t < now - self.settings.window_s]
        for i in old:
            del entry.items[i]
            del entry.flows[i]

    def _expire(self, now: float) -> None:
        """Drop the sets with nothing in their window (oldest first)."""
        while self._sets:
            set_key, entry = next(iter(self._sets.items()))
            if entry.last >= now - self.settings.window_s:
                break
            del self._sets[set_key]

    def _finding(self, set_key: Hashable, entry: _Set, n: int, limit: int) -> Finding:
        more = "+" if n >= self.settings.cap else ""
        flows = tuple(entry.flows.values())
        if isinstance(set_key, PortScanKey):
            subject = Subject("flow", set_key.pid, entry.comm, flows[-1].protocol,
                              flows[-1].family, None, set_key.remote_ip, "client")  # fmt: skip
            tag = f"scan {n}{more} ports"
            reason = f"{n}{more} ports of {set_key.remote_ip} in {self.settings.window_s:g} s"
        else:
            assert isinstance(set_key, HostSweepKey)
            subject = Subject("flow", set_key.pid, entry.comm, set_key.protocol,
                              flows[-1].family, set_key.port, None, "client")  # fmt: skip
            tag = f"sweep {n}{more} hosts"
            reason = f"{n}{more} hosts on port {set_key.port} in {self.settings.window_s:g} s"
        return Finding(set_key, subject, float(n), float(limit), reason, tag=tag, flows=flows)
