"""Cgroups through the pipeline: kernel ids named by the source, kept per flow
and per process by the metrics, written to JSON, and --service."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from netmon import cli
from netmon.config import parse_args
from netmon.feed import ServiceFilter, keep_services
from netmon.jsonl import dumps, loads
from netmon.metrics import MetricsEngine
from netmon.model import Cgroup, FlowCounters, ProcessCounters, RawSample

from .helpers import WALL0, FakeClock, FakeSource, FakeStop, fc, key, pc
from .test_cli import Factory

WEB = Cgroup("/netmon-test.slice/web.service", "web.service")
BOX = Cgroup("/system.slice/docker-" + "ab" * 32 + ".scope", "docker:abababababab")


def raw(
    t: float,
    flows: dict,  # type: ignore[type-arg]
    processes: dict,  # type: ignore[type-arg]
    cgroups: dict[int, Cgroup],
) -> RawSample:
    return RawSample(
        monotonic_ns=round(t * 1e9), wall_time=WALL0 + t, flows=flows, processes=processes,
        protocols={}, dropped=0, cgroups=cgroups,
    )  # fmt: skip


def with_cgroup(counters: FlowCounters | ProcessCounters, cgroup_id: int) -> object:
    return replace(counters, cgroup_id=cgroup_id)


def test_flows_and_processes_carry_the_cgroup_their_ids_name() -> None:
    engine = MetricsEngine(alpha=1.0, threshold_bps=1e12, nominal_interval_s=1.0)
    flows = {
        key(pid=1): with_cgroup(fc(sent=10), 501),
        key(pid=2): with_cgroup(fc(sent=20), 502),
        key(pid=3): with_cgroup(fc(sent=30), 999),  # an id the source could not name
    }
    procs = {1: with_cgroup(pc(1, sent=10), 501), 2: with_cgroup(pc(2, sent=20), 502)}
    snap = engine.update(raw(1.0, flows, procs, {501: WEB, 502: BOX}))
    got = {f.key.pid: (f.cgroup, f.service) for f in snap.flows}
    assert got == {1: (WEB.path, WEB.service), 2: (BOX.path, BOX.service), 3: (None, None)}
    assert {p.pid: p.service for p in snap.processes} == {
        1: "web.service",
        2: "docker:abababababab",
        3: None,  # 3: from its flows, unnamed
    }
    # Next interval: same ids, no names given again (the ledger keeps them).
    snap = engine.update(raw(2.0, flows, procs, {}))
    assert {f.key.pid: f.service for f in snap.flows}[1] == "web.service"
    # A process moved (renamed after moving): its new cgroup shows.
    procs[1] = with_cgroup(pc(1, sent=10), 502)
    snap = engine.update(raw(3.0, flows, procs, {502: BOX}))
    assert {p.pid: p.service for p in snap.processes}[1] == "docker:abababababab"


def test_json_round_trip_keeps_cgroup_and_service() -> None:
    engine = MetricsEngine(alpha=1.0, threshold_bps=1e12, nominal_interval_s=1.0)
    snap = engine.update(
        raw(1.0, {key(pid=1): with_cgroup(fc(sent=10), 7)}, {1: with_cgroup(pc(1), 7)}, {7: WEB})
    )
    line = dumps(snap)
    obj = json.loads(line)
    assert obj["flows"][0]["cgroup"] == WEB.path and obj["flows"][0]["service"] == WEB.service
    assert obj["processes"][0]["service"] == WEB.service
    back = loads(line)
    assert back == snap
    assert dumps(back) == line


def test_keep_services_by_name_or_path() -> None:
    engine = MetricsEngine(alpha=1.0, threshold_bps=1e12, nominal_interval_s=1.0)
    flows = {key(pid=1): with_cgroup(fc(sent=10), 1), key(pid=2): with_cgroup(fc(sent=20), 2),
             key(pid=3): fc(sent=30)}  # fmt: skip
    procs = {1: with_cgroup(pc(1), 1), 2: with_cgroup(pc(2), 2), 3: pc(3)}
    snap = engine.update(raw(1.0, flows, procs, {1: WEB, 2: BOX}))
    for names in ({"web.service"}, {WEB.path}, {WEB.path.lstrip("/")}):
        kept = keep_services(snap, frozenset(names))
        assert [f.key.pid for f in kept.flows] == [1]
        assert [p.pid for p in kept.processes] == [1]
    both = keep_services(snap, frozenset({"web.service", "docker:abababababab"}))
    assert sorted(f.key.pid for f in both.flows) == [1, 2]
    assert keep_services(snap, frozenset({"nope.service"})).flows == ()


def test_service_option_repeats() -> None:
    assert parse_args(["--service", "a.service", "--service", "docker:ab"]).services == (
        frozenset({"a.service", "docker:ab"})
    )
    assert parse_args([]).services == frozenset()


class _CgroupSource(FakeSource):
    def read(self) -> RawSample:
        base = super().read()
        flows = {k: with_cgroup(base.flows[k], 42) for k in base.flows}
        procs = {p: with_cgroup(base.processes[p], 42) for p in base.processes}
        return replace(base, flows=flows, processes=procs, cgroups={42: WEB})  # type: ignore[arg-type]


@pytest.mark.parametrize(("name", "shown"), [("web.service", 1), ("other.service", 0)])
def test_cli_json_with_service(name: str, shown: int, capsys: pytest.CaptureFixture[str]) -> None:
    clock = FakeClock()
    argv = ["--json", "--count", "2", "--service", name]
    source = _CgroupSource(clock=clock)
    assert cli.main(argv, source_factory=Factory(source), clock=clock, stop=FakeStop(clock)) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 2
    assert all(len(o["flows"]) == shown and len(o["processes"]) == shown for o in lines)
    if shown:
        assert lines[-1]["flows"][0]["service"] == "web.service"


def test_service_filter_forwards_flush() -> None:
    clock = FakeClock()
    source = _CgroupSource(clock=clock)
    from netmon.live_feed import LiveFeed

    engine = MetricsEngine(alpha=1.0, threshold_bps=1e12, nominal_interval_s=1.0)
    feed = ServiceFilter(LiveFeed(source, engine, 1.0, clock), frozenset({"web.service"}))
    snap = feed.flush(clock())
    assert snap is not None and [f.service for f in snap.flows] == ["web.service"]
    feed.close()
    assert source.closed == 1


def test_replay_shows_the_recorded_services_without_looking_at_cgroups(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import netmon.cgroups

    def no_cgroups(*args: object, **kwargs: object) -> None:
        raise AssertionError("a replay looked at the cgroup tree")

    monkeypatch.setattr(netmon.cgroups.CgroupNames, "__init__", no_cgroups)
    monkeypatch.setattr(netmon.cgroups.os, "scandir", no_cgroups)
    engine = MetricsEngine(alpha=1.0, threshold_bps=1e12, nominal_interval_s=1.0)
    flows = {key(pid=1): with_cgroup(fc(sent=10), 1), key(pid=2): with_cgroup(fc(sent=20), 2)}
    procs = {1: with_cgroup(pc(1), 1), 2: with_cgroup(pc(2), 2)}
    snaps = [engine.update(raw(t, flows, procs, {1: WEB, 2: BOX})) for t in (1.0, 2.0)]
    path = tmp_path / "rec.jsonl"
    path.write_text("".join(dumps(s) + "\n" for s in snaps))
    clock = FakeClock()
    argv = ["--replay", str(path), "--json", "--service", "docker:abababababab"]
    assert cli.main(argv, clock=clock, stop=FakeStop(clock)) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(lines) == 2
    for obj in lines:
        assert [(f["pid"], f["cgroup"], f["service"]) for f in obj["flows"]] == [
            (2, BOX.path, BOX.service)
        ]
        assert [p["service"] for p in obj["processes"]] == [BOX.service]


def test_without_cgroup_v2_the_live_source_says_so_and_names_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from collections import defaultdict

    from netmon.abi import load_abi
    from netmon.sources import live

    monkeypatch.setattr(live, "cgroup2_mount", lambda: None)
    source = live.LiveSource(defaultdict(object), "syscalls", load_abi())
    assert [w for w in source.warnings if "cgroup v2" in w] == [
        "no cgroup v2 hierarchy is mounted: flows carry no cgroup or service"
    ]
    ids = np.array([1, 2, 3], dtype=np.uint64)
    assert source._cgroup_names(ids, ids, np.array([10, 11, 12])) == {}
