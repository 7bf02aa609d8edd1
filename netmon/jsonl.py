"""The JSON Lines contract: Snapshot <-> one JSON object per line.

Shared by `--json`, `--record` and `--replay`. Fields may be added; the
documented ones are never renamed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import IO, Any

import numpy as np

from netmon.model import FlowKey, FlowStat, FlowTable, ProcessStat, Snapshot

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
                "role": f.key.role,
                "bytes_sent": f.bytes_sent,
                "bytes_recv": f.bytes_recv,
                "packets_sent": f.packets_sent,
                "packets_recv": f.packets_recv,
                "rate_bps": f.rate_bps,
                "anomaly": f.anomaly,
                "kernel": f.kernel,
            }
            for f in snap.flows
        ],
        "processes": [
            {
                "pid": p.pid,
                "comm": p.comm,
                "bytes_sent": p.bytes_sent,
                "bytes_recv": p.bytes_recv,
                "rate_bps": p.rate_bps,
                "kernel": p.kernel,
            }
            for p in snap.processes
        ],
        "protocols": dict(snap.protocols),
        "dropped": snap.dropped,
    }


def dumps(snap: Snapshot) -> str:
    """One line of JSON, without the trailing newline.

    The same text as json.dumps(snapshot_to_dict(snap)) with compact
    separators, but each flow's line is put together from the table's columns
    and text cached per flow (its key) and per name, which costs a fraction."""
    table = snap.table
    if not np.isfinite(table.rate_bps).all():  # NaN or infinity: only from a hand-made file
        return json.dumps(snapshot_to_dict(snap), separators=_SEPARATORS)
    head = json.dumps({"ts": snap.ts, "interval_s": snap.interval_s}, separators=_SEPARATORS)
    rest = json.dumps(
        {
            "processes": snapshot_to_dict(replace(snap, flows=()))["processes"],
            "protocols": dict(snap.protocols),
            "dropped": snap.dropped,
        },
        separators=_SEPARATORS,
    )
    return f'{head[:-1]},"flows":[{_FLOW_TEXT.flows(table)}],{rest[1:]}'


class _FlowText:
    """Cached JSON text of flow keys and names."""

    def __init__(self) -> None:
        # id(key) -> (key, text before the name, text after it). The entry
        # holds the key, so no other object can have that id meanwhile.
        self._keys: dict[int, tuple[FlowKey, str, str]] = {}
        self._names: dict[str, str] = {}

    def _key(self, key: FlowKey) -> tuple[FlowKey, str, str]:
        fields = {"protocol": key.protocol, "family": key.family, "port": key.port,
                  "remote_ip": key.remote_ip, "role": key.role}  # fmt: skip
        entry = (
            key,
            '{"pid":' + json.dumps(key.pid) + ',"comm":',
            "," + json.dumps(fields, separators=_SEPARATORS)[1:-1] + ",",
        )
        self._keys[id(key)] = entry
        return entry

    def _name(self, comm: str) -> str:
        text = self._names[comm] = json.dumps(comm)
        return text

    def flows(self, table: FlowTable) -> str:
        """The table's flow objects, comma-separated, in the table's order."""
        if len(self._keys) > 2 * len(table) + 4096:  # forget flows long gone
            current = set(map(id, table.keys))
            self._keys = {i: e for i, e in self._keys.items() if i in current}
        if len(self._names) > 65536:
            self._names = {}
        keys, names = self._keys, self._names
        cached_key, cached_name = self._key, self._name
        false_true = ("false", "true")
        counts = table.counts
        lines = []
        # Whole columns to lists (plain ints and floats), no per-row containers.
        for key, comm, sent, recv, psent, precv, rate, anomaly, kernel in zip(
            table.keys,
            table.comms,
            counts[:, 0].tolist(),
            counts[:, 1].tolist(),
            counts[:, 2].tolist(),
            counts[:, 3].tolist(),
            table.rate_bps.tolist(),
            table.anomaly.tolist(),
            table.kernel.tolist(),
            strict=True,
        ):
            entry = keys.get(id(key)) or cached_key(key)
            name = names.get(comm) or cached_name(comm)
            lines.append(
                f'{entry[1]}{name}{entry[2]}"bytes_sent":{sent},"bytes_recv":{recv},'
                f'"packets_sent":{psent},"packets_recv":{precv},"rate_bps":{rate!r},'
                f'"anomaly":{false_true[anomaly]},"kernel":{false_true[kernel]}}}'
            )
        return ",".join(lines)


_FLOW_TEXT = _FlowText()


def _int(obj: dict[str, Any], name: str) -> int:
    value = obj[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name!r} must be an integer")
    return value


def _num(obj: dict[str, Any], name: str) -> float:
    value = obj[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name!r} must be a number")
    return float(value)


def _str(obj: dict[str, Any], name: str) -> str:
    value = obj[name]
    if not isinstance(value, str):
        raise ValueError(f"{name!r} must be a string")
    return value


def snapshot_from_dict(obj: Any) -> Snapshot:
    """Build a Snapshot; raises ValueError/KeyError/TypeError on bad input."""
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    flows = []
    for f in obj["flows"]:
        remote_ip = f.get("remote_ip")
        if remote_ip is not None and not isinstance(remote_ip, str):
            raise ValueError("'remote_ip' must be a string or null")
        key = FlowKey(
            pid=_int(f, "pid"),
            protocol=_str(f, "protocol"),
            family=_str(f, "family"),
            port=_int(f, "port"),
            remote_ip=remote_ip,
            role=_str(f, "role"),
        )
        flows.append(
            FlowStat(
                key=key,
                comm=_str(f, "comm"),
                bytes_sent=_int(f, "bytes_sent"),
                bytes_recv=_int(f, "bytes_recv"),
                packets_sent=_int(f, "packets_sent"),
                packets_recv=_int(f, "packets_recv"),
                rate_bps=_num(f, "rate_bps"),
                anomaly=bool(f["anomaly"]),
                kernel=bool(f.get("kernel", False)),
            )
        )
    processes = [
        ProcessStat(
            pid=_int(p, "pid"),
            comm=_str(p, "comm"),
            bytes_sent=_int(p, "bytes_sent"),
            bytes_recv=_int(p, "bytes_recv"),
            rate_bps=_num(p, "rate_bps"),
            kernel=bool(p.get("kernel", False)),
        )
        for p in obj["processes"]
    ]
    protocols = obj.get("protocols", {})
    if not isinstance(protocols, dict):
        raise ValueError("'protocols' must be an object")
    return Snapshot(
        ts=_num(obj, "ts"),
        interval_s=_num(obj, "interval_s"),
        flows=tuple(flows),
        processes=tuple(processes),
        protocols={str(k): _int(protocols, k) for k in protocols},
        dropped=_int(obj, "dropped") if "dropped" in obj else 0,
    )


def loads(line: str, line_no: int = 1) -> Snapshot:
    try:
        return snapshot_from_dict(json.loads(line))
    except json.JSONDecodeError as exc:
        raise SnapshotFormatError(line_no, f"invalid JSON ({exc.msg})") from None
    except KeyError as exc:
        raise SnapshotFormatError(line_no, f"missing field {exc}") from None
    except (TypeError, ValueError) as exc:
        raise SnapshotFormatError(line_no, str(exc)) from None


def read_snapshots(stream: IO[str]) -> Iterator[Snapshot]:
    """Yield snapshots from a JSON Lines stream, skipping blank lines.

    A line without its final newline at end of file is a truncated write and
    is reported as such rather than parsed."""
    for line_no, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        if not line.endswith("\n"):
            try:
                json.loads(line)
            except json.JSONDecodeError:
                raise SnapshotFormatError(line_no, "truncated line at end of file") from None
        yield loads(line, line_no)
