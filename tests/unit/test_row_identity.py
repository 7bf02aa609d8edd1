"""The metrics engine's flow serials and slots (FlowTable.uids, .slots) are
a shortcut for the per-interval consumers: with them or without them, the
detectors must find exactly the same things."""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np

from netmon.alerts.baseline import BaselineSettings
from netmon.alerts.choice import DETECTORS, make_detectors
from netmon.alerts.fanout import FanoutSettings
from netmon.alerts.newpeer import NewPeerSettings
from netmon.export.snapshot_view import SnapshotView
from netmon.metrics import MetricsEngine
from netmon.model import FlowCounters, FlowKey, FlowTable, RowFinder, Snapshot

from .helpers import fc, key, pc, sample

KB = 1024


def without_identities(snap: Snapshot) -> Snapshot:
    t = snap.table
    table = FlowTable(t.keys, t.comms, t.counts, t.rate_bps, t.anomaly, t.kernel, t.tie_rank,
                      t.cgroups, t.names, t.marks)  # fmt: skip
    return replace(snap, flows=table)


def traffic(seed: int, intervals: int) -> list[Snapshot]:
    """Busy, changing traffic: steady flows with spikes, a port scan, flows
    retired by the source (the engine's slots move), processes exiting and
    new ones starting."""
    rng = random.Random(seed)
    engine = MetricsEngine(0.4, 1e12, 1.0)
    counts: dict[FlowKey, list[int]] = {}
    comm_of: dict[int, str] = {}
    next_pid = 100
    snaps = []
    for t in range(intervals):
        retired: set[FlowKey] = set()
        exited: set[int] = set()
        if t % 7 == 3 and counts:  # the source retires a few idle flows
            retired = set(rng.sample(sorted(counts, key=repr), min(3, len(counts))))
        if t % 11 == 5 and comm_of:  # a process exits
            exited = {rng.choice(sorted(comm_of))}
        for _ in range(rng.randrange(0, 4)):  # new flows, some of new processes
            if not comm_of or rng.random() < 0.3:
                comm_of[next_pid] = rng.choice(["web", "db", "worker-1", "worker-2"])
                next_pid += 1
            pid = rng.choice(sorted(comm_of))
            k = key(pid=pid, port=rng.choice([53, 80, 443, 5432]),
                    remote_ip=f"192.0.2.{rng.randrange(1, 40)}",
                    role=rng.choice(["client", "client", "server"]))  # fmt: skip
            counts.setdefault(k, [0, 0])
        if 30 <= t < 36:  # a scan: many ports of one host
            pid = min(comm_of)
            for port in range(1000 + 5 * (t - 30), 1005 + 5 * (t - 30)):
                counts.setdefault(key(pid=pid, port=port, remote_ip="192.0.2.200"), [0, 0])
        for k, c in counts.items():
            spike = 40 <= t < 45 and hash(k) % 3 == 0
            c[0] += rng.randrange(1, 200 * KB if spike else 8 * KB)
            c[1] += rng.randrange(1, 4 * KB)
        flows: dict[FlowKey, FlowCounters] = {
            k: fc(sent=s, recv=r, comm=comm_of.get(k.pid, "gone"))
            for k, (s, r) in counts.items()
            if k.pid in comm_of
        }
        procs = {pid: pc(pid, comm=name) for pid, name in comm_of.items()}
        snaps.append(engine.update(sample(float(t), flows, procs, exited=frozenset(exited),
                                          retired=frozenset(retired))))  # fmt: skip
        for k in retired:
            del counts[k]
        for pid in exited:
            del comm_of[pid]
            for k in [k for k in counts if k.pid == pid]:
                del counts[k]
    return snaps


def findings(detectors: list, snap: Snapshot, firing: dict) -> list:
    out = []
    view = SnapshotView(snap)
    for d in detectors:
        found = d.detect(view, firing.setdefault(d.name, set()))
        firing[d.name] = {f.key for f in found}
        out += sorted((d.name, repr(f.key), round(f.value, 6), f.tag, sorted(map(repr, f.flows)))
                      for f in found)  # fmt: skip
    return out


def test_the_detectors_find_the_same_with_and_without_the_engines_row_identities() -> None:
    settings = dict(
        baseline=BaselineSettings(warmup_s=10, tau_s=20, floor_bps=8 * KB),
        fanout=FanoutSettings(ports=8, hosts=6, window_s=20),
        new_peer=NewPeerSettings(learn_s=15, floor_bytes=4 * KB),
    )
    fast = make_detectors(list(DETECTORS), 150 * KB, **settings)  # type: ignore[arg-type]
    plain = make_detectors(list(DETECTORS), 150 * KB, **settings)  # type: ignore[arg-type]
    fast_firing: dict = {}
    plain_firing: dict = {}
    moved = found = 0
    last_slot: dict[int, int] = {}
    for snap in traffic(seed=7, intervals=70):
        table = snap.table
        assert table.uids is not None and table.slots is not None
        assert len(set(table.uids.tolist())) == len(table)  # one serial per flow
        slot_of = dict(zip(table.uids.tolist(), table.slots.tolist(), strict=True))
        moved += sum(last_slot.get(u, s) != s for u, s in slot_of.items())
        last_slot = slot_of
        a = findings(fast, snap, fast_firing)
        b = findings(plain, without_identities(snap), plain_firing)
        assert a == b
        found += len(a)
    assert moved > 0  # the engine did move flows to other slots
    assert found > 0  # and the detectors had something to say


def test_serials_stay_with_their_flow_and_grow() -> None:
    engine = MetricsEngine(0.4, 1e12, 1.0)
    a, b, c = key(port=1), key(port=2), key(port=3)
    s1 = engine.update(sample(0.0, {a: fc(sent=1), b: fc(sent=2)}))
    s2 = engine.update(sample(1.0, {a: fc(sent=9), b: fc(sent=2)}, retired=frozenset({a})))
    s3 = engine.update(sample(2.0, {b: fc(sent=3), c: fc(sent=5), a: fc(sent=1)}))

    def serials(s: Snapshot) -> dict[FlowKey, int]:
        assert s.table.uids is not None
        return dict(zip(s.table.keys, s.table.uids.tolist(), strict=True))

    first, third = serials(s1), serials(s3)
    assert serials(s2) == {b: first[b]}  # a retired
    assert third[b] == first[b]
    assert third[a] > max(first.values()) and third[c] > max(first.values())
    assert third[a] != third[c]
    # A row's slot indexes the engine's columns: taking rows keeps the pairs.
    t = s3.table.take(np.array([1, 0]))
    assert t.uids is not None and t.slots is not None and s3.table.slots is not None
    assert t.uids.tolist() == s3.table.uids[[1, 0]].tolist()
    assert t.slots.tolist() == s3.table.slots[[1, 0]].tolist()


def test_rows_of_finds_keys_by_object_and_by_value() -> None:
    engine = MetricsEngine(0.4, 1e12, 1.0)
    keys = [key(pid=1 + n % 3, port=n) for n in range(30)]
    table = engine.update(sample(0.0, {k: fc(sent=n) for n, k in enumerate(keys)})).table
    row_of = dict(zip(table.keys, range(len(table)), strict=True))
    same_objects = table.keys[3:6]
    equal_copies = [replace(k) for k in table.keys[10:12]]
    absent = [key(pid=1, port=999), key(pid=77, port=1)]
    got = table.rows_of([*same_objects, *equal_copies, *absent])
    assert got == {k: row_of[k] for k in [*same_objects, *equal_copies]}
    assert table.rows_of([]) == {}


def test_the_row_finder_agrees_with_a_search_by_value() -> None:
    """Over changing tables (flows retired, slots moving, flows coming back
    under an equal key), the finder's rows are those of a plain dict."""
    rng = random.Random(3)
    finder = RowFinder()
    asked: list[FlowKey] = []
    for snap in traffic(seed=11, intervals=60):
        table = snap.table
        if rng.random() < 0.3 or not asked:  # the flagged set changes now and then
            pool = [*table.keys, key(pid=1, port=7)]  # (one never in any table)
            asked = rng.sample(pool, min(6, len(pool)))
            asked += [replace(k) for k in rng.sample(list(table.keys), min(2, len(table)))]
        by_value = {k: row for row, k in enumerate(table.keys)}
        assert finder.rows(table, asked) == {k: by_value[k] for k in asked if k in by_value}


def test_the_row_finder_sees_a_flow_come_back() -> None:
    engine = MetricsEngine(0.4, 1e12, 1.0)
    a, b = key(port=1), key(port=2)
    finder = RowFinder()
    t1 = engine.update(sample(0.0, {a: fc(sent=1), b: fc(sent=1)})).table
    assert finder.rows(t1, [a]) == {a: t1.keys.index(a)}
    t2 = engine.update(sample(1.0, {a: fc(sent=1), b: fc(sent=2)}, retired=frozenset({a}))).table
    assert finder.rows(t2, [a]) == {}
    t3 = engine.update(sample(2.0, {b: fc(sent=3)})).table
    assert finder.rows(t3, [a]) == {}
    t4 = engine.update(sample(3.0, {a: fc(sent=5), b: fc(sent=4)})).table
    assert finder.rows(t4, [a]) == {a: t4.keys.index(a)}


def test_serials_are_never_reused_even_by_another_engine() -> None:
    first = MetricsEngine(0.4, 1e12, 1.0).update(sample(0.0, {key(port=1): fc(sent=1)})).table
    second = MetricsEngine(0.4, 1e12, 1.0).update(sample(0.0, {key(port=1): fc(sent=1)})).table
    assert first.uids is not None and second.uids is not None
    assert int(second.uids.min()) > int(first.uids.max())
