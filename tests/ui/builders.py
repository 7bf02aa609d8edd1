"""Snapshots with known values, and replay files made from them."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from netmon.jsonl import dumps
from netmon.model import FlowKey, FlowStat, ProcessStat, Snapshot

MB = 1024 * 1024
THRESHOLD = 10 * MB  # the default --threshold


def flow(
    pid: int,
    comm: str = "curl",
    rate: float = 0.0,
    protocol: str = "TCP",
    port: int = 443,
    remote_ip: str | None = "192.0.2.1",
    role: str = "client",
    sent: int = 0,
    recv: int = 0,
    kernel: bool = False,
    anomaly: bool | None = None,
    service: str | None = None,
) -> FlowStat:
    return FlowStat(
        key=FlowKey(
            pid=pid,
            protocol=protocol,
            family="IPv6" if remote_ip and ":" in remote_ip else "IPv4",
            port=port,
            remote_ip=remote_ip,
            role=role,
        ),
        comm=comm,
        bytes_sent=sent,
        bytes_recv=recv,
        packets_sent=1,
        packets_recv=1,
        rate_bps=rate,
        anomaly=rate > THRESHOLD if anomaly is None else anomaly,
        kernel=kernel,
        cgroup=None if service is None else f"/system.slice/{service}",
        service=service,
    )


def snapshot(
    flows: Iterable[FlowStat],
    ts: float = 1_700_000_000.0,
    protocols: dict[str, int] | None = None,
    dropped: int = 0,
) -> Snapshot:
    """Processes are the per-pid sums of the flows."""
    flows = tuple(flows)
    procs: dict[int, ProcessStat] = {}
    for f in flows:
        p = procs.get(f.key.pid)
        procs[f.key.pid] = ProcessStat(
            pid=f.key.pid,
            comm=f.comm,
            bytes_sent=f.bytes_sent + (p.bytes_sent if p else 0),
            bytes_recv=f.bytes_recv + (p.bytes_recv if p else 0),
            rate_bps=f.rate_bps + (p.rate_bps if p else 0.0),
            kernel=f.kernel,
            cgroup=f.cgroup,
            service=f.service,
        )
    if protocols is None:
        protocols = {}
        for f in flows:
            protocols[f.key.protocol] = (
                protocols.get(f.key.protocol, 0) + f.bytes_sent + f.bytes_recv
            )
    return Snapshot(
        ts=ts,
        interval_s=1.0,
        flows=flows,
        processes=tuple(procs.values()),
        protocols=protocols,
        dropped=dropped,
    )


def write_replay(path: Path, snapshots: Iterable[Snapshot]) -> Path:
    path.write_text("".join(dumps(s) + "\n" for s in snapshots), encoding="utf-8")
    return path
