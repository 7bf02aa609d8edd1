"""Socket mode counts a CPU's latest flows in per-CPU slots and moves them
into the tables now and then (bpf/netmon.bpf.c, "per-CPU flow slots"):
flows that keep taking each other's slots on one CPU stay exact."""

from __future__ import annotations

from typing import Any

from .flows import assert_no_problems, flow_mismatches
from .traffic import slot_churner, udp_sink


def test_flows_taking_each_others_slots_on_one_cpu_stay_exact(live: Any, spawn: Any) -> None:
    host = "127.0.0.1"
    before = live.read()
    sinks = [spawn(f"nm-slot-sink{i}", udp_sink, host) for i in range(3)]
    ports = [sink.recv() for sink in sinks]
    sockets, rounds = 40, 30
    client = spawn("nm-slots", slot_churner, host, ports, sockets, rounds)
    client_ledger = client.result()
    per_port = {port: 0 for port in ports}
    for (_proto, _fam, port, _ip, _role), tally in client_ledger.flows.items():
        per_port[port] += tally.packets_sent
    for sink, port in zip(sinks, ports, strict=True):
        sink.send(per_port[port])
    ledgers = {sink.pid: sink.result() for sink in sinks}
    after = live.read()
    assert sum(per_port.values()) == sockets * rounds + rounds
    problems = flow_mismatches(before, after, client.pid, client_ledger, client.comm, "client")
    for sink in sinks:
        problems += flow_mismatches(before, after, sink.pid, ledgers[sink.pid], sink.comm, "server")
    assert_no_problems(problems, live)
