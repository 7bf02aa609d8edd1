"""The baseline, fanout and new-peer detectors on synthetic series."""

from __future__ import annotations

import random

import pytest

from netmon.alerts.baseline import BaselineDetector, BaselineSettings, ProcessKey
from netmon.alerts.choice import DEFAULT_DETECTORS, DETECTORS, make_detectors, parse_detectors
from netmon.alerts.events import FIRING, RESOLVED
from netmon.alerts.fanout import FanoutDetector, FanoutSettings, HostSweepKey, PortScanKey
from netmon.alerts.keys import process_name
from netmon.alerts.manager import AlertManager
from netmon.alerts.newpeer import NewPeerDetector, NewPeerSettings
from netmon.export.snapshot_view import SnapshotView
from netmon.model import FlowStat
from tests.ui.builders import flow, snapshot

T0 = 1_700_000_000.0
KB = 1024.0

# Small settings, so that the series are short.
BASE = BaselineSettings(warmup_s=20, tau_s=30, for_intervals=2, floor_bps=10 * KB)


def views(series: list[list[FlowStat]]) -> list[SnapshotView]:
    return [SnapshotView(snapshot(flows, ts=T0 + t)) for t, flows in enumerate(series)]


def events(manager: AlertManager, series: list[list[FlowStat]]) -> list[tuple[int, str, str]]:
    """(t, state, detector) of every event."""
    return [(t, e.state, e.detector) for t, v in enumerate(views(series)) for e in
            manager.update(v)]  # fmt: skip


def noisy(n: int, mean: float, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [mean * rng.uniform(0.8, 1.2) for _ in range(n)]


def one_flow(rates: list[float], comm: str = "web") -> list[list[FlowStat]]:
    return [[flow(1, comm, rate=r, port=443)] for r in rates]


# -- baseline ------------------------------------------------------------


def test_baseline_fires_on_a_step_after_warm_up_and_resolves_when_it_ends() -> None:
    rates = noisy(40, 20 * KB) + [200 * KB] * 6 + noisy(20, 20 * KB, seed=2)
    got = events(AlertManager([BaselineDetector(BASE)]), one_flow(rates))
    # The flow fires (not the process too: one of its flows says it already).
    assert got[0] == (41, FIRING, "baseline")
    assert next(e for e in got if e[1] == RESOLVED)[0] in range(46, 50)
    assert len([e for e in got if e[1] == FIRING]) == 1


def test_baseline_does_not_fire_during_warm_up() -> None:
    rates = noisy(5, 20 * KB) + [400 * KB] * 10
    assert events(AlertManager([BaselineDetector(BASE)]), one_flow(rates)) == []


def test_baseline_needs_the_floor_and_consecutive_intervals() -> None:
    # 10x, but below the floor: nothing.
    small = noisy(40, 500.0) + [5 * KB] * 6
    assert events(AlertManager([BaselineDetector(BASE)]), one_flow(small)) == []
    # One interval over the bar, twice, never two in a row: nothing.
    blips = [*noisy(40, 20 * KB), 300 * KB, 20 * KB, 300 * KB, 20 * KB]
    assert events(AlertManager([BaselineDetector(BASE)]), one_flow(blips)) == []


def test_baseline_is_frozen_while_firing() -> None:
    detector = BaselineDetector(BASE)
    manager = AlertManager([detector])
    rates = noisy(40, 20 * KB) + [300 * KB] * 200
    got = events(manager, one_flow(rates))
    # A long step stays one alert: the high rate never becomes the normal.
    assert got == [(41, FIRING, "baseline")]
    row = detector._store.index[one_flow([0.0])[0][0].key]
    assert detector._store.mu[row] < 30 * KB


def test_baseline_hysteresis_keeps_firing_between_the_bars() -> None:
    # Fires at 300 KB/s; 60 KB/s is under the entry bar (3x of ~20) but
    # above the clear bar (mean + 2 sigma): the alert stays.
    rates = noisy(40, 20 * KB) + [300 * KB] * 3 + [60 * KB] * 30 + [20 * KB] * 5
    got = events(AlertManager([BaselineDetector(BASE)]), one_flow(rates))
    assert got == [(41, FIRING, "baseline"), (75, RESOLVED, "baseline")]


def test_baseline_learns_a_level_its_resolved_alert_reached() -> None:
    # A nightly backup: flagged the first time, not the second.
    quiet, burst = noisy(40, 5 * KB), [2000 * KB] * 8
    rates = quiet + burst + quiet + burst + quiet
    got = events(AlertManager([BaselineDetector(BASE)]), one_flow(rates, "backup"))
    assert [e for e in got if e[1] == FIRING] == [(41, FIRING, "baseline")]


def test_baseline_process_key_uses_the_name_without_thread_numbers() -> None:
    # Many small flows of threads "worker-1".."worker-8" (one process name)
    # together step up: the process fires, each flow on its own stays small.
    def step(t: int) -> list[FlowStat]:
        r = 2 * KB if t < 40 else 20 * KB
        return [flow(7, f"worker-{i}", rate=r * random.Random(t * 10 + i).uniform(0.8, 1.2),
                     port=8000 + i) for i in range(8)]  # fmt: skip

    detector = BaselineDetector(BaselineSettings(warmup_s=20, tau_s=30, floor_bps=100 * KB))
    manager = AlertManager([detector])
    got = []
    for v in views([step(t) for t in range(50)]):
        got += manager.update(v)
    assert [(e.state, e.subject.kind, e.subject.comm[:6]) for e in got] == [
        (FIRING, "process", "worker")
    ]
    assert ProcessKey("worker") in detector._store.index
    assert process_name("DNS Resolver #12") == "DNS Resolver"
    assert process_name("kworker/0:1") == "kworker"
    assert process_name("1234") == "1234"


def test_baseline_forgets_idle_keys_and_caps_its_memory() -> None:
    detector = BaselineDetector(BaselineSettings(idle_s=10, max_keys=50))
    for t in range(5):
        detector.detect(
            SnapshotView(
                snapshot(
                    [flow(1000 * t + i, "p", rate=KB, port=i + 1) for i in range(40)], ts=T0 + t
                )
            ),
            set(),
        )
    assert len(detector) <= 50  # 40 flows + their process name, 5 times over
    detector.detect(SnapshotView(snapshot([flow(1, "q", rate=KB)], ts=T0 + 100)), set())
    assert len(detector) == 2  # the one flow and its process; the rest were idle


def test_baseline_forgets_a_flow_once_it_leaves_the_table() -> None:
    """Process churn: each short-lived process's flow is forgotten as soon
    as it is no longer listed; the baseline of the name stays."""
    detector = BaselineDetector(BaselineSettings(idle_s=1800))
    for t in range(100):
        churn = [flow(5000 + t, "job", rate=KB, port=7), flow(1, "steady", rate=KB, port=9)]
        detector.detect(SnapshotView(snapshot(churn, ts=T0 + t)), set())
        assert len(detector) == 4  # two flows and two names, whatever came and went
    keys = set(detector._store.index)
    assert ProcessKey("job") in keys and ProcessKey("steady") in keys


# -- fanout --------------------------------------------------------------


def scan(ports_per_interval: int, intervals: int, start: int = 0) -> list[list[FlowStat]]:
    """A process adding new ports of one host every interval (the old flows stay)."""
    out, flows = [], []
    for t in range(intervals):
        for i in range(ports_per_interval):
            flows.append(flow(9, "nmap", rate=10.0, port=start + 1 + t * ports_per_interval + i,
                              remote_ip="192.0.2.9"))  # fmt: skip
        out.append(list(flows))
    return out


def test_fanout_fires_on_a_port_scan_and_resolves_after_the_window() -> None:
    detector = FanoutDetector(FanoutSettings(ports=15, window_s=10))
    manager = AlertManager([detector])
    series = scan(5, 4) + [[]] * 15
    got = [(t, e.state, e.reason) for t, v in enumerate(views(series)) for e in manager.update(v)]
    assert got[0][:2] == (2, FIRING)
    assert "15 ports of 192.0.2.9" in got[0][2]
    assert got[1][:2] == (15, RESOLVED)  # its entries left the window
    assert len(detector) == 0  # and the sets were dropped


def test_fanout_host_sweep_and_server_flows() -> None:
    sweep = [[flow(3, "sweeper", port=22, remote_ip=f"198.51.100.{i}") for i in range(t * 10)]
             for t in range(1, 4)]  # fmt: skip
    findings = []
    detector = FanoutDetector()
    for v in views(sweep):
        findings += detector.detect(v, set())
    assert findings and isinstance(findings[0].key, HostSweepKey)
    assert findings[0].tag == "sweep 30 hosts"
    # A server's many clients are not a sweep.
    server = [[flow(4, "sshd", port=22, role="server", remote_ip=f"198.51.100.{i}")
               for i in range(60)]]  # fmt: skip
    assert FanoutDetector().detect(views(server)[0], set()) == []


def test_fanout_memory_is_bounded() -> None:
    detector = FanoutDetector(FanoutSettings(cap=20, max_keys=30))
    series = [[flow(9, "nmap", port=p, remote_ip=f"203.0.113.{h}") for p in range(1, 100)
               for h in range(t * 5, t * 5 + 5)] for t in range(10)]  # fmt: skip
    for v in views(series):
        found = detector.detect(v, set())
    assert len(detector) <= 30
    assert all(len(s.items) <= 20 for s in detector._sets.values())
    assert any(f.tag == "scan 20+ ports" for f in found if isinstance(f.key, PortScanKey))


# -- new-peer ------------------------------------------------------------

NP = NewPeerSettings(learn_s=10, floor_bytes=1000, hold_s=3)


def test_new_peer_learns_then_flags_a_new_peer_above_the_floor() -> None:
    known = flow(5, "app", port=443, remote_ip="192.0.2.1", sent=5000)
    series = [[known]] * 12  # learning
    small = flow(5, "app", port=443, remote_ip="192.0.2.50", sent=100)
    big = flow(5, "app", port=443, remote_ip="192.0.2.50", sent=4000)
    series += [[known, small]] * 2 + [[known, big]] * 6
    # The same peer again later, from a new pid of the same name: known now.
    series += [[flow(6, "app", port=443, remote_ip="192.0.2.50", sent=9000)]] * 3
    got = events(AlertManager([NewPeerDetector(NP)]), series)
    assert got == [(14, FIRING, "new-peer"), (19, RESOLVED, "new-peer")]


def test_new_peer_ignores_server_flows_and_learning_names() -> None:
    series = [[flow(5, "srv", port=80, role="server", remote_ip=f"192.0.2.{t}", sent=10**6)]
              for t in range(20)]  # fmt: skip
    series += [[flow(8, "fresh", port=443, remote_ip=f"192.0.2.{t}", sent=10**6)]
               for t in range(5)]  # fmt: skip
    assert events(AlertManager([NewPeerDetector(NP)]), series) == []


def test_new_peer_memory_is_bounded() -> None:
    detector = NewPeerDetector(NewPeerSettings(learn_s=0, max_peers=10, max_names=5))
    for v in views([[flow(t, f"n{t % 8}", port=1000 + t, sent=10**6)] for t in range(40)]):
        detector.detect(v, set())
    assert len(detector) <= 5
    assert all(len(n.peers) <= 10 for n in detector._names.values())


# -- choice ----------------------------------------------------------------


def test_detector_names() -> None:
    assert parse_detectors("all") == tuple(DETECTORS)
    assert parse_detectors("none") == ()
    assert parse_detectors("fanout, threshold,fanout") == ("fanout", "threshold")
    with pytest.raises(ValueError, match="unknown detector bogus"):
        parse_detectors("threshold,bogus")
    made = make_detectors(DEFAULT_DETECTORS, 10.0)
    assert [d.name for d in made] == list(DEFAULT_DETECTORS)
