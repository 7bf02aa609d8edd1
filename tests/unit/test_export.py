"""The Prometheus exporter: what a scrape shows, parsed back; counters that
never go down; a bounded number of process label values; promtool's checks."""

from __future__ import annotations

import random
import shutil
import subprocess

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from netmon.export.prometheus import AlertCounts, Exporter, make_registry
from netmon.export.snapshot_view import SnapshotView
from netmon.export.traffic import OTHER, TrafficBook
from netmon.metrics import MetricsEngine
from netmon.model import RawSample, Snapshot
from tests.ui.builders import flow, snapshot

from .helpers import WALL0, fc, key, pc

TRAFFIC = (
    "netmon_process_transmit_bytes",
    "netmon_process_receive_bytes",
    "netmon_process_transmit_packets",
    "netmon_process_receive_packets",
)


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def scrape(exporter: Exporter) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Metric family name -> {sorted labels: value}, from the text a scrape serves."""
    text = generate_latest(make_registry(exporter)).decode()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def by_process(
    metrics: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str
) -> dict[str, float]:
    """process label -> value summed over protocols, for one counter."""
    out: dict[str, float] = {}
    for labels, value in metrics.get(name + "_total", {}).items():
        process = dict(labels)["process"]
        out[process] = out.get(process, 0.0) + value
    return out


def test_scrape_before_the_first_snapshot_has_only_build_info() -> None:
    exporter = Exporter(version="1.2.3", mode="socket", clock=Clock())
    metrics = scrape(exporter)
    assert metrics == {"netmon_build_info": {(("probes", "socket"), ("version", "1.2.3")): 1.0}}


def test_scrape_parsed_back() -> None:
    clock = Clock(50.0)
    exporter = Exporter(version="0.1.0", mode="syscalls", clock=clock)
    snap = snapshot(
        [
            flow(1, "curl", rate=20.0, sent=1000, recv=5000),
            flow(1, "curl", rate=1.0, protocol="UDP", port=53, sent=60, recv=120),
            flow(2, "nginx", rate=11 * 1024 * 1024, role="server", sent=7, recv=9),
        ],
        protocols={"TCP": 6016, "UDP": 180, "ICMP": 0},
        dropped=4,
    )
    alerts = AlertCounts(
        firing={"threshold": 1}, raised={"threshold": 3}, undelivered={"exec": 2}, suppressed={}
    )
    exporter.update(SnapshotView(snap), alerts)
    clock.now = 52.5
    m = scrape(exporter)
    tx = m["netmon_process_transmit_bytes_total"]
    assert tx[(("process", "curl"), ("protocol", "TCP"))] == 1000
    assert tx[(("process", "curl"), ("protocol", "UDP"))] == 60
    assert tx[(("process", "nginx"), ("protocol", "TCP"))] == 7
    assert (
        m["netmon_process_receive_bytes_total"][(("process", "curl"), ("protocol", "UDP"))] == 120
    )
    assert by_process(m, "netmon_process_transmit_packets") == {"curl": 2.0, "nginx": 1.0}
    assert m["netmon_protocol_bytes_total"] == {
        (("protocol", "ICMP"),): 0,
        (("protocol", "TCP"),): 6016,
        (("protocol", "UDP"),): 180,
    }
    assert m["netmon_flows"] == {(): 3}
    assert m["netmon_processes"] == {(): 2}
    assert m["netmon_anomalous_flows"] == {(): 1}
    assert m["netmon_flows_dropped_total"] == {(): 4}
    assert m["netmon_alerts_firing"] == {(("detector", "threshold"),): 1}
    assert m["netmon_alerts_total"] == {(("detector", "threshold"),): 3}
    assert m["netmon_alert_events_undelivered_total"] == {(("sink", "exec"),): 2}
    assert m["netmon_snapshot_age_seconds"] == {(): 2.5}
    assert m["netmon_build_info"] == {(("probes", "syscalls"), ("version", "0.1.0")): 1}
    # No pid, address or host in any label.
    names = {name for series in m.values() for labels in series for name, _ in labels}
    assert names <= {"process", "protocol", "detector", "sink", "version", "probes"}


def _feed(engine: MetricsEngine, exporter: Exporter, sample: RawSample) -> Snapshot:
    snap = engine.update(sample)
    exporter.update(SnapshotView(snap))
    return snap


def _sample(t: int, flows: dict, procs: dict | None = None) -> RawSample:
    return RawSample(
        monotonic_ns=t * 1_000_000_000,
        wall_time=WALL0 + t,
        flows=flows,
        processes=procs or {},
        protocols={"TCP": 0},
        dropped=0,
    )


def test_counters_stay_monotonic_across_eviction_and_exit() -> None:
    """Through the real metrics engine: a flow evicted from the kernel table
    and re-created (its kernel counter starts again), a process that exits
    and is forgotten, a new process with the same name. The exported
    counters never go down and add up to every byte moved."""
    engine = MetricsEngine(0.4, 1e12, 1.0, forget_after_s=3.0)
    exporter = Exporter(version="t", mode="socket", clock=Clock())
    a, b = key(pid=10, port=443), key(pid=11, port=80)
    timeline = [
        {a: fc(sent=100), b: fc(sent=1000, comm="wget")},
        {a: fc(sent=250), b: fc(sent=1500, comm="wget")},
        {a: fc(sent=40), b: fc(sent=1500, comm="wget")},  # a evicted, re-created: 40 new
        {a: fc(sent=90)},  # b's process exited; its flow left the kernel table
        {a: fc(sent=90)},
        {a: fc(sent=95)},
        {a: fc(sent=95)},  # b forgotten by the engine from here on
        {a: fc(sent=95), key(pid=12, port=80): fc(sent=300, comm="wget")},  # a new wget
    ]
    moved = {"curl": 0, "wget": 0}
    last_kernel: dict = {}
    previous: dict[str, float] = {}
    for t, flows in enumerate(timeline):
        for k, c in flows.items():
            before = last_kernel.get(k)
            moved[c.comm] += c.bytes_sent - (
                before if before is not None and before <= c.bytes_sent else 0
            )
            last_kernel[k] = c.bytes_sent
        _feed(engine, exporter, _sample(t, flows))
        now = by_process(scrape(exporter), "netmon_process_transmit_bytes")
        for name, value in previous.items():
            assert now.get(name, 0.0) >= value, (t, name, previous, now)
        previous = now
    assert previous == {"curl": moved["curl"], "wget": moved["wget"]} == {"curl": 345, "wget": 1800}


def test_protocol_totals_and_drops_never_go_down() -> None:
    exporter = Exporter(version="t", mode="socket", clock=Clock())
    seen = []
    for protocols, dropped in (({"TCP": 100}, 2), ({"TCP": 150}, 5), ({"TCP": 30}, 1)):
        exporter.update(SnapshotView(snapshot([], protocols=protocols, dropped=dropped)))
        m = scrape(exporter)
        seen.append((m["netmon_protocol_bytes_total"][(("protocol", "TCP"),)],
                     m["netmon_flows_dropped_total"][()]))  # fmt: skip
    # A value going backwards (a restarted source) adds what it says, never subtracts.
    assert seen == [(100, 2), (150, 5), (180, 6)]


def test_cardinality_is_capped_with_other() -> None:
    """10,000 flows from 1,000 names: at most N names and "other", and the
    sum over all label values is every byte."""
    rng = random.Random(7)
    limit = 50
    exporter = Exporter(version="t", mode="socket", max_names=limit, clock=Clock())
    flows = [
        flow(pid=i, comm=f"proc-{i % 1000:04d}", port=1 + i % 10, sent=rng.randrange(1, 10**6))
        for i in range(10_000)
    ]
    exporter.update(SnapshotView(snapshot(flows)))
    m = scrape(exporter)
    totals = by_process(m, "netmon_process_transmit_bytes")
    assert len(totals) == limit + 1
    assert OTHER in totals
    assert sum(totals.values()) == sum(f.bytes_sent for f in flows)
    # The admitted names are the busiest of that interval.
    per_name: dict[str, int] = {}
    for f in flows:
        per_name[f.comm] = per_name.get(f.comm, 0) + f.bytes_sent
    busiest = sorted(per_name, key=lambda n: -per_name[n])[:limit]
    assert set(totals) - {OTHER} == set(busiest)


def test_names_keep_their_slot_until_idle_then_free_it() -> None:
    book = TrafficBook(max_names=2, idle_s=900.0)

    def step(t: float, counts: dict[str, int]) -> dict[str, int]:
        flows = [flow(pid=i, comm=name, sent=n) for i, (name, n) in enumerate(counts.items())]
        book.update(SnapshotView(snapshot(flows)).flow_columns(), t)
        return {r.process: r.counts[0] for r in book.rows()}

    assert step(0, {"a": 10, "b": 5, "c": 1}) == {"a": 10, "b": 5, OTHER: 1}
    # c becomes the busiest, but a and b keep their slots while they move bytes.
    assert step(100, {"a": 11, "b": 6, "c": 1000}) == {"a": 11, "b": 6, OTHER: 1000}
    # b idle (pid 1 keeps its count) for more than 15 minutes: its slot goes to c,
    # which keeps what it moved before in other; other never goes down.
    step(600, {"a": 12, "b": 6, "c": 1001})
    rows = step(1001, {"a": 13, "b": 6, "c": 1005})
    assert rows == {"a": 13, "c": 4, OTHER: 1001}
    # b comes back while both slots are busy: other; once c idles, b gets its
    # old counter back and goes on from there.
    rows = step(1100, {"a": 14, "b": 8, "c": 1005})
    assert rows == {"a": 14, "c": 4, OTHER: 1003}
    rows = step(2002, {"a": 15, "b": 9, "c": 1005})
    assert rows == {"a": 15, "b": 6 + 1, OTHER: 1003}


def test_a_process_named_other_is_counted_in_other() -> None:
    book = TrafficBook(max_names=5)
    book.update(
        SnapshotView(snapshot([flow(1, comm="other", sent=5), flow(2, sent=3)])).flow_columns(), 0
    )
    assert {(r.process, r.counts[0]) for r in book.rows()} == {("curl", 3), (OTHER, 5)}


def test_hostile_process_name_is_an_inert_label_value() -> None:
    hostile = "x\"}\n# TYPE evil counter\x1b[2J$(id)`id`'"
    exporter = Exporter(version="t", mode="socket", clock=Clock())
    exporter.update(SnapshotView(snapshot([flow(1, comm=hostile, sent=42)])))
    text = generate_latest(make_registry(exporter)).decode()
    assert "\x1b" not in text
    assert "\n# TYPE evil" not in text
    totals = by_process(scrape(exporter), "netmon_process_transmit_bytes")
    assert totals == {"x\"}^J# TYPE evil counter^[[2J$(id)`id`'": 42.0}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing: run `make install` (Debian package prometheus)")
    return path


def test_promtool_accepts_the_metrics() -> None:
    exporter = Exporter(version="0.1.0", mode="socket", clock=Clock())
    exporter.update(
        SnapshotView(snapshot([flow(1, sent=1, recv=2), flow(2, comm="nginx", protocol="UDP")])),
        AlertCounts({"threshold": 0}, {"threshold": 0}, {"file": 0}, {"file": 0}),
    )
    out = subprocess.run(
        [promtool(), "check", "metrics"],
        input=generate_latest(make_registry(exporter)),
        capture_output=True,
        timeout=60,
    )
    assert out.returncode == 0, (out.stdout + out.stderr).decode()


def test_metrics_engine_snapshot_with_process_counters() -> None:
    """Flows without pid_stats entries and processes without flows both
    export what their flows moved (the counters come from flows)."""
    engine = MetricsEngine(0.4, 1e12, 1.0)
    exporter = Exporter(version="t", mode="socket", clock=Clock())
    _feed(engine, exporter, _sample(0, {key(pid=5): fc(sent=10, recv=20)}, {6: pc(6, sent=99)}))
    m = scrape(exporter)
    assert by_process(m, "netmon_process_transmit_bytes") == {"curl": 10}
    assert by_process(m, "netmon_process_receive_bytes") == {"curl": 20}
