"""Comparing what a source counted for one pid with what its generator counted."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from netmon.model import FlowCounters, FlowKey, RawSample

from .traffic import Ledger

Counts = tuple[int, int, int, int]
FIELDS = ("bytes_sent", "bytes_recv", "packets_sent", "packets_recv")


def _counts(c: FlowCounters | None) -> Counts:
    if c is None:
        return (0, 0, 0, 0)
    return (c.bytes_sent, c.bytes_recv, c.packets_sent, c.packets_recv)


def pid_deltas(before: RawSample, after: RawSample, pid: int) -> dict[FlowKey, Counts]:
    """Flows of `pid` that moved between the two samples, with their deltas."""
    out: dict[FlowKey, Counts] = {}
    for key, now in after.flows.items():
        if key.pid != pid:
            continue
        delta = _sub(_counts(now), _counts(before.flows.get(key)))
        if any(delta):
            out[key] = delta
    return out


def _fmt(c: Counts | None) -> str:
    if c is None:
        return "absent"
    return ", ".join(f"{name}={value}" for name, value in zip(FIELDS, c, strict=True))


def flow_mismatches(
    before: RawSample,
    after: RawSample,
    pid: int,
    ledger: Ledger,
    comm: str | Iterable[str] | None,
    what: str,
) -> list[str]:
    """Differences between the source's flows for `pid` and the generator's ledger.

    Every flow the generator counted must be there with exactly its counts,
    no other flow of that pid may have moved, each flow carries one of the
    expected comms, and the per-process totals add up.
    """
    got = pid_deltas(before, after, pid)
    want = {FlowKey(pid, *fid): t.as_tuple() for fid, t in ledger.flows.items()}
    comms = {comm} if isinstance(comm, str) else (set(comm) if comm is not None else None)
    problems: list[str] = []
    for key in sorted(set(got) | set(want), key=str):
        g, w = got.get(key), want.get(key)
        if g != w:
            problems.append(f"{what} pid {pid} flow {_key(key)}: expected {_fmt(w)}; got {_fmt(g)}")
        elif after.flows[key].kernel:
            problems.append(f"{what} pid {pid} flow {_key(key)}: marked as a kernel thread's")
        elif comms is not None:
            c = after.flows[key].comm
            if c not in comms:
                problems.append(
                    f"{what} pid {pid} flow {_key(key)}: comm {c!r}, expected {sorted(comms)}"
                )
    if want and not problems:
        problems += _process_mismatches(before, after, pid, want, comms, what)
    return problems


def _process_mismatches(
    before: RawSample,
    after: RawSample,
    pid: int,
    want: dict[FlowKey, Counts],
    comms: set[str] | None,
    what: str,
) -> list[str]:
    total = _sum(want.values())
    proc = after.processes.get(pid)
    if proc is None:
        return [f"{what} pid {pid}: missing from processes"]
    prev = before.processes.get(pid)
    now = (proc.bytes_sent, proc.bytes_recv, proc.packets_sent, proc.packets_recv)
    then = (
        (prev.bytes_sent, prev.bytes_recv, prev.packets_sent, prev.packets_recv) if prev else None
    )
    got = _sub(now, then or (0, 0, 0, 0))
    out = []
    if got != total:
        out.append(f"{what} pid {pid} process totals: expected {_fmt(total)}; got {_fmt(got)}")
    if comms is not None and proc.comm not in comms:
        out.append(f"{what} pid {pid} process comm {proc.comm!r}, expected {sorted(comms)}")
    return out


def _sum(counts: Iterable[Counts]) -> Counts:
    a = b = c = d = 0
    for w, x, y, z in counts:
        a, b, c, d = a + w, b + x, c + y, d + z
    return (a, b, c, d)


def _sub(x: Counts, y: Counts) -> Counts:
    return (x[0] - y[0], x[1] - y[1], x[2] - y[2], x[3] - y[3])


def _key(k: FlowKey) -> str:
    return f"({k.protocol} {k.family} port={k.port} remote={k.remote_ip} {k.role})"


def protocol_shortfall(before: RawSample, after: RawSample, ledgers: Iterable[Ledger]) -> list[str]:
    """protocols[] is machine-wide: it must have grown by at least what we moved."""
    moved: dict[str, int] = {}
    for ledger in ledgers:
        for (proto, *_), t in ledger.flows.items():
            moved[proto] = moved.get(proto, 0) + t.bytes_sent + t.bytes_recv
    out = []
    for proto, n in moved.items():
        grew = after.protocols.get(proto, 0) - before.protocols.get(proto, 0)
        if grew < n:
            out.append(
                f"protocols[{proto!r}] grew by {grew}, less than the {n} bytes the generators moved"
            )
    return out


def assert_no_problems(problems: list[str], source: Any) -> None:
    assert not problems, f"[{source.mode} mode]\n" + "\n".join(problems)
