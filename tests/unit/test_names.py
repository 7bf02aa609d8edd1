"""Peer names: the resolver (injected lookup and clock, no sleeping), the
feed that attaches names to snapshots, and `remote_name` in JSON Lines."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from netmon.jsonl import SnapshotFormatError, dumps, loads, snapshot_to_dict
from netmon.metrics import MetricsEngine
from netmon.model import FlowStat, FlowTable, Snapshot
from netmon.names import NamingFeed, Resolver, ResolverSettings

from .helpers import FakeClock, fc, key, sample

WAIT_S = 10.0  # generous bound on a condition that should hold at once


class Lookups:
    """A lookup function that answers from a table, records its calls, and
    can be held until the test releases it."""

    def __init__(self, table: dict[str, str | None], hold: bool = False) -> None:
        self.table = table
        self.calls: list[str] = []
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self.started = threading.Semaphore(0)
        self._lock = threading.Lock()

    def __call__(self, ip: str) -> str | None:
        with self._lock:
            self.calls.append(ip)
        self.started.release()
        assert self.release.wait(WAIT_S)
        answer = self.table.get(ip)
        if answer == "raise":
            raise OSError("resolver failed")
        return answer


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def resolvers() -> Iterator[list[Resolver]]:
    made: list[Resolver] = []
    yield made
    for r in made:
        r.close()


def resolver(
    lookups: Lookups, clock: FakeClock, made: list[Resolver], **settings: float
) -> Resolver:
    r = Resolver(lookups, clock, ResolverSettings(**settings))  # type: ignore[arg-type]
    made.append(r)
    return r


def test_names_come_at_the_next_request(clock: FakeClock, resolvers: list[Resolver]) -> None:
    lookups = Lookups({"192.0.2.1": "one.example", "192.0.2.2": None})
    r = resolver(lookups, clock, resolvers)
    r.request(["192.0.2.1", None, "192.0.2.2", "192.0.2.1"])
    assert dict(r.names()) == {}  # nothing waits for an answer
    assert r.wait_idle(WAIT_S)
    assert dict(r.names()) == {}  # answers are picked up by the next request
    r.request(["192.0.2.1", "192.0.2.2"])
    assert dict(r.names()) == {"192.0.2.1": "one.example"}
    assert sorted(lookups.calls) == ["192.0.2.1", "192.0.2.2"]  # each once


def test_each_address_is_looked_up_once_while_its_answer_is_fresh(
    clock: FakeClock, resolvers: list[Resolver]
) -> None:
    lookups = Lookups({"192.0.2.1": "one.example"})
    r = resolver(lookups, clock, resolvers, positive_ttl_s=60.0, negative_ttl_s=10.0)
    for _ in range(5):
        r.request(["192.0.2.1", "192.0.2.9"])
        assert r.wait_idle(WAIT_S)
        clock.advance(1.0)
    assert sorted(lookups.calls) == ["192.0.2.1", "192.0.2.9"]
    clock.advance(10.0)  # the negative answer expired, the name did not
    r.request(["192.0.2.1", "192.0.2.9"])
    assert r.wait_idle(WAIT_S)
    assert sorted(lookups.calls) == ["192.0.2.1", "192.0.2.9", "192.0.2.9"]
    clock.advance(60.0)  # now the name too; it stays shown until the new answer
    lookups.table["192.0.2.1"] = "renamed.example"
    lookups.release.clear()
    r.request(["192.0.2.1"])
    assert lookups.started.acquire(timeout=WAIT_S)
    r.request(["192.0.2.1"])
    assert r.names()["192.0.2.1"] == "one.example"
    lookups.release.set()
    assert r.wait_idle(WAIT_S)
    r.request(["192.0.2.1"])
    assert r.names()["192.0.2.1"] == "renamed.example"
    assert lookups.calls.count("192.0.2.1") == 2


def test_a_lookup_that_never_returns_holds_nothing_up(
    clock: FakeClock, resolvers: list[Resolver]
) -> None:
    lookups = Lookups({"192.0.2.1": "one.example"}, hold=True)
    r = resolver(lookups, clock, resolvers, workers=2, max_in_flight=3)
    addresses = [f"192.0.2.{n}" for n in range(1, 11)]
    r.request(addresses)
    assert lookups.started.acquire(timeout=WAIT_S)
    assert lookups.started.acquire(timeout=WAIT_S)
    for _ in range(100):  # every request returns while both workers are stuck
        r.request(addresses)
    assert r.lookups == 3  # bounded: the busiest three queued, the rest wait for room
    assert not r.wait_idle(0.0)
    lookups.release.set()
    assert r.wait_idle(WAIT_S)
    r.request(addresses)  # room again: the next three
    assert r.lookups == 6
    assert r.wait_idle(WAIT_S)
    assert lookups.calls[:3] and sorted(lookups.calls) == sorted(addresses[:6])


def test_failed_lookups_are_negative_answers(clock: FakeClock, resolvers: list[Resolver]) -> None:
    lookups = Lookups({"192.0.2.1": "raise"})
    r = resolver(lookups, clock, resolvers)
    r.request(["192.0.2.1"])
    assert r.wait_idle(WAIT_S)
    r.request(["192.0.2.1"])
    assert dict(r.names()) == {}
    assert lookups.calls == ["192.0.2.1"]


def test_the_cache_is_bounded(clock: FakeClock, resolvers: list[Resolver]) -> None:
    lookups = Lookups({f"192.0.2.{n}": f"h{n}.example" for n in range(10)})
    r = resolver(lookups, clock, resolvers, max_entries=4)
    for n in range(10):
        r.request([f"192.0.2.{n}"])
        assert r.wait_idle(WAIT_S)
        clock.advance(1.0)
    r.request([])
    assert dict(r.names()) == {f"192.0.2.{n}": f"h{n}.example" for n in range(6, 10)}


def test_handed_out_names_do_not_change(clock: FakeClock, resolvers: list[Resolver]) -> None:
    r = resolver(Lookups({"192.0.2.1": "a.example", "192.0.2.2": "b.example"}), clock, resolvers)
    r.request(["192.0.2.1"])
    assert r.wait_idle(WAIT_S)
    r.request(["192.0.2.2"])
    first = r.names()
    assert r.wait_idle(WAIT_S)
    r.request([])
    assert dict(first) == {"192.0.2.1": "a.example"}
    assert len(r.names()) == 2


class OneSnapshotFeed:
    def __init__(self, snaps: list[Snapshot]) -> None:
        self.snaps = snaps
        self.closed = False

    def next_due(self) -> float | None:
        return 0.0 if self.snaps else None

    def poll(self, now: float) -> Snapshot | None:
        return self.snaps.pop(0) if self.snaps else None

    def close(self) -> None:
        self.closed = True


def test_naming_feed_and_json(clock: FakeClock, resolvers: list[Resolver]) -> None:
    engine = MetricsEngine(0.5, 1e12, 1.0)
    k1, k2 = key(remote_ip="192.0.2.1"), key(port=80, remote_ip="2001:db8::2", family="IPv6")
    k3 = key(port=22, remote_ip=None, role="unknown")
    flows = {k1: fc(sent=10), k2: fc(sent=20), k3: fc(sent=1)}
    snaps = [engine.update(sample(t, flows)) for t in (0.0, 1.0)]
    r = resolver(Lookups({"192.0.2.1": 'odd"name\x1b.example'}), clock, resolvers)
    inner = OneSnapshotFeed(snaps)
    feed = NamingFeed(inner, r)
    first = feed.poll(0.0)
    assert first is not None and all(f.remote_name is None for f in first.flows)
    assert r.wait_idle(WAIT_S)
    second = feed.poll(1.0)
    assert second is not None
    named = {f.key: f.remote_name for f in second.flows}
    assert named == {k1: 'odd"name\x1b.example', k2: None, k3: None}
    line = dumps(second)
    assert json.loads(line) == json.loads(json.dumps(snapshot_to_dict(second)))
    objs = {(f["port"]): f for f in json.loads(line)["flows"]}
    assert objs[443]["remote_name"] == 'odd"name\x1b.example'
    assert objs[443]["remote_ip"] == "192.0.2.1"
    assert objs[80]["remote_name"] is None
    # Replay keeps the recorded names.
    again = loads(line)
    assert {f.key: f.remote_name for f in again.flows} == named
    assert dumps(again) == line
    # The first snapshot's text is not changed by names that came later.
    assert '"remote_name":null' in dumps(first) and "odd" not in dumps(first)
    feed.close()
    assert inner.closed


def test_replay_checks_remote_name() -> None:
    table = FlowTable.from_stats([
        FlowStat(key=key(), comm="curl", bytes_sent=1, bytes_recv=2, packets_sent=1,
                 packets_recv=1, rate_bps=0.0, anomaly=False, remote_name="x.example"),
    ])  # fmt: skip
    line = dumps(Snapshot(ts=1.0, interval_s=1.0, flows=table, processes=()))
    assert loads(line).flows[0].remote_name == "x.example"
    old = line.replace('"remote_name":"x.example",', "")
    assert loads(old).flows[0].remote_name is None  # recordings from before names
    with pytest.raises(SnapshotFormatError, match="remote_name"):
        loads(line.replace('"x.example"', "42"))
    with pytest.raises(SnapshotFormatError, match="remote_name"):
        loads(line.replace('"x.example"', json.dumps("x" * 5000)))


def test_numeric_and_headless_service_make_no_lookups() -> None:
    from netmon.cli import _named
    from netmon.config import parse_args

    inner = OneSnapshotFeed([])
    assert _named(inner, parse_args(["-n"])) is inner
    assert _named(inner, parse_args(["--json", "--numeric"])) is inner
    assert _named(inner, parse_args(["--serve", "0"])) is inner
    named = _named(inner, parse_args(["--json"]))
    assert isinstance(named, NamingFeed)
    named.close()
    assert isinstance(_named(inner, parse_args([])), NamingFeed)


def test_replay_writes_the_recorded_names(tmp_path: Path) -> None:
    """Names are the recording's: 127.0.0.1 unnamed, then under a name no
    lookup would give; -n does not drop them from JSON either."""

    def line(ts: float, name: str | None) -> str:
        stat = FlowStat(key=key(remote_ip="127.0.0.1"), comm="curl", bytes_sent=1,
                        bytes_recv=2, packets_sent=1, packets_recv=1, rate_bps=0.0,
                        anomaly=False, remote_name=name)  # fmt: skip
        return dumps(Snapshot(ts=ts, interval_s=1.0, flows=(stat,), processes=())) + "\n"

    recording = tmp_path / "rec.jsonl"
    recording.write_text(line(1.0, None) + line(2.0, "recorded.netmon.test"))
    for extra in ([], ["-n"]):
        out = subprocess.run(
            [sys.executable, "-m", "netmon", "--replay", str(recording), "--json",
             "--speed", "1000", *extra],
            capture_output=True, text=True, timeout=120, check=True,
        ).stdout  # fmt: skip
        names = [json.loads(x)["flows"][0]["remote_name"] for x in out.splitlines()]
        assert names == [None, "recorded.netmon.test"]


def test_only_the_peers_of_new_flows_are_checked_until_there_is_a_reason(
    clock: FakeClock, resolvers: list[Resolver]
) -> None:
    """With `arrived`, a request does not walk every address: an address
    that is neither new nor due again is not looked at (the list of all
    addresses here names one that was never asked for: it stays unasked),
    until an answer expires, which makes the next request walk them all."""
    lookups = Lookups({})
    r = resolver(lookups, clock, resolvers, negative_ttl_s=10.0)
    r.request(["192.0.2.1"], arrived=["192.0.2.1"])
    assert r.wait_idle(WAIT_S)
    r.request(["192.0.2.1", "192.0.2.2", "192.0.2.3"], arrived=["192.0.2.3"])
    assert r.wait_idle(WAIT_S)
    assert sorted(lookups.calls) == ["192.0.2.1", "192.0.2.3"]
    clock.advance(11.0)  # the first answer expired: every address is walked
    r.request(["192.0.2.1", "192.0.2.2", "192.0.2.3"], arrived=[])
    assert r.wait_idle(WAIT_S)
    # (192.0.2.3's answer was picked up just now: still fresh.)
    assert sorted(lookups.calls) == ["192.0.2.1", "192.0.2.1", "192.0.2.2", "192.0.2.3"]


def test_new_peers_left_for_want_of_room_are_asked_for_later(
    clock: FakeClock, resolvers: list[Resolver]
) -> None:
    lookups = Lookups({}, hold=True)
    r = resolver(lookups, clock, resolvers, max_in_flight=2)
    everyone = [f"192.0.2.{n}" for n in range(1, 6)]
    r.request(everyone, arrived=everyone)  # room for two
    lookups.release.set()
    assert r.wait_idle(WAIT_S)
    for _ in range(3):  # nothing new arrives; the rest are still asked for
        r.request(everyone, arrived=[])
        assert r.wait_idle(WAIT_S)
    assert sorted(lookups.calls) == everyone


def test_the_naming_feed_asks_for_the_peers_of_new_flows_only(
    clock: FakeClock, resolvers: list[Resolver]
) -> None:
    """Through the engine's flow serials: a flow seen before is not asked
    about again, a flow that appears later is, whatever its rank."""
    engine = MetricsEngine(0.5, 1e12, 1.0)
    k1, k2 = key(remote_ip="192.0.2.1"), key(port=80, remote_ip="192.0.2.2")
    lookups = Lookups({})
    r = resolver(lookups, clock, resolvers)
    calls: list[list[str | None] | None] = []
    request = r.request

    def spy(ips: object, arrived: list[str | None] | None = None) -> None:
        calls.append(None if arrived is None else sorted(map(str, arrived)))
        request(ips, arrived)  # type: ignore[arg-type]

    r.request = spy  # type: ignore[method-assign]
    snaps = [
        engine.update(sample(0.0, {k1: fc(sent=10)})),
        engine.update(sample(1.0, {k1: fc(sent=20)})),
        engine.update(sample(2.0, {k1: fc(sent=30), k2: fc(sent=1)})),
    ]
    feed = NamingFeed(OneSnapshotFeed(snaps), r)
    for t in (0.0, 1.0, 2.0):
        assert feed.poll(t) is not None
        assert r.wait_idle(WAIT_S)
    assert calls == [["192.0.2.1"], [], ["192.0.2.2"]]
    assert sorted(lookups.calls) == ["192.0.2.1", "192.0.2.2"]
    feed.close()
