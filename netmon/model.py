"""Data passed between the layers: source -> metrics -> view/output.

Counters are cumulative since capture started. A source produces a
`RawSample`; the metrics engine turns consecutive samples into a `Snapshot`,
which is what the JSON output, the recorder, the replayer and the UI share.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, order=True)
class FlowKey:
    """One flow: a process talking one protocol to one service port and peer."""

    pid: int
    protocol: str  # "TCP", "UDP", "ICMP", "ICMPv6", "RAW", "PACKET"
    family: str  # "IPv4", "IPv6", "PACKET"
    port: int  # service port: local for servers, remote for clients, 0 if none
    remote_ip: str | None
    role: str  # "client", "server" or "unknown"


@dataclass(frozen=True)
class FlowCounters:
    """Cumulative kernel counters for one flow at read time."""

    bytes_sent: int
    bytes_recv: int
    packets_sent: int
    packets_recv: int
    comm: str  # process name captured in the kernel at event time
    kernel: bool = False  # moved by a kernel thread


@dataclass(frozen=True)
class ProcessCounters:
    """Cumulative kernel counters for one process (tgid)."""

    pid: int
    comm: str
    bytes_sent: int
    bytes_recv: int
    packets_sent: int
    packets_recv: int
    kernel: bool = False


@dataclass(frozen=True)
class RawSample:
    """Everything a source read in one poll."""

    monotonic_ns: int  # CLOCK_MONOTONIC when the maps were read
    wall_time: float  # unix seconds at the same moment
    flows: dict[FlowKey, FlowCounters]
    processes: dict[int, ProcessCounters]
    protocols: dict[str, int]  # protocol name -> bytes (sent + received)
    dropped: int  # flows the kernel could not keep (evicted or failed inserts)


@dataclass(frozen=True)
class FlowStat:
    """One flow as shown and written out."""

    key: FlowKey
    comm: str
    bytes_sent: int
    bytes_recv: int
    packets_sent: int
    packets_recv: int
    rate_bps: float  # smoothed sent+received bytes/s
    anomaly: bool
    kernel: bool = False


@dataclass(frozen=True)
class ProcessStat:
    pid: int
    comm: str
    bytes_sent: int
    bytes_recv: int
    rate_bps: float
    kernel: bool = False


@dataclass(frozen=True)
class Snapshot:
    """The state of the world after one poll: the JSON Lines contract."""

    ts: float  # unix seconds
    interval_s: float  # seconds covered since the previous snapshot
    flows: tuple[FlowStat, ...]
    processes: tuple[ProcessStat, ...]
    protocols: dict[str, int] = field(default_factory=dict)
    dropped: int = 0
