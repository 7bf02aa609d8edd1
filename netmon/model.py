"""Data passed between the layers: source -> metrics -> view/output.

Counters are cumulative since capture started. A source produces a
`RawSample`; the metrics engine turns consecutive samples into a `Snapshot`,
which is what the JSON output, the recorder, the replayer and the UI share.

With thousands of flows, per-flow objects made on every interval cost more
than everything else, so the many-row parts are held as columns (numpy
arrays, one row per flow): `FlowReadings` and `ProcessReadings` in a
RawSample, `FlowTable` in a Snapshot. They still read as the mappings and
sequences of per-flow records below (made on demand), and a RawSample or a
Snapshot built from plain records converts them to columns once.
"""

from __future__ import annotations

from collections.abc import (
    Callable,
    Collection,
    Hashable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, TypeVar, overload

import numpy as np

from netmon.closed import ClosedFlows

COUNT_FIELDS = ("bytes_sent", "bytes_recv", "packets_sent", "packets_recv")


@dataclass(frozen=True, order=True, slots=True)
class FlowKey:
    """One flow: a process talking one protocol to one service port and peer."""

    pid: int
    protocol: str  # "TCP", "UDP", "ICMP", "ICMPv6", "RAW", "PACKET"
    family: str  # "IPv4", "IPv6", "PACKET"
    port: int  # service port: local for servers, remote for clients, 0 if none
    remote_ip: str | None
    role: str  # "client", "server" or "unknown"


def flow_tie(key: FlowKey) -> tuple[int, str, int, str]:
    """The table's order among rows equal in the sort column: a process's
    flows stay together; rows equal here too keep the snapshot's order."""
    return (key.pid, key.protocol, key.port, key.remote_ip or "")


def flow_order(key: FlowKey) -> tuple[int, str, int, str, str, str]:
    """A snapshot's order among flows of equal rate: flow_tie, then the rest
    of the key. (FlowKey's own ordering fails when comparing remote_ip None
    with a string.)"""
    return (key.pid, key.protocol, key.port, key.remote_ip or "", key.family, key.role)


@dataclass(frozen=True, slots=True)
class Cgroup:
    """The cgroup (v2) that moved a flow's bytes, as shown: its path under the
    cgroup2 mount ("/system.slice/nginx.service") and the service or
    container it stands for ("nginx.service", "docker:3f2a1b0c9d8e"); see
    netmon.cgroups."""

    path: str
    service: str | None


@dataclass(frozen=True)
class FlowCounters:
    """Cumulative kernel counters for one flow at read time."""

    bytes_sent: int
    bytes_recv: int
    packets_sent: int
    packets_recv: int
    comm: str  # process name captured in the kernel at event time
    kernel: bool = False  # moved by a kernel thread
    cgroup_id: int = 0  # cgroup v2 id captured with the name; 0: unknown


@dataclass(frozen=True)
class ProcessCounters:
    """Cumulative kernel counters for one process (tgid)."""

    pid: int
    comm: str
    bytes_sent: int
    bytes_recv: int
    packets_sent: int
    packets_recv: int
    kernel: bool = False
    cgroup_id: int = 0


@lru_cache(maxsize=4096)
def decode_comm(raw: bytes) -> str:
    """A process name as the kernel stores it: UTF-8, NUL-terminated."""
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def _comm_array(names: Iterable[str]) -> np.ndarray:
    return np.array([n.encode("utf-8", "surrogateescape") for n in names], dtype=bytes)


def _counts_array(rows: Iterable[Sequence[int]]) -> np.ndarray:
    """(n, 4) counters: uint64 as the kernel has them, or Python ints for
    values that do not fit (a hand-made recording)."""
    rows = [tuple(r) for r in rows]
    values = [v for r in rows for v in r]
    fits = not values or (min(values) >= 0 and max(values) < 2**64)
    return np.array(rows, dtype=np.uint64 if fits else object).reshape(len(rows), 4)


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Readings(Mapping[K, V]):
    """Counters of many rows read at once, as columns.

    `ids` identify the rows from one read to the next (raw kernel keys for
    the live source); equal `rows_token`s promise equal ids in equal order,
    so a reader can skip matching rows one by one."""

    def __init__(
        self,
        ids: Sequence[Hashable] | Callable[[], Sequence[Hashable]],
        counts: np.ndarray,
        comm: np.ndarray,
        kernel: np.ndarray,
        rows_token: bytes | None = None,
        cgroup: np.ndarray | None = None,
    ) -> None:
        self._ids = ids
        self.counts = counts  # (n, 4): bytes_sent, bytes_recv, packets_sent, packets_recv
        self.comm = comm  # (n,) raw names (bytes)
        self.kernel = kernel  # (n,) bool: moved by a kernel thread
        # (n,) uint64 cgroup v2 ids, 0 where unknown
        self.cgroup = np.zeros(len(counts), np.uint64) if cgroup is None else cgroup
        self.rows_token = rows_token
        self._index: dict[Any, int] | None = None

    @property
    def ids(self) -> Sequence[Hashable]:
        if callable(self._ids):
            self._ids = self._ids()
        return self._ids

    def _key(self, row_id: Hashable) -> K:
        raise NotImplementedError

    def _record(self, row: int) -> V:
        raise NotImplementedError

    def _lookup(self) -> dict[Any, int]:
        if self._index is None:
            self._index = {self._key(i): n for n, i in enumerate(self.ids)}
        return self._index

    def __getitem__(self, key: K) -> V:
        return self._record(self._lookup()[key])

    def __iter__(self) -> Iterator[K]:
        return iter(self._lookup())

    def __len__(self) -> int:
        return len(self.counts)

    def __contains__(self, key: object) -> bool:
        return key in self._lookup()


class FlowReadings(Readings[FlowKey, FlowCounters]):
    """The kernel's flow table at one read. Reads as a mapping FlowKey ->
    FlowCounters; `key_of` turns a row's id into its FlowKey."""

    def __init__(
        self,
        ids: Sequence[Hashable] | Callable[[], Sequence[Hashable]],
        key_of: Callable[[Any], FlowKey],
        counts: np.ndarray,
        comm: np.ndarray,
        kernel: np.ndarray,
        rows_token: bytes | None = None,
        cgroup: np.ndarray | None = None,
    ) -> None:
        super().__init__(ids, counts, comm, kernel, rows_token, cgroup)
        self.key_of = key_of

    @classmethod
    def of(cls, flows: Mapping[FlowKey, FlowCounters]) -> FlowReadings:
        if isinstance(flows, FlowReadings):
            return flows
        keys = list(flows)
        values = [flows[k] for k in keys]
        return cls(
            ids=keys,
            key_of=_same_key,
            counts=_counts_array(
                (c.bytes_sent, c.bytes_recv, c.packets_sent, c.packets_recv) for c in values
            ),
            comm=_comm_array(c.comm for c in values),
            kernel=np.array([c.kernel for c in values], dtype=bool),
            cgroup=np.array([c.cgroup_id for c in values], dtype=np.uint64),
        )

    def _key(self, row_id: Hashable) -> FlowKey:
        return self.key_of(row_id)

    def _record(self, row: int) -> FlowCounters:
        c = self.counts[row].tolist()
        return FlowCounters(
            c[0], c[1], c[2], c[3], decode_comm(bytes(self.comm[row])), bool(self.kernel[row]),
            int(self.cgroup[row]),
        )  # fmt: skip


def _same_key(key: FlowKey) -> FlowKey:
    return key


class ProcessReadings(Readings[int, ProcessCounters]):
    """The kernel's per-process totals at one read; the ids are the pids."""

    @classmethod
    def of(cls, processes: Mapping[int, ProcessCounters]) -> ProcessReadings:
        if isinstance(processes, ProcessReadings):
            return processes
        pids = list(processes)
        values = [processes[p] for p in pids]
        return cls(
            ids=pids,
            counts=_counts_array(
                (c.bytes_sent, c.bytes_recv, c.packets_sent, c.packets_recv) for c in values
            ),
            comm=_comm_array(c.comm for c in values),
            kernel=np.array([c.kernel for c in values], dtype=bool),
            cgroup=np.array([c.cgroup_id for c in values], dtype=np.uint64),
        )

    def _key(self, row_id: Hashable) -> int:
        assert isinstance(row_id, int)
        return row_id

    def _record(self, row: int) -> ProcessCounters:
        c = self.counts[row].tolist()
        pid = self.ids[row]
        assert isinstance(pid, int)
        return ProcessCounters(
            pid, decode_comm(bytes(self.comm[row])), c[0], c[1], c[2], c[3], bool(self.kernel[row]),
            int(self.cgroup[row]),
        )  # fmt: skip


@dataclass(frozen=True)
class RawSample:
    """Everything a source read in one poll. Plain mappings given for
    `flows` and `processes` are turned into FlowReadings/ProcessReadings."""

    monotonic_ns: int  # CLOCK_MONOTONIC when the maps were read
    wall_time: float  # unix seconds at the same moment
    flows: Mapping[FlowKey, FlowCounters]
    processes: Mapping[int, ProcessCounters]
    protocols: dict[str, int]  # protocol name -> bytes (sent + received)
    dropped: int  # flows the kernel could not keep (evicted or failed inserts)
    # Processes that exited: the counts in this sample are their last.
    exited: frozenset[int] = frozenset()
    # What the cgroup ids of this sample's rows are (ids the source could
    # not name are missing).
    cgroups: Mapping[int, Cgroup] = field(default_factory=dict)
    # Ids of flows the source removed after this read (idle too long): the
    # counts in this sample are their last.
    retired: frozenset[Hashable] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "flows", FlowReadings.of(self.flows))
        object.__setattr__(self, "processes", ProcessReadings.of(self.processes))

    @property
    def flow_readings(self) -> FlowReadings:
        assert isinstance(self.flows, FlowReadings)
        return self.flows

    @property
    def process_readings(self) -> ProcessReadings:
        assert isinstance(self.processes, ProcessReadings)
        return self.processes


class FlowRates(Mapping[FlowKey, float]):
    """The smoothed rate (bytes/s) of each flow of one sample, in the
    sample's row order, so that a source can match them to what it read."""

    def __init__(self, readings: FlowReadings, rates: np.ndarray) -> None:
        self.readings = readings
        self.array = rates  # float64, one per row of `readings`

    def __getitem__(self, key: FlowKey) -> float:
        return float(self.array[self.readings._lookup()[key]])

    def __iter__(self) -> Iterator[FlowKey]:
        return iter(self.readings)

    def __len__(self) -> int:
        return len(self.array)


@dataclass(frozen=True)
class FlowStat:
    """One flow as shown and written out."""

    key: FlowKey
    comm: str
    bytes_sent: int
    bytes_recv: int
    packets_sent: int
    packets_recv: int
    rate_bps: float  # smoothed sent+received bytes/s
    anomaly: bool
    kernel: bool = False
    cgroup: str | None = None  # cgroup v2 path; None: unknown
    service: str | None = None  # what that cgroup stands for (netmon.cgroups)
    remote_name: str | None = None  # the peer's host name, when known
    detectors: tuple[str, ...] = ()  # the detectors whose alerts flag it now
    reason: str = ""  # their short tags, e.g. "> 8.1x usual"


# A flagged flow's (detector, tag) pairs.
Marks = Mapping["FlowKey", Sequence[tuple[str, str]]]


class FlowTable(Sequence[FlowStat]):
    """A snapshot's flows as columns, in the snapshot's order (highest rate
    first). Reads as a sequence of FlowStat, made when a row is looked at."""

    def __init__(
        self,
        keys: Sequence[FlowKey],
        comms: Sequence[str],
        counts: np.ndarray,
        rate_bps: np.ndarray,
        anomaly: np.ndarray,
        kernel: np.ndarray,
        tie_rank: np.ndarray | None = None,
        cgroups: Sequence[Cgroup | None] | None = None,
        names: Mapping[str, str] | None = None,
        marks: Marks | None = None,
        uids: np.ndarray | None = None,
        slots: np.ndarray | None = None,
        pid: np.ndarray | None = None,
    ) -> None:
        self.keys = keys
        self.comms = comms
        self.counts = counts  # (n, 4): bytes_sent, bytes_recv, packets_sent, packets_recv
        self.rate_bps = rate_bps  # float64
        self.anomaly = anomaly  # bool
        self.kernel = kernel  # bool
        self.cgroups = cgroups  # None: no row has one
        self.names: Mapping[str, str] = {} if names is None else names  # peer address -> name
        self._tie_rank = tie_rank
        self.marks: Marks = marks or {}  # flagged flows by the alert path
        # Row identities from the metrics engine (None in a table made from
        # records, such as a replay's). uids: each flow's serial, the same in
        # every snapshot while the flow lives, never reused, higher for a
        # later flow. slots: small indices the engine reuses, for per-flow
        # caches that check them against uids. They spare the per-interval
        # consumers (detectors, names) hashing every key.
        self.uids = uids
        self.slots = slots
        self._pid = pid  # each row's pid (int64), made from the keys if not given
        self._stats: dict[int, FlowStat] = {}

    @classmethod
    def from_stats(cls, stats: Iterable[FlowStat]) -> FlowTable:
        stats = list(stats)
        return cls(
            keys=[f.key for f in stats],
            comms=[f.comm for f in stats],
            counts=_counts_array(
                (f.bytes_sent, f.bytes_recv, f.packets_sent, f.packets_recv) for f in stats
            ),
            rate_bps=np.array([f.rate_bps for f in stats], dtype=np.float64),
            anomaly=np.array([f.anomaly for f in stats], dtype=bool),
            kernel=np.array([f.kernel for f in stats], dtype=bool),
            cgroups=_cgroups_of(stats),
            names={f.key.remote_ip: f.remote_name for f in stats
                   if f.remote_name is not None and f.key.remote_ip is not None},
        )  # fmt: skip

    def with_names(self, names: Mapping[str, str]) -> FlowTable:
        """The same rows (sharing the columns), with these peer names."""
        return self._sharing(self.anomaly, names, self.marks)

    def with_marks(self, anomaly: np.ndarray, marks: Marks) -> FlowTable:
        """The same rows (sharing the columns), flagged by the alert path."""
        return self._sharing(anomaly, self.names, marks)

    def _sharing(self, anomaly: np.ndarray, names: Mapping[str, str], marks: Marks) -> FlowTable:
        return FlowTable(self.keys, self.comms, self.counts, self.rate_bps, anomaly,
                         self.kernel, self._tie_rank, self.cgroups, names, marks,
                         self.uids, self.slots, self._pid)  # fmt: skip

    @property
    def pid(self) -> np.ndarray:
        if self._pid is None:
            self._pid = np.fromiter((k.pid for k in self.keys), np.int64, len(self.keys))
        return self._pid

    @property
    def tie_rank(self) -> np.ndarray:
        """Each row's rank by `flow_tie`: equal ties, equal ranks."""
        if self._tie_rank is None:
            self._tie_rank = dense_rank([flow_tie(k) for k in self.keys])
        return self._tie_rank

    def rows_of(self, keys: Collection[FlowKey]) -> dict[FlowKey, int]:
        """The row of each of `keys` that is in the table, without hashing
        every row's key: first by the key objects themselves (the live
        source keeps one object per flow), then by value among the rows of
        the same processes."""
        if not keys:
            return {}
        wanted = np.fromiter({id(k) for k in keys}, np.int64)
        ids = np.fromiter(map(id, self.keys), np.int64, len(self.keys))
        found: dict[FlowKey, int] = {}
        for row in np.flatnonzero(np.isin(ids, wanted)).tolist():
            found[self.keys[row]] = row
        missing = {k for k in keys if k not in found}
        if missing:
            pids = np.fromiter({k.pid for k in missing}, np.int64)
            for row in np.flatnonzero(np.isin(self.pid, pids)).tolist():
                key = self.keys[row]
                if key in missing:
                    found.setdefault(key, row)
        return found

    def take(self, rows: np.ndarray) -> FlowTable:
        """The rows at `rows` (indices or a mask), in that order."""
        index = np.flatnonzero(rows) if rows.dtype == bool else rows
        picked = index.tolist()
        return FlowTable(
            keys=list(map(self.keys.__getitem__, picked)),
            comms=list(map(self.comms.__getitem__, picked)),
            counts=self.counts[index],
            rate_bps=self.rate_bps[index],
            anomaly=self.anomaly[index],
            kernel=self.kernel[index],
            tie_rank=self.tie_rank[index],
            cgroups=None if self.cgroups is None else list(map(self.cgroups.__getitem__, picked)),
            names=self.names,
            marks=self.marks,
            uids=None if self.uids is None else self.uids[index],
            slots=None if self.slots is None else self.slots[index],
            pid=None if self._pid is None else self._pid[index],
        )

    def stat(self, row: int) -> FlowStat:
        stat = self._stats.get(row)
        if stat is None:
            c = self.counts[row].tolist()
            cg = None if self.cgroups is None else self.cgroups[row]
            stat = self._stats[row] = FlowStat(
                key=self.keys[row], comm=self.comms[row], bytes_sent=c[0], bytes_recv=c[1],
                packets_sent=c[2], packets_recv=c[3], rate_bps=float(self.rate_bps[row]),
                anomaly=bool(self.anomaly[row]), kernel=bool(self.kernel[row]),
                cgroup=None if cg is None else cg.path, service=None if cg is None else cg.service,
                remote_name=self.names.get(self.keys[row].remote_ip or "") if self.names else None,
            )  # fmt: skip
            marks = self.marks.get(stat.key) if self.marks else None
            if marks:
                stat = self._stats[row] = replace(
                    stat, detectors=tuple(dict.fromkeys(d for d, _ in marks)),
                    reason=", ".join(t for _, t in marks if t),
                )  # fmt: skip
        return stat

    def __len__(self) -> int:
        return len(self.keys)

    @overload
    def __getitem__(self, index: int) -> FlowStat: ...
    @overload
    def __getitem__(self, index: slice) -> list[FlowStat]: ...
    def __getitem__(self, index: int | slice) -> FlowStat | list[FlowStat]:
        if isinstance(index, slice):
            return [self.stat(i) for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("flow row out of range")
        return self.stat(index)

    def __iter__(self) -> Iterator[FlowStat]:
        return (self.stat(i) for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FlowTable | tuple | list):
            return tuple(self) == tuple(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"FlowTable({list(self)!r})"


class RowFinder:
    """Finds the rows of a few flow keys (the flows of the alerts firing now)
    in each new table, without hashing every row's key each time.

    A key found once is found again through its flow's slot and serial
    (FlowTable.slots, .uids), or by its serial alone when the engine moved
    it to another slot. A key not in the table can only come back as a new
    flow (a higher serial), so it is looked for among the new rows only.
    Keys asked for the first time are looked for everywhere."""

    def __init__(self) -> None:
        self._where: dict[FlowKey, tuple[int, int]] = {}  # key -> (slot, serial)
        self._absent: set[FlowKey] = set()  # not in any row up to _newest
        self._newest = 0  # the highest serial of the last table

    def rows(self, table: FlowTable, keys: Collection[FlowKey]) -> dict[FlowKey, int]:
        uids, slots = table.uids, table.slots
        if uids is None or slots is None:
            return table.rows_of(keys)
        row_of_slot = np.full(int(slots.max()) + 1 if len(slots) else 0, -1, dtype=np.int64)
        row_of_slot[slots] = np.arange(len(slots))
        found: dict[FlowKey, int] = {}
        gone: list[FlowKey] = []  # known, but not where it was
        fresh: list[FlowKey] = []
        for key in keys:
            where = self._where.get(key)
            if where is not None and where[0] < len(row_of_slot):
                row = int(row_of_slot[where[0]])
                if row >= 0 and uids[row] == where[1]:
                    found[key] = row
                    continue
            (gone if where is not None or key in self._absent else fresh).append(key)
        serial_of = {self._where[k][1]: k for k in gone if k in self._where}
        if serial_of:  # moved to another slot, or gone
            wanted = np.fromiter(serial_of, np.int64, len(serial_of))
            for row in np.flatnonzero(np.isin(uids, wanted)).tolist():
                found[serial_of[int(uids[row])]] = row
        gone = [k for k in gone if k not in found]
        if gone:  # back as a new flow?
            arrived, _ = arrived_rows(uids, self._newest)
            new_keys = {table.keys[row]: row for row in arrived.tolist()}
            found.update((k, new_keys[k]) for k in gone if k in new_keys)
        if fresh:
            found.update(table.rows_of(fresh))
        self._where = {k: (int(slots[r]), int(uids[r])) for k, r in found.items()}
        self._absent = {k for k in keys if k not in found}
        self._newest = max(self._newest, int(uids.max()) if len(uids) else 0)
        return found


def arrived_rows(uids: np.ndarray, newest: int) -> tuple[np.ndarray, int]:
    """The rows of flows that arrived after the flow with serial `newest`
    (FlowTable.uids: serials only grow), and the highest serial now."""
    new = np.flatnonzero(uids > newest)
    return new, (int(uids[new].max()) if len(new) else newest)


def _cgroups_of(stats: Sequence[FlowStat]) -> list[Cgroup | None] | None:
    """The Cgroup of each FlowStat (one object per distinct one), or None
    when none has any (a recording made before the fields existed)."""
    if all(f.cgroup is None for f in stats):
        return None
    made: dict[tuple[str, str | None], Cgroup] = {}
    return [
        None
        if f.cgroup is None
        else made.setdefault((f.cgroup, f.service), Cgroup(f.cgroup, f.service))
        for f in stats
    ]


def dense_rank(items: Sequence[Any]) -> np.ndarray:
    """Each item's rank in sorted order; equal items share a rank."""
    order = sorted(range(len(items)), key=items.__getitem__)
    ranks = np.empty(len(items), dtype=np.int64)
    rank, previous = -1, object()
    for i in order:
        if items[i] != previous:
            rank += 1
            previous = items[i]
        ranks[i] = rank
    return ranks


@dataclass(frozen=True)
class ProcessStat:
    pid: int
    comm: str
    bytes_sent: int
    bytes_recv: int
    rate_bps: float
    kernel: bool = False
    cgroup: str | None = None  # as in FlowStat
    service: str | None = None


@dataclass(frozen=True)
class Snapshot:
    """The state of the world after one poll: the JSON Lines contract.

    `flows` is always a FlowTable (a sequence of FlowStat given here is
    turned into one)."""

    ts: float  # unix seconds
    interval_s: float  # seconds covered since the previous snapshot
    flows: Sequence[FlowStat]
    processes: tuple[ProcessStat, ...]
    protocols: dict[str, int] = field(default_factory=dict)
    dropped: int = 0
    closed: ClosedFlows = field(default_factory=ClosedFlows)  # flows no longer listed

    def __post_init__(self) -> None:
        if not isinstance(self.flows, FlowTable):
            object.__setattr__(self, "flows", FlowTable.from_stats(self.flows))

    @property
    def table(self) -> FlowTable:
        assert isinstance(self.flows, FlowTable)
        return self.flows
