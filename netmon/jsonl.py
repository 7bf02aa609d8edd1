"""The JSON Lines contract: Snapshot <-> one JSON object per line.

Shared by `--json`, `--record` and `--replay`. Fields may be added; the
documented ones are never renamed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import IO, Any

import numpy as np

from netmon.closed import CLOSED_FIELDS, ClosedFlows
from netmon.model import Cgroup, FlowKey, FlowStat, FlowTable, ProcessStat, Snapshot

_SEPARATORS = (",", ":")


class SnapshotFormatError(ValueError):
    """A line that is not a valid snapshot; carries the 1-based line number."""

    def __init__(self, line_no: int, reason: str) -> None:
        super().__init__(f"line {line_no}: {reason}")
        self.line_no = line_no
        self.reason = reason


def snapshot_to_dict(snap: Snapshot) -> dict[str, Any]:
    return {
        "ts": snap.ts,
        "interval_s": snap.interval_s,
        "flows": [
            {
                "pid": f.key.pid,
                "comm": f.comm,
                "protocol": f.key.protocol,
                "family": f.key.family,
                "port": f.key.port,
                "remote_ip": f.key.remote_ip,
                "remote_name": f.remote_name,
                "role": f.key.role,
                "cgroup": f.cgroup,
                "service": f.service,
                "bytes_sent": f.bytes_sent,
                "bytes_recv": f.bytes_recv,
                "packets_sent": f.packets_sent,
                "packets_recv": f.packets_recv,
                "rate_bps": f.rate_bps,
                "anomaly": f.anomaly,
                "kernel": f.kernel,
                **({"detectors": list(f.detectors)} if f.detectors else {}),
            }
            for f in snap.flows
        ],
        "processes": [_process_dict(p) for p in snap.processes],
        "protocols": dict(snap.protocols),
        "dropped": snap.dropped,
        "closed": snap.closed.to_dict(),
    }


def _process_dict(p: ProcessStat) -> dict[str, Any]:
    return {
        "pid": p.pid,
        "comm": p.comm,
        "bytes_sent": p.bytes_sent,
        "bytes_recv": p.bytes_recv,
        "rate_bps": p.rate_bps,
        "kernel": p.kernel,
        "cgroup": p.cgroup,
        "service": p.service,
    }


def dumps(snap: Snapshot) -> str:
    """One line of JSON, without the trailing newline.

    The same text as json.dumps(snapshot_to_dict(snap)) with compact
    separators, but each flow's object is put together from the table's
    columns and the text of its key and name, cached: a fraction of the cost."""
    table = snap.table
    if not np.isfinite(table.rate_bps).all():  # NaN or infinity: only from a hand-made file
        return json.dumps(snapshot_to_dict(snap), separators=_SEPARATORS)
    head = json.dumps({"ts": snap.ts, "interval_s": snap.interval_s}, separators=_SEPARATORS)
    rest = json.dumps(
        {
            "processes": [_process_dict(p) for p in snap.processes],
            "protocols": dict(snap.protocols),
            "dropped": snap.dropped,
            "closed": snap.closed.to_dict(),
        },
        separators=_SEPARATORS,
    )
    return f'{head[:-1]},"flows":[{_FLOW_TEXT.flows(table)}],{rest[1:]}'


class _FlowText:
    """Cached JSON text of each flow's fixed part: its key, name and cgroup."""

    # What follows the numbers, by anomaly * 2 + kernel.
    _ENDS = np.array(
        [f',"anomaly":{a},"kernel":{k}}}' for a in ("false", "true") for k in ("false", "true")],
        dtype=object,
    )

    def __init__(self) -> None:
        # id(key) -> (key, name, cgroup, peer name, text up to "bytes_sent":).
        # The entry holds the key, so no other object can have that id
        # meanwhile.
        self._heads: dict[int, tuple[FlowKey, str, Cgroup | None, str | None, str]] = {}

    def _head(self, key: FlowKey, comm: str, cgroup: Cgroup | None, peer: str | None) -> str:
        fields = {"pid": key.pid, "comm": comm, "protocol": key.protocol, "family": key.family,
                  "port": key.port, "remote_ip": key.remote_ip, "remote_name": peer,
                  "role": key.role,
                  "cgroup": None if cgroup is None else cgroup.path,
                  "service": None if cgroup is None else cgroup.service}  # fmt: skip
        text = json.dumps(fields, separators=_SEPARATORS)[:-1] + ',"bytes_sent":'
        self._heads[id(key)] = (key, comm, cgroup, peer, text)
        return text

    def flows(self, table: FlowTable) -> str:
        """The table's flow objects, comma-separated, in the table's order."""
        if len(self._heads) > 2 * len(table) + 4096:  # forget flows long gone
            current = set(map(id, table.keys))
            self._heads = {i: e for i, e in self._heads.items() if i in current}
        get, make = self._heads.get, self._head
        cgroups = table.cgroups if table.cgroups is not None else [None] * len(table)
        peer_of = table.names.get if table.names else _no_name
        heads = []
        for key, comm, cgroup in zip(table.keys, table.comms, cgroups, strict=True):
            peer = peer_of(key.remote_ip)  # type: ignore[arg-type]  # None: no name
            entry = get(id(key))
            if entry is not None and entry[1] == comm and entry[2] is cgroup and entry[3] == peer:
                heads.append(entry[4])
            else:
                heads.append(make(key, comm, cgroup, peer))
        ends = self._ENDS[table.anomaly.astype(np.intp) * 2 + table.kernel].tolist()
        if table.marks:
            for row in np.flatnonzero(table.anomaly).tolist():
                names = table.stat(row).detectors
                if names:
                    ends[row] = f'{ends[row][:-1]},"detectors":{json.dumps(list(names))}}}'
        counts = table.counts
        # Whole columns to lists (plain ints and floats), no per-row containers.
        return ",".join([
            f'{head}{sent},"bytes_recv":{recv},"packets_sent":{psent},"packets_recv":{precv},'
            f'"rate_bps":{rate!r}{end}'
            for head, sent, recv, psent, precv, rate, end in zip(
                heads, counts[:, 0].tolist(), counts[:, 1].tolist(), counts[:, 2].tolist(),
                counts[:, 3].tolist(), table.rate_bps.tolist(), ends, strict=True,
            )
        ])  # fmt: skip


def _no_name(ip: str | None) -> None:
    return None


_FLOW_TEXT = _FlowText()


# Limits of what a snapshot may hold. The kernel's counters are u64 and its
# PIDs u32; anything outside is not a recording of ours and would only
# overflow later (in the table's formatting, in a sleep until the next ts).
U64_MAX = 2**64 - 1
PID_MAX = 2**32 - 1
PORT_MAX = 65535
MAX_RATE_BPS = float(2**64)  # bytes/s; the sum of many still fits a float
MAX_TS = 253402300799.0  # 9999-12-31T23:59:59Z, in unix seconds
MAX_STR = 4096  # characters in a name, protocol, address...
# A JSON integer longer than this cannot be a u64; refusing it before int()
# also avoids the quadratic cost of converting thousands of digits.
_MAX_INT_DIGITS = 20


def _parse_int(text: str) -> int:
    if len(text) > _MAX_INT_DIGITS + 1:  # + 1 for a minus sign
        raise ValueError(f"integer of {len(text)} digits is out of range")
    return int(text)


def _parse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number in JSON")


_decoder = json.JSONDecoder(parse_int=_parse_int, parse_constant=_parse_constant)


def decode(line: str) -> Any:
    """Strict JSON: no NaN/Infinity, no integers longer than a u64.
    Raises ValueError (json.JSONDecodeError for bad syntax)."""
    return _decoder.decode(line)


def _int(obj: dict[str, Any], name: str, limit: int = U64_MAX) -> int:
    value = obj[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name!r} must be an integer")
    if not 0 <= value <= limit:
        raise ValueError(f"{name!r} must be from 0 to {limit}, got {_short(value)}")
    return value


def _num(obj: dict[str, Any], name: str, limit: float) -> float:
    value = obj[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name!r} must be a number")
    try:
        number = float(value)
    except OverflowError:  # an int beyond float range
        number = math.inf
    if not (math.isfinite(number) and 0.0 <= number <= limit):
        raise ValueError(
            f"{name!r} must be a finite number from 0 to {limit:.0f}, got {_short(value)}"
        )
    return number


def _str(obj: dict[str, Any], name: str) -> str:
    value = obj[name]
    if not isinstance(value, str):
        raise ValueError(f"{name!r} must be a string")
    if len(value) > MAX_STR:
        raise ValueError(f"{name!r} is longer than {MAX_STR} characters")
    return value


def _opt_str(obj: dict[str, Any], name: str) -> str | None:
    """A string field that may be null or missing (recordings made before it
    existed)."""
    if obj.get(name) is None:
        return None
    return _str(obj, name)


def _bool(obj: dict[str, Any], name: str, default: bool | None = None) -> bool:
    if default is not None and name not in obj:
        return default
    value = obj[name]
    if not isinstance(value, bool):
        raise ValueError(f"{name!r} must be true or false")
    return value


def _short(value: object) -> str:
    """A value for an error message, never a 4,000-digit one."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**30:
        return "a number out of range"
    return repr(value)


def _objects(obj: dict[str, Any], name: str) -> list[dict[str, Any]]:
    items = obj[name]
    if not isinstance(items, list):
        raise ValueError(f"{name!r} must be a list")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ValueError(f"{name!r} item {i + 1} must be an object")
    return items


def _flow(f: dict[str, Any]) -> FlowStat:
    remote_ip = f.get("remote_ip")
    if remote_ip is not None:
        if not isinstance(remote_ip, str):
            raise ValueError("'remote_ip' must be a string or null")
        remote_ip = _str(f, "remote_ip")
    key = FlowKey(
        pid=_int(f, "pid", PID_MAX),
        protocol=_str(f, "protocol"),
        family=_str(f, "family"),
        port=_int(f, "port", PORT_MAX),
        remote_ip=remote_ip,
        role=_str(f, "role"),
    )
    return FlowStat(
        key=key,
        comm=_str(f, "comm"),
        bytes_sent=_int(f, "bytes_sent"),
        bytes_recv=_int(f, "bytes_recv"),
        packets_sent=_int(f, "packets_sent"),
        packets_recv=_int(f, "packets_recv"),
        rate_bps=_num(f, "rate_bps", MAX_RATE_BPS),
        anomaly=_bool(f, "anomaly"),
        kernel=_bool(f, "kernel", default=False),
        cgroup=_opt_str(f, "cgroup"),
        service=_opt_str(f, "service"),
        remote_name=_opt_str(f, "remote_name") if remote_ip is not None else None,
    )


def _process(p: dict[str, Any]) -> ProcessStat:
    return ProcessStat(
        pid=_int(p, "pid", PID_MAX),
        comm=_str(p, "comm"),
        bytes_sent=_int(p, "bytes_sent"),
        bytes_recv=_int(p, "bytes_recv"),
        rate_bps=_num(p, "rate_bps", MAX_RATE_BPS),
        kernel=_bool(p, "kernel", default=False),
        cgroup=_opt_str(p, "cgroup"),
        service=_opt_str(p, "service"),
    )


def snapshot_from_dict(obj: Any) -> Snapshot:
    """Build a Snapshot, checking every field's type and range; raises
    ValueError/KeyError on bad input."""
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    flows = tuple(_flow(f) for f in _objects(obj, "flows"))
    processes = tuple(_process(p) for p in _objects(obj, "processes"))
    protocols = obj.get("protocols", {})
    if not isinstance(protocols, dict):
        raise ValueError("'protocols' must be an object")
    for name in protocols:
        if len(name) > MAX_STR:
            raise ValueError(f"a protocol name is longer than {MAX_STR} characters")
    return Snapshot(
        ts=_num(obj, "ts", MAX_TS),
        interval_s=_num(obj, "interval_s", MAX_TS),
        flows=flows,
        processes=processes,
        protocols={name: _int(protocols, name) for name in protocols},
        dropped=_int(obj, "dropped") if "dropped" in obj else 0,
        closed=_closed(obj["closed"]) if "closed" in obj else ClosedFlows(),
    )


def _closed(closed: Any) -> ClosedFlows:
    if not isinstance(closed, dict):
        raise ValueError("'closed' must be an object")
    return ClosedFlows(*(_int(closed, name) if name in closed else 0 for name in CLOSED_FIELDS))


def loads(line: str, line_no: int = 1) -> Snapshot:
    """One line -> a Snapshot; SnapshotFormatError names the line and the
    reason."""
    try:
        return snapshot_from_dict(decode(line))
    except json.JSONDecodeError as exc:
        raise SnapshotFormatError(line_no, f"invalid JSON ({exc.msg})") from None
    except KeyError as exc:
        raise SnapshotFormatError(line_no, f"missing field {exc}") from None
    except (TypeError, ValueError) as exc:
        raise SnapshotFormatError(line_no, str(exc)) from None
    except RecursionError:
        raise SnapshotFormatError(line_no, "nested too deeply to be a snapshot") from None


def is_cut_short(line: str) -> bool:
    """Whether `line` looks like the start of a JSON text that was cut off
    (a write interrupted by a crash or a full disk), rather than a whole
    line, good or bad."""
    try:
        decode(line)
    except json.JSONDecodeError:
        return True
    except (ValueError, RecursionError):
        return False
    return False


def read_snapshots(stream: IO[str]) -> Iterator[Snapshot]:
    """Yield snapshots from a JSON Lines stream, skipping blank lines.

    A line without its final newline at end of file is a truncated write and
    is reported as such rather than parsed."""
    for line_no, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        if not line.endswith("\n") and is_cut_short(line):
            raise SnapshotFormatError(line_no, "truncated line at end of file")
        yield loads(line, line_no)
