"""The JSON Lines contract: Snapshot <-> one JSON object per line.

Shared by `--json`, `--record` and `--replay`. Fields may be added; the
documented ones are never renamed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
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
        "processes": [_process_dict(p) for p in snap.processes],
        "protocols": dict(snap.protocols),
        "dropped": snap.dropped,
    }


def _process_dict(p: ProcessStat) -> dict[str, Any]:
    return {
        "pid": p.pid,
        "comm": p.comm,
        "bytes_sent": p.bytes_sent,
        "bytes_recv": p.bytes_recv,
        "rate_bps": p.rate_bps,
        "kernel": p.kernel,
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
        },
        separators=_SEPARATORS,
    )
    return f'{head[:-1]},"flows":[{_FLOW_TEXT.flows(table)}],{rest[1:]}'


class _FlowText:
    """Cached JSON text of each flow's fixed part: its key and name."""

    # What follows the numbers, by anomaly * 2 + kernel.
    _ENDS = np.array(
        [f',"anomaly":{a},"kernel":{k}}}' for a in ("false", "true") for k in ("false", "true")],
        dtype=object,
    )

    def __init__(self) -> None:
        # id(key) -> (key, name, text up to "bytes_sent":). The entry holds
        # the key, so no other object can have that id meanwhile.
        self._heads: dict[int, tuple[FlowKey, str, str]] = {}

    def _head(self, key: FlowKey, comm: str) -> tuple[FlowKey, str, str]:
        fields = {"pid": key.pid, "comm": comm, "protocol": key.protocol, "family": key.family,
                  "port": key.port, "remote_ip": key.remote_ip, "role": key.role}  # fmt: skip
        text = json.dumps(fields, separators=_SEPARATORS)[:-1] + ',"bytes_sent":'
        entry = self._heads[id(key)] = (key, comm, text)
        return entry

    def flows(self, table: FlowTable) -> str:
        """The table's flow objects, comma-separated, in the table's order."""
        if len(self._heads) > 2 * len(table) + 4096:  # forget flows long gone
            current = set(map(id, table.keys))
            self._heads = {i: e for i, e in self._heads.items() if i in current}
        get, make = self._heads.get, self._head
        heads = []
        for key, comm in zip(table.keys, table.comms, strict=True):
            entry = get(id(key))
            heads.append(entry[2] if entry is not None and entry[1] == comm else make(key, comm)[2])
        ends = self._ENDS[table.anomaly.astype(np.intp) * 2 + table.kernel].tolist()
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
