"""Columns behind RawSample and Snapshot: they read like the per-flow
records, and the metrics engine gives the same answers however a source
hands its rows over."""

from __future__ import annotations

import random

import numpy as np
import pytest

from netmon.metrics import MetricsEngine
from netmon.model import (
    FlowCounters,
    FlowKey,
    FlowReadings,
    FlowStat,
    FlowTable,
    ProcessReadings,
    RawSample,
    Snapshot,
    dense_rank,
    flow_order,
)

from .helpers import WALL0, fc, key, pc, sample


def test_readings_read_as_a_mapping_of_counters() -> None:
    flows = {key(port=1): fc(sent=5, comm="a"), key(port=2): fc(recv=7, kernel=True)}
    readings = FlowReadings.of(flows)
    assert dict(readings) == flows
    assert key(port=2) in readings and key(port=3) not in readings
    assert dict(ProcessReadings.of({4: pc(4, 10)})) == {4: pc(4, 10)}
    s = sample(1.0, flows)
    assert s.flows == flows and s.flow_readings is s.flows


def test_flow_table_reads_as_a_tuple_of_flow_stats() -> None:
    stats = (
        FlowStat(key(port=1), "a", 1, 2, 3, 4, 5.5, True),
        FlowStat(key(port=2, remote_ip=None), "b", 2**64 - 1, 0, 0, 0, 0.0, False, kernel=True),
    )
    table = FlowTable.from_stats(stats)
    assert table == stats and stats == table and list(table) == list(stats)
    assert table[1] == stats[1] and table[-1] == stats[1] and table[0:1] == [stats[0]]
    assert table[0] is table[0]  # made once, then kept
    with pytest.raises(IndexError):
        table[2]
    assert table.take(np.array([False, True])) == (stats[1],)
    assert Snapshot(1.0, 1.0, stats, ()) == Snapshot(1.0, 1.0, table, ())


def test_counters_too_big_for_the_kernel_types_still_work() -> None:
    for sent, recv in ((-5, 0), (0, 2**70)):
        stats = (FlowStat(key(), "a", sent, recv, 0, 0, 1.0, False),)
        assert FlowTable.from_stats(stats) == stats


class Reorder:
    """Hands each sample's rows over in a shuffled order, with or without the
    token that lets the engine skip matching rows one by one."""

    def __init__(self, with_token: bool) -> None:
        self.with_token = with_token
        self.rnd = random.Random(7)

    def __call__(self, t: float, flows: dict[FlowKey, FlowCounters]) -> RawSample:
        keys = list(flows)
        self.rnd.shuffle(keys)
        base = FlowReadings.of({k: flows[k] for k in keys})
        # Keys stand in for raw kernel keys; the token is their order.
        token = repr(keys).encode() if self.with_token else None
        readings = FlowReadings(
            ids=base.ids, key_of=base.key_of, counts=base.counts, comm=base.comm,
            kernel=base.kernel, rows_token=token,
        )  # fmt: skip
        return RawSample(round(t * 1e9), WALL0 + t, readings, {}, {}, 0)


def test_same_results_with_and_without_row_tokens() -> None:
    rnd = random.Random(1)
    keys = [
        key(pid=p, port=q, role=role, remote_ip=ip)
        for p in range(4)
        for q in range(3)
        for role, ip in (("client", None), ("server", None), ("client", "10.0.0.1"))
    ]
    totals = dict.fromkeys(keys, 0)
    engines = {tok: MetricsEngine(0.4, 500.0, 1.0, forget_after_s=3.0) for tok in (True, False)}
    feeds = {tok: Reorder(tok) for tok in engines}
    present = set(keys)
    for step in range(12):
        if step % 3 == 2:  # some flows stop, others come back (and restart their counters)
            present = set(rnd.sample(keys, 25))
        for k in present:
            totals[k] = totals[k] + rnd.randrange(0, 2000) if rnd.random() > 0.1 else 5
        flows = {k: fc(sent=totals[k], recv=totals[k] // 2, comm=f"p{k.pid}") for k in present}
        snaps = {tok: engines[tok].update(feeds[tok](float(step), flows)) for tok in engines}
        assert snaps[True] == snaps[False]
        table = snaps[True].table
        assert list(table) == sorted(table, key=lambda f: (-f.rate_bps, flow_order(f.key)))
        # The engine's tie ranks order the rows as ranks made from scratch do.
        assert (
            dense_rank(table.tie_rank.tolist()).tolist()
            == FlowTable.from_stats(table).tie_rank.tolist()
        )
        assert dict(engines[True].rates()) == dict(engines[False].rates())


def test_forgotten_flows_leave_the_engine() -> None:
    e = MetricsEngine(0.4, 1e12, 1.0, forget_after_s=5.0)
    for t in range(40):  # a new flow every second, each seen once
        snap = e.update(sample(float(t), {key(port=t): fc(sent=10)}))
    assert len(snap.flows) == 6  # seen within the last 5 s, then forgotten
    assert e.flows_held == 6
