"""Host names of the peers: reverse lookups that never hold up a refresh.

Lookups (the C library's reverse lookup, which asks /etc/hosts and the
configured resolver, as nsswitch.conf says) run in a few worker threads.
`Resolver.request` only queues the addresses that have no answer yet and
returns at once; answers are picked up at the next request, so a name
shows one refresh after its answer came. Each address is looked up once:
then its answer (a name, or none) is kept for a while (positive and
negative TTLs), and an expired name stays shown until the new answer
replaces it. The lookups in flight and the answers kept are bounded, so a
resolver that never answers, or a scan of many peers, costs a bounded
amount of memory and threads.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from operator import attrgetter
from queue import SimpleQueue

from netmon.feed import Feed, flush_feed
from netmon.model import FlowKey, FlowTable, Snapshot, arrived_rows

Lookup = Callable[[str], "str | None"]

MAX_NAME = 253  # the longest DNS name, in characters


def reverse_lookup(ip: str) -> str | None:
    """The name of `ip` from /etc/hosts or DNS (PTR), or None when it has
    none or the lookup failed.

    socket.gethostbyaddr, not socket.getnameinfo: CPython calls
    getnameinfo(3) without releasing the GIL, so one lookup waiting on a
    resolver that does not answer would freeze every thread, the table and
    the capture included. (glibc's getnameinfo with NI_NAMEREQD is
    gethostbyaddr_r underneath: the same answer.)"""
    try:
        host = socket.gethostbyaddr(ip)[0]
    except (OSError, UnicodeError, ValueError):
        return None
    return host[:MAX_NAME] or None


@dataclass(frozen=True)
class ResolverSettings:
    workers: int = 4  # threads doing lookups
    max_in_flight: int = 256  # addresses queued or being looked up
    max_entries: int = 65536  # answers kept (names and no-names)
    positive_ttl_s: float = 3600.0  # a name is looked up again after this
    negative_ttl_s: float = 300.0  # an address without a name, or a failed lookup


@dataclass
class _Answer:
    name: str | None
    expires: float  # clock seconds


@dataclass
class _Shared:
    """What the workers and the caller share, under `lock`."""

    lock: threading.Condition = field(default_factory=threading.Condition)
    done: deque[tuple[str, str | None]] = field(default_factory=deque)
    busy: int = 0  # queued or running lookups
    stopped: bool = False


class Resolver:
    """Reverse lookups in a bounded pool. Only `request`, `names` and
    `close` are called from the main loop; none of them waits."""

    def __init__(
        self,
        lookup: Lookup | None = None,  # None: reverse_lookup
        clock: Callable[[], float] = time.monotonic,
        settings: ResolverSettings = ResolverSettings(),
    ) -> None:
        self._lookup = reverse_lookup if lookup is None else lookup
        self._clock = clock
        self.settings = settings
        self._answers: dict[str, _Answer] = {}  # in insertion order: oldest first
        self._in_flight: set[str] = set()
        # Addresses with a fresh answer or a lookup in flight: nothing to do.
        self._settled: set[str | None] = {None}  # (None: a flow without a peer)
        self._next_expiry = float("inf")
        self._walk_all = False  # the next request must check every address
        self._names: dict[str, str] = {}  # never changed once handed out
        self._jobs: SimpleQueue[str | None] = SimpleQueue()
        self._shared = _Shared()
        self._threads: list[threading.Thread] = []
        self.lookups = 0  # lookups started, for tests and benches

    def request(
        self, ips: Iterable[str | None], arrived: Iterable[str | None] | None = None
    ) -> None:
        """Queue lookups for the addresses without a fresh answer, in the
        given order (the busiest first) as far as there is room in flight.
        Picks up the answers that came in since the last call. `ips` is
        iterated twice when some addresses are new: not an iterator.

        `arrived`, when the caller knows it: the addresses of the flows that
        are new since the last call (a part of `ips`). Only those are then
        checked, unless the resolver has its own reason to walk all of
        `ips`: answers expired or were dropped, or the last call left
        addresses for lack of room in flight."""
        self._collect()
        now = self._clock()
        if now >= self._next_expiry:
            self._expire(now)
        if arrived is not None and not self._walk_all:
            ips = arrived
        self._walk_all = False
        if self._settled.issuperset(ips):  # the usual case, at C speed
            return
        room = self.settings.max_in_flight - len(self._in_flight)
        if room <= 0:
            self._walk_all = True
            return
        todo = set(ips)
        todo -= self._settled
        picked: list[str] = []
        for ip in ips:  # in order: the busiest first
            if ip in todo:
                todo.discard(ip)
                picked.append(ip)  # type: ignore[arg-type]  # (None is settled)
                if len(picked) >= room or not todo:
                    break
        self._walk_all = bool(todo)  # some are left for want of room
        with self._shared.lock:
            self._shared.busy += len(picked)
        for ip in picked:
            self._in_flight.add(ip)
            self._settled.add(ip)
            self._jobs.put(ip)
        self.lookups += len(picked)
        self._start_workers()

    def names(self) -> Mapping[str, str]:
        """Address -> name for every address with a known name. The mapping
        handed out never changes afterwards (a new one is made when answers
        come in)."""
        return self._names

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no lookup is queued or running (True), or `timeout`
        seconds (False). Answers are still picked up only by `request`."""
        with self._shared.lock:
            return self._shared.lock.wait_for(lambda: self._shared.busy == 0, timeout)

    def close(self) -> None:
        """Stop the workers once their current lookup returns; never waits
        (a lookup may be stuck on a resolver that does not answer)."""
        with self._shared.lock:
            self._shared.stopped = True
        for _ in self._threads:
            self._jobs.put(None)

    # -- internals ---------------------------------------------------------

    def _start_workers(self) -> None:
        wanted = min(self.settings.workers, len(self._in_flight))
        while len(self._threads) < wanted:
            thread = threading.Thread(
                target=_work,
                args=(self._jobs, self._lookup, self._shared),
                name=f"netmon-names-{len(self._threads)}",
                daemon=True,  # a lookup stuck on a dead resolver must not delay exit
            )
            thread.start()
            self._threads.append(thread)

    def _collect(self) -> None:
        done = self._shared.done
        if not done:
            return
        now = self._clock()
        names = dict(self._names)  # handed-out mappings stay as they were
        while done:
            ip, name = done.popleft()
            self._in_flight.discard(ip)
            ttl = self.settings.positive_ttl_s if name else self.settings.negative_ttl_s
            self._answers.pop(ip, None)  # re-inserted last: the newest
            self._answers[ip] = _Answer(name, now + ttl)
            self._next_expiry = min(self._next_expiry, now + ttl)
            if name:
                names[ip] = name
            else:
                names.pop(ip, None)
        while len(self._answers) > self.settings.max_entries:
            oldest = next(iter(self._answers))
            del self._answers[oldest]
            names.pop(oldest, None)
            self._settled.discard(oldest)
            self._walk_all = True  # a shown address may be the one dropped
        self._names = names

    def _expire(self, now: float) -> None:
        """Expired answers become due for a new lookup (the name stays
        shown until the new answer comes)."""
        expired = [ip for ip, a in self._answers.items() if a.expires <= now]
        self._settled.difference_update(ip for ip in expired if ip not in self._in_flight)
        self._walk_all = True
        for ip in expired:
            del self._answers[ip]
            self._answers[ip] = _Answer(self._names.get(ip), float("inf"))  # until re-answered
        self._next_expiry = min((a.expires for a in self._answers.values()), default=float("inf"))


def _work(jobs: SimpleQueue[str | None], lookup: Lookup, shared: _Shared) -> None:
    while True:
        ip = jobs.get()
        if ip is None:
            return
        try:
            name = lookup(ip)
        except Exception:  # an injected or failing lookup: no name
            name = None
        with shared.lock:
            if shared.stopped:
                return
            shared.done.append((ip, name if isinstance(name, str) and name else None))
            shared.busy -= 1
            shared.lock.notify_all()


_remote_ip = attrgetter("remote_ip")


class Peers(Iterable["str | None"]):
    """The flows' peers, in the flows' order (as often as iterated)."""

    def __init__(self, keys: Sequence[FlowKey]) -> None:
        self._keys = keys

    def __iter__(self) -> Iterator[str | None]:
        return map(_remote_ip, self._keys)


def remote_ips(keys: Sequence[FlowKey]) -> Peers:
    return Peers(keys)


class TableNamer:
    """Gives each snapshot's table the names of its peers: asks the resolver
    for them (with the peers of the flows new since the last table, when the
    table says which), and attaches the names known now."""

    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self._newest = 0  # the highest flow serial seen (FlowTable.uids)

    def named(self, table: FlowTable) -> FlowTable:
        arrived: list[str | None] | None = None
        if table.uids is not None:
            rows, self._newest = arrived_rows(table.uids, self._newest)
            keys = table.keys
            arrived = [keys[row].remote_ip for row in rows.tolist()]
        self.resolver.request(remote_ips(table.keys), arrived)
        return table.with_names(self.resolver.names())


class NamingFeed:
    """A feed whose snapshots carry the names of their peers: each snapshot
    asks for the names of its addresses and shows those already known."""

    def __init__(self, feed: Feed, resolver: Resolver) -> None:
        self._feed = feed
        self.resolver = resolver
        self._namer = TableNamer(resolver)

    def next_due(self) -> float | None:
        return self._feed.next_due()

    def poll(self, now: float) -> Snapshot | None:
        return self._named(self._feed.poll(now))

    def flush(self, now: float) -> Snapshot | None:
        return self._named(flush_feed(self._feed, now))

    def close(self) -> None:
        try:
            self._feed.close()
        finally:
            self.resolver.close()

    def _named(self, snap: Snapshot | None) -> Snapshot | None:
        if snap is None:
            return None
        return replace(snap, flows=self._namer.named(snap.table))
