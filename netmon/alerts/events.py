"""Alert events: what every sink, the table and `--json` receive.

An alert concerns one flow or one process, found by one detector. It fires
once, then resolves once; both are events. The JSON form of an event (one
object, used by the alerts file, `--alert-exec` and the `alerts` key of
`--json`) is:

    {"state": "firing"|"resolved", "detector": str, "alert_id": int,
     "kind": "flow"|"process", "pid": int, "comm": str,
     "protocol": str|null, "family": str|null, "port": int|null,
     "remote_ip": str|null, "role": str|null,
     "value": float, "limit": float, "unit": str,
     "ts": float, "starts_at": float, "ends_at": float|null,
     "reason": str}

`alert_id` pairs a firing event with its resolved event (unique within one
run of netmon). `ts` is the time of the event, `starts_at` when the alert
fired and `ends_at` when it resolved (unix seconds). `value` is what fired
the alert; on a resolved event, the highest value seen while it fired.
`comm` is the process name exactly as the kernel gave it: consumers must
treat it as data (it is chosen by the process).

A sink whose rate limit held events back sends a summary instead, with
`"state": "suppressed"` (see netmon.alerts.sinks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from netmon.model import FlowKey, FlowStat
from netmon.ui.text import sanitize
from netmon.units import format_rate

FIRING = "firing"
RESOLVED = "resolved"


@dataclass(frozen=True)
class Subject:
    """The flow or process an alert concerns."""

    kind: str  # "flow" or "process"
    pid: int
    comm: str
    protocol: str | None = None
    family: str | None = None
    port: int | None = None
    remote_ip: str | None = None
    role: str | None = None

    @classmethod
    def of_flow(cls, flow: FlowStat) -> Subject:
        k = flow.key
        return cls("flow", k.pid, flow.comm, k.protocol, k.family, k.port, k.remote_ip, k.role)

    @classmethod
    def of_flow_key(cls, k: FlowKey, comm: str) -> Subject:
        return cls("flow", k.pid, comm, k.protocol, k.family, k.port, k.remote_ip, k.role)

    def describe(self) -> str:
        """Short text naming the subject, control characters made visible."""
        who = f"{sanitize(self.comm) or '?'} (pid {self.pid})"
        if self.kind != "flow":
            return who
        side = {"client": "/c", "server": "/s"}.get(self.role or "", "")
        port = f" {self.port}{side}" if self.port else ""
        peer = f" {sanitize(self.remote_ip)}" if self.remote_ip else ""
        return f"{who} {sanitize(self.protocol or '?')}{port}{peer}"


@dataclass(frozen=True)
class AlertEvent:
    state: str  # FIRING or RESOLVED
    detector: str
    alert_id: int
    subject: Subject
    value: float
    limit: float
    unit: str
    ts: float
    starts_at: float
    ends_at: float | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        s = self.subject
        return {
            "state": self.state,
            "detector": self.detector,
            "alert_id": self.alert_id,
            "kind": s.kind,
            "pid": s.pid,
            "comm": s.comm,
            "protocol": s.protocol,
            "family": s.family,
            "port": s.port,
            "remote_ip": s.remote_ip,
            "role": s.role,
            "value": _finite(self.value),
            "limit": _finite(self.limit),
            "unit": self.unit,
            "ts": self.ts,
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "reason": self.reason,
        }

    def text(self) -> str:
        """One line for logs and the table, with no control characters."""
        return f"{self.state}: {self.detector}: {self.subject.describe()}: {sanitize(self.reason)}"


def _finite(value: float) -> float:
    """JSON has no NaN or infinity; netmon's output never holds them."""
    return value if math.isfinite(value) else 0.0


def format_value(value: float, unit: str) -> str:
    return format_rate(value) if unit == "B/s" else f"{value:g} {unit}".rstrip()
