"""The detectors in netmon: --detectors, marked flows, JSON, the table."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from netmon import cli
from netmon.alerts.choice import make_detectors
from netmon.alerts.fanout import FanoutSettings
from netmon.alerts.feed import AlertingFeed
from netmon.alerts.manager import AlertManager
from netmon.config import parse_args
from netmon.export.snapshot_view import SnapshotView
from netmon.jsonl import dumps, snapshot_to_dict
from netmon.model import Snapshot
from netmon.view import UIState, View, ViewSettings, apply_key
from tests.ui.builders import flow, snapshot, write_replay
from tests.unit.helpers import FakeClock, FakeStop

MB = 1024 * 1024


class ListFeed:
    def __init__(self, snaps: Sequence[Snapshot]) -> None:
        self._snaps = list(snaps)

    def next_due(self) -> float | None:
        return 0.0 if self._snaps else None

    def poll(self, now: float) -> Snapshot | None:
        return self._snaps.pop(0) if self._snaps else None

    def close(self) -> None:
        pass


def scan_series() -> list[Snapshot]:
    """An elephant flow above 10 MB/s, and a port scan growing 5 ports a snapshot."""
    out, ports = [], []
    for t in range(4):
        ports += [flow(9, "nmap", rate=10.0, port=1 + 5 * t + i, remote_ip="192.0.2.9")
                  for i in range(5)]  # fmt: skip
        out.append(snapshot([flow(1, "big", rate=20 * MB), *ports], ts=1000.0 + t))
    return out


def play(names: Sequence[str]) -> tuple[AlertingFeed, list[Snapshot]]:
    detectors = make_detectors(names, 10 * MB, fanout=FanoutSettings(ports=10))
    feed = AlertingFeed(ListFeed(scan_series()), AlertManager(detectors))
    shown = []
    while (snap := feed.poll(0.0)) is not None:
        shown.append(snap)
    return feed, shown


def flagged(snap: Snapshot) -> dict[int, tuple[str, ...]]:
    """port -> detectors, for the flagged flows."""
    return {f.key.port: f.detectors for f in snap.flows if f.anomaly}


def test_flows_are_marked_by_every_firing_detector() -> None:
    feed, shown = play(["threshold", "fanout"])
    last = shown[-1]
    marks = flagged(last)
    assert marks[443] == ("threshold",)
    assert len(marks) == 21 and all(marks[p] == ("fanout",) for p in range(1, 21))
    reasons = {f.reason for f in last.flows if f.key.pid == 9}
    assert reasons == {"scan 20 ports"}
    footer = feed.footer()
    assert footer.by_detector == (("threshold", 1), ("fanout", 1))
    assert [line.split()[1:3] for line in footer.log] == [["firing", "fanout"],
                                                          ["firing", "threshold"]]  # fmt: skip
    # The JSON: anomaly as before, with the detectors' names added.
    obj = json.loads(dumps(last))
    assert obj == json.loads(json.dumps(snapshot_to_dict(last)))
    by_port = {f["port"]: f for f in obj["flows"]}
    assert by_port[443]["detectors"] == ["threshold"] and by_port[443]["anomaly"] is True
    assert by_port[5]["detectors"] == ["fanout"]
    # Before the scan fired, its flows were not flagged.
    assert all(not f.anomaly for f in shown[0].flows if f.key.pid == 9)
    assert "detectors" not in json.loads(dumps(shown[0]))["flows"][1]


def test_without_threshold_a_fast_flow_is_not_flagged() -> None:
    _, shown = play(["fanout"])
    assert 443 not in flagged(shown[-1])
    _, shown = play([])
    assert flagged(shown[-1]) == {}


def test_table_shows_the_reason_footer_counts_and_alert_log() -> None:
    feed, shown = play(["threshold", "fanout"])
    view = View(ViewSettings(interval_s=1.0, alpha=0.4, threshold_bps=10 * MB,
                             detectors=("threshold", "fanout")))  # fmt: skip
    view.set_snapshot(shown[-1])
    view.set_alerts(feed.footer())
    frame = view.frame(UIState(), 160, 40)
    text = ["".join(s.text for s in line) for line in frame.lines]
    assert "ALERT" in text[2]
    assert any("scan 20 ports" in t for t in text)
    assert any("> 10.0 MB/s" in t for t in text)
    assert text[-1].startswith("⚠️ ALERT: 2 flows (1 threshold, 1 scan)")
    state = apply_key(UIState(), "a", 0, 10)
    log = ["".join(s.text for s in line) for line in view.frame(state, 160, 40).lines]
    assert log[2].startswith("Alert log")
    assert "firing   fanout    nmap (9) 192.0.2.9" in log[3]
    assert apply_key(state, "x", 0, 10).log is False
    state = apply_key(UIState(), "h", 0, 10)
    help_text = "\n".join(
        "".join(s.text for s in line) for line in view.frame(state, 160, 40).lines
    )
    assert "* fanout" in help_text and "  new-peer" in help_text


def test_detector_options() -> None:
    config = parse_args(["--detectors", "baseline,new-peer", "--baseline-z", "5",
                         "--baseline-floor", "1M", "--fanout-ports", "20",
                         "--new-peer-learn", "60"])  # fmt: skip
    assert config.detectors == ("baseline", "new-peer")
    assert (config.baseline.z, config.baseline.floor_bps) == (5.0, 1024 * 1024)
    assert config.fanout.ports == 20
    assert config.new_peer.learn_s == 60.0
    assert parse_args([]).detectors == ("threshold", "baseline", "fanout")
    with pytest.raises(SystemExit):
        parse_args(["--detectors", "nope"])


def test_replay_flags_from_the_rates_with_its_own_threshold() -> None:
    # A recording's `anomaly` says what its own detectors flagged; a replay
    # works it out again from the rates, with the replay's --threshold.
    recorded = snapshot([flow(1, "a", rate=2 * MB, anomaly=True), flow(2, "b", rate=20 * MB)])
    for limit, flagged_pids in ((10 * MB, [2]), (1 * MB, [1, 2]), (100 * MB, [])):
        detectors = make_detectors(["threshold"], limit)
        feed = AlertingFeed(ListFeed([recorded]), AlertManager(detectors))
        snap = feed.poll(0.0)
        assert snap is not None
        assert sorted(f.key.pid for f in snap.flows if f.anomaly) == flagged_pids


def test_detectors_find_the_same_with_shared_or_fresh_key_objects() -> None:
    # Live, a flow keeps one key object; a replay makes new ones each time.
    # The detectors find flows by object identity first: same findings.
    def series(shared: bool) -> list[Snapshot]:
        keep = [flow(1, "web", rate=20 * 1024.0, port=p) for p in range(1, 4)]
        out = []
        for t in range(160):  # past the 120 s warm-up
            rate = 400 * 1024.0 if t >= 140 else 20 * 1024.0 * (1 + (t % 3) / 10)
            flows = [
                replace(f, rate_bps=rate) if shared else flow(1, "web", rate=rate, port=f.key.port)
                for f in keep
            ]
            out.append(snapshot(flows, ts=1000.0 + t))
        return out

    def run(snaps: list[Snapshot]) -> list[tuple[float, str, int | None]]:
        m = AlertManager(make_detectors(["baseline", "fanout", "new-peer"], 10 * MB))
        return [(e.ts, e.state, e.subject.port) for s in snaps for e in m.update(SnapshotView(s))]

    shared, fresh = run(series(True)), run(series(False))
    assert shared == fresh
    assert [e[1] for e in shared] == ["firing"] * 3


def test_replay_runs_the_chosen_detectors_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_replay(tmp_path / "scan.jsonl", scan_series())
    clock = FakeClock()
    argv = ["--replay", str(path), "--json", "--speed", "1000000",
            "--detectors", "fanout", "--fanout-ports", "10"]  # fmt: skip
    assert cli.main(argv, clock=clock, stop=FakeStop(clock)) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(lines) == 4
    fired = [a for line in lines for a in line["alerts"] if a["state"] == "firing"]
    assert [(a["detector"], a["pid"], a["remote_ip"]) for a in fired] == [
        ("fanout", 9, "192.0.2.9")
    ]
    last = {f["port"]: f for f in lines[-1]["flows"]}
    assert last[5]["detectors"] == ["fanout"] and last[5]["anomaly"] is True
    # Not selected: the 20 MB/s flow is not flagged.
    assert last[443]["anomaly"] is False and "detectors" not in last[443]
