"""Test doubles and sample builders (no root, no bcc, no real time)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from netmon.model import FlowCounters, FlowKey, ProcessCounters, RawSample

WALL0 = 1_700_000_000.0


def key(
    pid: int = 100,
    protocol: str = "TCP",
    port: int = 443,
    remote_ip: str | None = "192.0.2.1",
    role: str = "client",
    family: str = "IPv4",
) -> FlowKey:
    return FlowKey(
        pid=pid, protocol=protocol, family=family, port=port, remote_ip=remote_ip, role=role
    )


def fc(
    sent: int = 0,
    recv: int = 0,
    packets_sent: int | None = None,
    packets_recv: int | None = None,
    comm: str = "curl",
    kernel: bool = False,
) -> FlowCounters:
    return FlowCounters(
        bytes_sent=sent,
        bytes_recv=recv,
        packets_sent=(sent + 99) // 100 if packets_sent is None else packets_sent,
        packets_recv=(recv + 99) // 100 if packets_recv is None else packets_recv,
        comm=comm,
        kernel=kernel,
    )


def pc(
    pid: int,
    sent: int = 0,
    recv: int = 0,
    comm: str = "curl",
    kernel: bool = False,
) -> ProcessCounters:
    return ProcessCounters(
        pid=pid,
        comm=comm,
        bytes_sent=sent,
        bytes_recv=recv,
        packets_sent=(sent + 99) // 100,
        packets_recv=(recv + 99) // 100,
        kernel=kernel,
    )


def sample(
    t_s: float,
    flows: Mapping[FlowKey, FlowCounters] | None = None,
    processes: Mapping[int, ProcessCounters] | None = None,
    protocols: Mapping[str, int] | None = None,
    dropped: int = 0,
    exited: frozenset[int] = frozenset(),
    retired: frozenset[FlowKey] = frozenset(),
) -> RawSample:
    return RawSample(
        monotonic_ns=round(t_s * 1e9),
        wall_time=WALL0 + t_s,
        flows=dict(flows or {}),
        processes=dict(processes or {}),
        protocols=dict(protocols or {}),
        dropped=dropped,
        exited=exited,
        retired=frozenset(retired),
    )


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeStop:
    """A stop request whose wait() advances a fake clock instead of sleeping.

    With `after_waits`, it sets itself once that many waits have happened."""

    def __init__(self, clock: FakeClock, after_waits: int | None = None) -> None:
        self.clock = clock
        self.after_waits = after_waits
        self.waits: list[float | None] = []
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        if self.after_waits is not None and len(self.waits) >= self.after_waits:
            self._set = True
        if not self._set and timeout is not None:
            self.clock.advance(timeout)
        return self._set


@dataclass
class FakeSource:
    """Returns a growing flow on each read, or raises queued exceptions.

    `clock` (if given) stamps samples with the fake clock's time."""

    clock: FakeClock | None = None
    errors: list[BaseException | None] = field(default_factory=list)
    mode: str = "socket"
    warnings: list[str] = field(default_factory=list)
    reads: int = 0
    published: list[dict[FlowKey, float]] = field(default_factory=list)
    closed: int = 0
    bytes_per_read: int = 1000

    def read(self) -> RawSample:
        if self.errors:
            error = self.errors.pop(0)
            if error is not None:
                raise error
        self.reads += 1
        t = self.clock() if self.clock is not None else float(self.reads)
        total = self.reads * self.bytes_per_read
        return sample(
            t,
            flows={key(): fc(sent=total, recv=2 * total)},
            processes={100: pc(100, sent=total, recv=2 * total)},
            protocols={"TCP": 3 * total},
            dropped=0,
        )

    def publish_rates(self, rates: Mapping[FlowKey, float]) -> None:
        self.published.append(dict(rates))

    def close(self) -> None:
        self.closed += 1
