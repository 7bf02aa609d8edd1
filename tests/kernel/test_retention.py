"""Over days: a flow that moves nothing for the idle timeout leaves the
kernel's table and the list, and its bytes stay in the closed aggregate.

The source's clock is the test's (`clock_ns`), stepped past the timeout: no
sleeping, and the traffic is real, counted exactly."""

from __future__ import annotations

import socket
from typing import Any

from netmon.metrics import MetricsEngine
from netmon.model import FlowKey, RawSample, Snapshot
from netmon.sources.live import LiveSource

from .flows import assert_no_problems, flow_mismatches, pid_deltas
from .traffic import Conn, Ledger, family_name, norm_ip, payload, tell, udp_sink

TIMEOUT_S = 60
SECOND_NS = 1_000_000_000


class StepClock:
    """CLOCK_MONOTONIC as the test says it is, in nanoseconds."""

    def __init__(self) -> None:
        self.now_ns = 1_000 * SECOND_NS

    def __call__(self) -> int:
        return self.now_ns

    def advance(self, seconds: int) -> None:
        self.now_ns += seconds * SECOND_NS


def paced_sender(ctl: Conn, host: str, port: int) -> Ledger:
    """Sends the datagrams the test asks for, each time it asks, from one
    socket (one flow), and stays alive until told to stop (None)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ledger = Ledger()
    tally = ledger.at("UDP", family_name(s.family), port, norm_ip(host), "client")
    while (sizes := ctl.recv()) is not None:
        for n in sizes:
            tally.sent(s.sendto(payload(n, seed=n), (host, port)))
        tell(ctl, ledger)
    s.close()
    return ledger


def sender_flows(sample: RawSample, pid: int) -> dict[Any, Any]:
    return {k: c for k, c in sample.flows.items() if k.pid == pid}


def retired_keys(sample: RawSample) -> set[Any]:
    return {sample.flow_readings.key_of(i) for i in sample.retired}


def expected_closed(before: Snapshot, s_before: RawSample, s_after: RawSample) -> int:
    """Bytes sent that the flows retired in `s_after` take into the closed
    aggregate: their totals listed in `before`, plus what the retiring read
    found beyond the read before."""
    retired = retired_keys(s_after)
    total = 0
    for f in before.flows:
        if f.key in retired:
            total += f.bytes_sent + s_after.flows[f.key].bytes_sent
            total -= s_before.flows[f.key].bytes_sent
    return total


def test_idle_flows_leave_the_kernel_table_and_keep_their_bytes_in_closed(spawn: Any) -> None:
    host = "127.0.0.1"
    clock = StepClock()
    src = LiveSource.open(probes="auto", idle_timeout_s=TIMEOUT_S, clock_ns=clock)
    try:
        engine = MetricsEngine(0.4, 1e12, 1.0, forget_after_s=None)
        sink = spawn("nm-idle-sink", udp_sink, host)
        port = sink.recv()
        sender = spawn("nm-idle", paced_sender, host, port)
        start = src.read()
        engine.update(start)

        sender.send((300, 1200))
        sender.recv()
        clock.advance(1)
        moved = src.read()
        engine.update(moved)

        # It moves again just before the timeout: it stays.
        clock.advance(TIMEOUT_S - 1)
        sender.send((700,))
        ledger = sender.recv()
        again = src.read()
        engine.update(again)
        assert sender_flows(again, sender.pid)
        assert not retired_keys(again) & set(sender_flows(again, sender.pid))
        problems = flow_mismatches(start, again, sender.pid, ledger, sender.comm, "before idle")
        assert_no_problems(problems, src)

        # One second short of the timeout since it last moved: still there.
        clock.advance(TIMEOUT_S - 1)
        still = src.read()
        listed = engine.update(still)
        (key,) = sender_flows(still, sender.pid)
        assert key not in retired_keys(still)

        # The timeout: its last counts are in this read, then it is gone.
        clock.advance(1)
        idle = src.read()
        assert key in retired_keys(idle)
        problems = flow_mismatches(start, idle, sender.pid, ledger, sender.comm, "retired")
        assert_no_problems(problems, src)
        snap = engine.update(idle)
        assert key not in {f.key for f in snap.flows}
        closed_now = snap.closed.bytes_sent - listed.closed.bytes_sent
        assert closed_now == expected_closed(listed, still, idle)
        assert closed_now >= 2200  # the sender's 300 + 1200 + 700 among them

        # Out of the kernel's table: the next read does not have it, and its
        # removal is not counted as a loss.
        clock.advance(1)
        after = src.read()
        assert not sender_flows(after, sender.pid)
        assert after.dropped == idle.dropped
        assert engine.update(after).closed.bytes_sent == snap.closed.bytes_sent

        # It moves again: a new entry, counted from zero; listed plus closed
        # keeps everything.
        sender.send((50,))
        sender.recv()
        clock.advance(1)
        back = src.read()
        resumed = engine.update(back)
        assert {k: c.bytes_sent for k, c in sender_flows(back, sender.pid).items()} == {key: 50}
        assert [f.bytes_sent for f in resumed.flows if f.key == key] == [50]
        assert resumed.closed.bytes_sent >= snap.closed.bytes_sent

        sender.send(None)
        sender.result()
        sink.send(4)
        sink.result()
    finally:
        src.close()


def test_bytes_that_land_between_the_read_and_the_removal_are_kept(spawn: Any) -> None:
    """The source reads the table, finds the flow idle, and deletes it; a
    datagram sent in between (here, made to happen there) is not lost: it is
    in the counts the deletion returns, or, while the kernel still held it in
    its per-CPU slot for the flow (socket mode), on the flow's new entry in
    the next read. Never in both."""
    host = "127.0.0.1"
    clock = StepClock()
    src = LiveSource.open(probes="auto", idle_timeout_s=TIMEOUT_S, clock_ns=clock)
    try:
        sink = spawn("nm-race-sink", udp_sink, host)
        port = sink.recv()
        sender = spawn("nm-race", paced_sender, host, port)
        start = src.read()
        sender.send((400,))
        sender.recv()
        clock.advance(1)
        src.read()  # the flow is there, with 400 bytes
        take = src._take

        def take_after_a_send(table: Any, raw: bytes) -> Any:
            if src._flow_key(raw).pid == sender.pid:
                sender.send((123,))
                sender.recv()  # sent: counted by the kernel before sendto returned
            return take(table, raw)

        src._take = take_after_a_send  # type: ignore[method-assign]
        clock.advance(TIMEOUT_S)
        idle = src.read()
        src._take = take  # type: ignore[method-assign]
        clock.advance(1)
        later = src.read()
        sender.send(None)
        ledger = sender.result()
        want = {FlowKey(sender.pid, *fid): t.as_tuple() for fid, t in ledger.flows.items()}
        assert set(want) <= retired_keys(idle)
        retired = pid_deltas(start, idle, sender.pid)
        resumed = pid_deltas(start, later, sender.pid)  # a new entry counts from zero
        none = (0, 0, 0, 0)
        total = {}
        for key in want:
            pairs = zip(retired.get(key, none), resumed.get(key, none), strict=True)
            total[key] = tuple(a + b for a, b in pairs)
        assert total == want, (retired, resumed)
        sink.send(2)
        sink.result()
    finally:
        src.close()
