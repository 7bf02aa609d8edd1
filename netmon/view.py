"""What the screen shows, as plain data: no curses here.

`View` holds the current snapshot and, per (snapshot, mode, sort column,
filter, kernel toggle), the sorted and filtered row list. Flows are sorted
on the snapshot's columns (numpy, no per-flow objects); a row becomes a
FlowStat only when it is shown. Building a frame only formats the rows in
the visible window, so its cost does not grow with the number of flows.
Keys are applied to the immutable `UIState` by `apply_key`; the curses
layer only translates key codes and paints.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from functools import lru_cache
from typing import Any, Generic, TypeVar, cast, overload

import numpy as np

from netmon.model import FlowStat, FlowTable, ProcessStat, Snapshot, dense_rank
from netmon.ui.text import display_width, fit, sanitize, truncate
from netmon.units import format_bytes, format_rate

# Rows above the table: protocol totals, status line, column titles.
HEADER_LINES = 3
FOOTER_LINES = 1
MAX_FILTER_LEN = 64
PROTOCOL_ORDER = ("TCP", "UDP", "ICMP", "ICMPv6", "RAW", "PACKET")


class Mode(Enum):
    FLOWS = "flows"
    PROCESSES = "processes"
    SERVICES = "services"  # the process view grouped by service


class Role(Enum):
    """Style of a piece of text; only the curses layer maps it to attributes."""

    HEADER = "header"
    BADGE = "badge"  # PAUSED, end of replay, active filter
    TITLE = "title"  # column titles
    TITLE_SORTED = "title_sorted"
    NORMAL = "normal"
    KERNEL = "kernel"
    ANOMALY = "anomaly"
    FOOTER = "footer"
    ALERT = "alert"
    OK = "ok"
    INPUT = "input"
    HELP = "help"


class Col(Enum):
    PID = "pid"
    NAME = "name"
    SERVICE = "service"
    PROCS = "procs"
    PROTO = "proto"
    PORT = "port"
    REMOTE = "remote"
    FLOWS = "flows"
    SENT = "sent"
    RECV = "recv"
    RATE = "rate"
    WHY = "why"  # which detector flagged the flow, and why


@dataclass(frozen=True)
class Segment:
    text: str
    role: Role


Line = tuple[Segment, ...]


@dataclass(frozen=True)
class Frame:
    width: int
    height: int
    lines: tuple[Line, ...]  # at most `height`, each at most `width` cells
    cursor: tuple[int, int] | None = None  # (y, x) while typing a filter


@dataclass(frozen=True)
class ViewSettings:
    interval_s: float
    alpha: float
    threshold_bps: float
    unicode: bool = True  # False: the terminal can only show ASCII
    note: str = ""  # shown in the status line, e.g. that a replay re-runs the detectors
    detectors: tuple[str, ...] = ()  # the detectors that run (listed in the help)


@dataclass(frozen=True)
class UIState:
    mode: Mode = Mode.FLOWS
    sort: Col = Col.RATE
    reverse: bool = False
    filter_text: str = ""
    show_kernel: bool = False
    show_service: bool = True  # the SERVICE column, where the width allows
    offset: int = 0
    paused: bool = False
    editing: bool = False  # typing a filter in the footer
    draft: str = ""
    help: bool = False
    numeric: bool = False  # the REMOTE column shows addresses, not host names
    log: bool = False  # the alert log is shown
    ended: bool = False  # the feed has no more snapshots (end of replay)
    quit: bool = False


@dataclass(frozen=True)
class FooterAlerts:
    """The alerts firing now, as the footer shows them."""

    firing: int
    flows_above_threshold: bool  # every firing alert is a flow above --threshold
    latest: str  # the newest firing alert's subject, already sanitised ("" if none)
    by_detector: tuple[tuple[str, int], ...] = ()  # alerts firing per detector
    log: tuple[str, ...] = ()  # recent alert events, newest first (the `a` key)


@dataclass(frozen=True)
class ProcessRow:
    """A process as shown in the per-process view."""

    stat: ProcessStat
    flows: int
    anomaly: bool


@dataclass(frozen=True)
class ServiceRow:
    """The processes of one service (None: no cgroup known), summed."""

    service: str | None
    processes: int
    flows: int
    bytes_sent: int
    bytes_recv: int
    rate_bps: float
    anomaly: bool
    kernel: bool = False


R = TypeVar("R", FlowStat, ProcessRow, ServiceRow)


@dataclass(frozen=True)
class Column(Generic[R]):
    id: Col
    title: str
    width: int  # minimum cells
    max_width: int  # more than `width` for columns that take spare room
    align: str  # "left" or "right"
    priority: int  # on a narrow screen, lower priorities are dropped first
    descending: bool  # natural order: biggest first
    # Ascending key. Ties keep the base order (by pid, then the rest of the
    # flow key), because the sort is stable and starts from that order.
    sort_key: Callable[[R], Any]
    text: Callable[[R], str]
    safe: bool = False  # text is made from numbers: nothing to sanitise
    # For flows, the same order computed on a whole FlowTable: arrays for
    # np.lexsort, least significant first.
    table_key: Callable[[FlowTable], list[np.ndarray]] | None = None


def _name(comm: str, kernel: bool) -> str:
    return f"[{comm}]" if kernel else comm


def _service(service: str | None) -> str:
    return service or "-"


def _service_key(t: FlowTable) -> list[np.ndarray]:
    cgroups = t.cgroups or [None] * len(t)
    return [_ranks([(c.service or "").lower() if c is not None else "" for c in cgroups])]


def _port(f: FlowStat) -> str:
    if f.key.port == 0:
        return "-"
    suffix = {"client": "/c", "server": "/s"}.get(f.key.role, "")
    return f"{f.key.port}{suffix}"


@lru_cache(maxsize=65536)
def _ip_key(ip: str | None) -> tuple[int, int, str]:
    """Addresses in numeric order, IPv4 before IPv6, none first."""
    if ip is None:
        return (0, 0, "")
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return (7, 0, ip)
    return (addr.version, int(addr), "")


def _ranks(values: Sequence[str]) -> np.ndarray:
    """Each string's rank in sorted order (names, protocols, roles: few
    distinct values, so rank those and look each one up)."""
    rank = {v: i for i, v in enumerate(sorted(set(values)))}
    return np.fromiter(map(rank.__getitem__, values), np.int64, len(values))


def _descending(values: np.ndarray) -> np.ndarray:
    """An ascending sort key for biggest first."""
    if values.dtype.kind == "u":
        return cast(np.ndarray, np.iinfo(values.dtype).max - values)
    return cast(np.ndarray, -values)


def _port_key(t: FlowTable) -> list[np.ndarray]:
    ports = np.fromiter((k.port for k in t.keys), np.int64, len(t.keys))
    return [_ranks([k.role for k in t.keys]), ports]


def _remote_key(t: FlowTable) -> list[np.ndarray]:
    return [dense_rank([_ip_key(k.remote_ip) for k in t.keys])]


# Priorities: on a narrow screen the lowest goes first, so RATE, PID and the
# process name stay longest. `safe` columns are formatted from numbers and
# need no sanitising.
FLOW_COLUMNS: tuple[Column[FlowStat], ...] = (
    Column(Col.PID, "PID", width=7, max_width=7, align="right", priority=8, descending=False,
           sort_key=lambda f: f.key.pid, text=lambda f: str(f.key.pid), safe=True,
           table_key=lambda t: [t.pid]),
    Column(Col.NAME, "PROCESS", width=8, max_width=20, align="left", priority=7, descending=False,
           sort_key=lambda f: f.comm.lower(), text=lambda f: _name(f.comm, f.kernel),
           table_key=lambda t: [_ranks([c.lower() for c in t.comms])]),
    Column(Col.SERVICE, "SERVICE", width=10, max_width=24, align="left", priority=0,
           descending=False, sort_key=lambda f: (f.service or "").lower(),
           text=lambda f: _service(f.service), table_key=_service_key),
    Column(Col.PROTO, "PROTO", width=6, max_width=6, align="left", priority=3, descending=False,
           sort_key=lambda f: f.key.protocol, text=lambda f: f.key.protocol,
           table_key=lambda t: [_ranks([k.protocol for k in t.keys])]),
    Column(Col.PORT, "PORT", width=7, max_width=7, align="right", priority=5, descending=False,
           sort_key=lambda f: (f.key.port, f.key.role), text=_port, safe=True,
           table_key=_port_key),
    Column(Col.REMOTE, "REMOTE", width=15, max_width=39, align="left", priority=4,
           descending=False, sort_key=lambda f: _ip_key(f.key.remote_ip),
           text=lambda f: f.key.remote_ip or "-", table_key=_remote_key),
    Column(Col.SENT, "SENT", width=9, max_width=9, align="right", priority=2, descending=True,
           sort_key=lambda f: -f.bytes_sent, text=lambda f: format_bytes(f.bytes_sent),
           safe=True, table_key=lambda t: [_descending(t.counts[:, 0])]),
    Column(Col.RECV, "RECV", width=9, max_width=9, align="right", priority=1, descending=True,
           sort_key=lambda f: -f.bytes_recv, text=lambda f: format_bytes(f.bytes_recv),
           safe=True, table_key=lambda t: [_descending(t.counts[:, 1])]),
    Column(Col.RATE, "RATE", width=11, max_width=11, align="right", priority=9, descending=True,
           sort_key=lambda f: -f.rate_bps, text=lambda f: format_rate(f.rate_bps), safe=True,
           table_key=lambda t: [-t.rate_bps]),
)  # fmt: skip

PROCESS_COLUMNS: tuple[Column[ProcessRow], ...] = (
    Column(Col.PID, "PID", width=7, max_width=7, align="right", priority=8, descending=False,
           sort_key=lambda p: p.stat.pid, text=lambda p: str(p.stat.pid), safe=True),
    Column(Col.NAME, "PROCESS", width=8, max_width=32, align="left", priority=7, descending=False,
           sort_key=lambda p: p.stat.comm.lower(),
           text=lambda p: _name(p.stat.comm, p.stat.kernel)),
    Column(Col.SERVICE, "SERVICE", width=10, max_width=32, align="left", priority=0,
           descending=False, sort_key=lambda p: (p.stat.service or "").lower(),
           text=lambda p: _service(p.stat.service)),
    Column(Col.FLOWS, "FLOWS", width=6, max_width=6, align="right", priority=3, descending=True,
           sort_key=lambda p: -p.flows, text=lambda p: str(p.flows), safe=True),
    Column(Col.SENT, "SENT", width=9, max_width=9, align="right", priority=2, descending=True,
           sort_key=lambda p: -p.stat.bytes_sent,
           text=lambda p: format_bytes(p.stat.bytes_sent), safe=True),
    Column(Col.RECV, "RECV", width=9, max_width=9, align="right", priority=1, descending=True,
           sort_key=lambda p: -p.stat.bytes_recv,
           text=lambda p: format_bytes(p.stat.bytes_recv), safe=True),
    Column(Col.RATE, "RATE", width=11, max_width=11, align="right", priority=9, descending=True,
           sort_key=lambda p: -p.stat.rate_bps,
           text=lambda p: format_rate(p.stat.rate_bps), safe=True),
)  # fmt: skip


SERVICE_COLUMNS: tuple[Column[ServiceRow], ...] = (
    Column(Col.SERVICE, "SERVICE", width=10, max_width=48, align="left", priority=8,
           descending=False, sort_key=lambda s: (s.service or "").lower(),
           text=lambda s: _service(s.service)),
    Column(Col.PROCS, "PROCS", width=6, max_width=6, align="right", priority=4, descending=True,
           sort_key=lambda s: -s.processes, text=lambda s: str(s.processes), safe=True),
    Column(Col.FLOWS, "FLOWS", width=6, max_width=6, align="right", priority=3, descending=True,
           sort_key=lambda s: -s.flows, text=lambda s: str(s.flows), safe=True),
    Column(Col.SENT, "SENT", width=9, max_width=9, align="right", priority=2, descending=True,
           sort_key=lambda s: -s.bytes_sent, text=lambda s: format_bytes(s.bytes_sent),
           safe=True),
    Column(Col.RECV, "RECV", width=9, max_width=9, align="right", priority=1, descending=True,
           sort_key=lambda s: -s.bytes_recv, text=lambda s: format_bytes(s.bytes_recv),
           safe=True),
    Column(Col.RATE, "RATE", width=11, max_width=11, align="right", priority=9, descending=True,
           sort_key=lambda s: -s.rate_bps, text=lambda s: format_rate(s.rate_bps), safe=True),
)  # fmt: skip


def _why_key(t: FlowTable) -> list[np.ndarray]:
    marks = t.marks
    return [_ranks([", ".join(x for _, x in marks.get(k, ())) for k in t.keys])]


# Shown only while some flow is flagged: which detector, and why.
WHY_COLUMN: Column[FlowStat] = Column(
    Col.WHY, "ALERT", width=14, max_width=20, align="left", priority=6, descending=False,
    sort_key=lambda f: f.reason, text=lambda f: f.reason, table_key=_why_key,
)  # fmt: skip


def columns_for(
    mode: Mode, show_service: bool = True, why: bool = False
) -> tuple[Column[Any], ...]:
    if mode is Mode.SERVICES:
        return SERVICE_COLUMNS
    columns: tuple[Column[Any], ...]
    if mode is Mode.FLOWS:
        columns = (*FLOW_COLUMNS, WHY_COLUMN) if why else FLOW_COLUMNS
    else:
        columns = PROCESS_COLUMNS
    if show_service:
        return columns
    return tuple(c for c in columns if c.id is not Col.SERVICE)


def _columns(state: UIState) -> tuple[Column[Any], ...]:
    return columns_for(state.mode, state.show_service)


def _remote_name(f: FlowStat) -> str:
    return f.remote_name or f.key.remote_ip or "-"


# The REMOTE column with the peer's host name where one is known (sorted by
# address all the same).
NAMED_REMOTE_COLUMN: Column[FlowStat] = replace(
    next(c for c in FLOW_COLUMNS if c.id is Col.REMOTE), text=_remote_name
)


def shown_columns(state: UIState, why: bool = False) -> tuple[Column[Any], ...]:
    """The columns as the table shows them: names or addresses (key n),
    with or without SERVICE (key c), and ALERT while a flow is flagged."""
    columns = columns_for(state.mode, state.show_service, why)
    if state.mode is Mode.FLOWS and not state.numeric:
        return tuple(NAMED_REMOTE_COLUMN if c.id is Col.REMOTE else c for c in columns)
    return columns


def already_sorted(keys: Sequence[np.ndarray]) -> bool:
    """Are the rows already sorted by these keys (most significant first)?
    One vectorised pass, against a sort per snapshot."""
    if not keys:
        return True
    undecided = np.ones(max(len(keys[0]) - 1, 0), dtype=bool)
    for key in keys:
        before, after = key[:-1], key[1:]
        if (undecided & (after < before)).any():
            return False
        undecided &= after == before
    return True


def effective_sort(state: UIState) -> Col:
    """The sort column in force: a column the view does not have falls back
    to RATE (and comes back when switching to a view that has it)."""
    ids = [c.id for c in _columns(state)]
    return state.sort if state.sort in ids else Col.RATE


def layout(columns: Sequence[Column[Any]], width: int) -> list[tuple[Column[Any], int]]:
    """Pick the columns that fit in `width` (dropping low priorities first),
    in their display order, with widths; spare room goes to flexible ones."""
    chosen = list(columns)

    def need(cols: Sequence[Column[Any]]) -> int:
        return sum(c.width for c in cols) + max(len(cols) - 1, 0)

    while len(chosen) > 1 and need(chosen) > width:
        chosen.remove(min(chosen, key=lambda c: c.priority))
    widths = {c.id: c.width for c in chosen}
    spare = width - need(chosen)
    for c in chosen:
        if spare <= 0:
            break
        extra = min(spare, c.max_width - c.width)
        widths[c.id] += extra
        spare -= extra
    if len(chosen) == 1:
        widths[chosen[0].id] = min(widths[chosen[0].id], width)
    return [(c, widths[c.id]) for c in chosen]


def _matches(needle: str, haystacks: Sequence[str]) -> bool:
    return any(needle in h for h in haystacks)


def _filter_mask(table: FlowTable, needle: str) -> np.ndarray:
    """Flows whose name, PID, port, IP, peer name or service contains `needle`."""
    cgroups = table.cgroups or [None] * len(table)
    names = table.names
    return np.fromiter(
        (
            _matches(
                needle,
                (
                    sanitize(comm).lower(),
                    str(key.pid),
                    str(key.port),
                    (key.remote_ip or "").lower(),
                    sanitize(cg.service or "").lower() if cg is not None else "",
                    sanitize(names.get(key.remote_ip or "", "")).lower(),
                ),
            )
            for key, comm, cg in zip(table.keys, table.comms, cgroups, strict=True)
        ),
        dtype=bool,
        count=len(table),
    )


def service_rows(processes: Sequence[ProcessRow]) -> list[ServiceRow]:
    """The process rows summed per service, by service name."""
    groups: dict[str | None, list[ProcessRow]] = {}
    for p in processes:
        groups.setdefault(p.stat.service, []).append(p)
    return [
        ServiceRow(
            service=service,
            processes=len(rows),
            flows=sum(p.flows for p in rows),
            bytes_sent=sum(p.stat.bytes_sent for p in rows),
            bytes_recv=sum(p.stat.bytes_recv for p in rows),
            rate_bps=sum(p.stat.rate_bps for p in rows),
            anomaly=any(p.anomaly for p in rows),
            kernel=all(p.stat.kernel for p in rows),
        )
        for service, rows in sorted(groups.items(), key=lambda g: g[0] or "")
    ]


class FlowRows(Sequence[FlowStat]):
    """Rows of a FlowTable in a given order; FlowStat made on access."""

    def __init__(self, table: FlowTable, order: np.ndarray) -> None:
        self.table = table
        self.order = order

    def __len__(self) -> int:
        return len(self.order)

    @overload
    def __getitem__(self, index: int) -> FlowStat: ...
    @overload
    def __getitem__(self, index: slice) -> list[FlowStat]: ...
    def __getitem__(self, index: int | slice) -> FlowStat | list[FlowStat]:
        if isinstance(index, slice):
            return [self.table.stat(i) for i in self.order[index].tolist()]
        return self.table.stat(int(self.order[index]))


class View:
    """Current snapshot plus a cache of the sorted, filtered row list."""

    def __init__(self, settings: ViewSettings) -> None:
        self.settings = settings
        self.snapshot: Snapshot | None = None
        self._generation = 0
        self._process_rows: list[ProcessRow] | None = None
        self._anomalies = 0
        self._total_rate = 0.0
        self._cache_key: tuple[Any, ...] | None = None
        self._cache_rows: Sequence[Any] = []
        self._base: list[ProcessRow] | None = None  # process rows in tie-break order
        # Formatted table lines by row identity, for one layout at a time:
        # scrolling then only formats the rows coming into view.
        self._line_cache: dict[int, Line] = {}
        self._line_cache_layout: tuple[Any, ...] | None = None
        self._alerts: FooterAlerts | None = None  # None: count the flagged flows
        self._no_cgroups = False
        self._note = ""  # shown in the status line (a replay's shortened gaps)

    def set_alerts(self, alerts: FooterAlerts | None) -> None:
        """The alert manager's view of what fires (with its hysteresis),
        shown in the footer instead of the count of flagged rows."""
        self._alerts = alerts

    @property
    def note(self) -> str:
        return self._note

    def set_note(self, note: str) -> None:
        """A short remark for the status line ("" for none)."""
        self._note = note

    def set_snapshot(self, snap: Snapshot) -> None:
        """Replace the data; per-snapshot totals are computed here, once."""
        self.snapshot = snap
        self._generation += 1
        self._cache_key = None
        self._base = None
        self._process_rows = None
        self._line_cache = {}
        table = snap.table
        self._anomalies = int(np.count_nonzero(table.anomaly))
        self._total_rate = float(table.rate_bps.sum())
        # Rows but no cgroup anywhere: no cgroup v2 (or a recording without
        # it). Said once in the status line rather than in every row.
        self._no_cgroups = bool(len(table) or snap.processes) and (
            all(c is None for c in table.cgroups or ())
            and all(p.cgroup is None for p in snap.processes)
        )

    def _shown(self, state: UIState) -> UIState:
        """Without any cgroup data the SERVICE column is left out (the status
        line says why, once)."""
        return replace(state, show_service=False) if self._no_cgroups else state

    def _processes(self) -> list[ProcessRow]:
        """The process view's rows, made when that view is first shown."""
        if self._process_rows is None:
            if self.snapshot is None:
                return []
            table = self.snapshot.table
            pids, counts = np.unique(table.pid, return_counts=True)
            flows_per_pid = dict(zip(pids.tolist(), counts.tolist(), strict=True))
            anomalous_pids = set(table.pid[table.anomaly].tolist())
            self._process_rows = [
                ProcessRow(p, flows_per_pid.get(p.pid, 0), p.pid in anomalous_pids)
                for p in self.snapshot.processes
            ]
        return self._process_rows

    # -- the cached list -------------------------------------------------

    def rows(self, state: UIState) -> Sequence[Any]:
        """Sorted (natural order of the sort column) and filtered rows.

        Recomputed only when the snapshot, mode, sort column, filter or
        kernel toggle change; `reverse` is applied when slicing. Ties in the
        sort column keep the base order (by pid, then the rest of the flow
        key, then the snapshot's order)."""
        state = self._shown(state)
        sort = effective_sort(state)
        key = (self._generation, state.mode, sort, state.filter_text, state.show_kernel)
        if key == self._cache_key:
            return self._cache_rows
        needle = state.filter_text.lower()
        column = next(c for c in _columns(state) if c.id is sort)
        rows: Sequence[Any]
        if self.snapshot is None:
            rows = []
        elif state.mode is Mode.FLOWS:
            rows = self._flow_rows(self.snapshot.table, column, needle, state.show_kernel)
        else:
            process_rows: list[Any] = [
                p
                for p in self._base_rows()
                if (state.show_kernel or not p.stat.kernel)
                and (
                    not needle
                    or _matches(
                        needle,
                        (
                            sanitize(p.stat.comm).lower(),
                            str(p.stat.pid),
                            sanitize(p.stat.service or "").lower(),
                        ),
                    )
                )
            ]
            if state.mode is Mode.SERVICES:
                process_rows = service_rows(process_rows)
            process_rows.sort(key=column.sort_key)
            rows = process_rows
        self._cache_key = key
        self._cache_rows = rows
        return rows

    def _flow_rows(
        self, table: FlowTable, column: Column[Any], needle: str, show_kernel: bool
    ) -> FlowRows:
        shown = np.ones(len(table), dtype=bool) if show_kernel else ~table.kernel
        if needle:
            shown &= _filter_mask(table, needle)
        rows = np.flatnonzero(shown)
        assert column.table_key is not None
        # Least significant first, as np.lexsort takes them.
        keys = [table.tie_rank[rows], *(k[rows] for k in column.table_key(table))]
        if already_sorted(keys[::-1]):  # the usual case: by rate, as the snapshot comes
            return FlowRows(table, rows)
        # lexsort is stable: equal keys keep the table's (the snapshot's) order.
        return FlowRows(table, rows[np.lexsort(keys)])

    def _base_rows(self) -> list[ProcessRow]:
        """Process rows by pid, sorted once per snapshot so that each
        column's sort needs only a simple key."""
        if self._base is None:
            self._base = sorted(self._processes(), key=lambda p: p.stat.pid)
        return self._base

    def visible_rows(self, state: UIState, count: int) -> list[Any]:
        rows = self.rows(state)
        start = clamp_offset(state.offset, len(rows), count)
        end = min(start + count, len(rows))
        if state.reverse:
            n = len(rows)
            return [rows[n - 1 - i] for i in range(start, end)]
        return list(rows[start:end])

    @property
    def anomalies(self) -> int:
        return self._anomalies

    @property
    def total_rate(self) -> float:
        return self._total_rate

    # -- frames ----------------------------------------------------------

    def frame(self, state: UIState, width: int, height: int) -> Frame:
        if width <= 0 or height <= 0:
            return Frame(max(width, 0), max(height, 0), ())
        header = [self._protocol_line(width), self._status_line(state, width)]
        footer, cursor_x = self._footer(state, width)
        body_height = height - HEADER_LINES - FOOTER_LINES
        if body_height < 0:
            # Too short for a table: keep the footer (the alert) and what fits
            # of the header.
            lines = (*tuple(header[: height - 1]), footer)
            cursor = (height - 1, cursor_x) if cursor_x is not None else None
            return Frame(width, height, lines, cursor)
        if state.help:
            body = self._help_lines(width)[: body_height + 1]
        elif state.log:
            body = self._log_lines(width)[: body_height + 1]
        else:
            body = self._table(state, width, body_height)
        body += [()] * (body_height + 1 - len(body))  # the footer stays at the bottom
        lines = tuple(header) + tuple(body)
        cursor = (len(lines), cursor_x) if cursor_x is not None else None
        return Frame(width, height, (*lines, footer), cursor)

    def page_size(self, height: int) -> int:
        return max(height - HEADER_LINES - FOOTER_LINES, 1)

    def _fit_line(self, segments: Sequence[Segment], width: int) -> Line:
        """Cut a line of segments to `width` cells."""
        out: list[Segment] = []
        left = width
        for seg in segments:
            if left <= 0:
                break
            text = sanitize(seg.text, not self.settings.unicode)
            w = display_width(text)
            if w > left:
                text = truncate(text, left, self._ellipsis)
                w = display_width(text)
            out.append(Segment(text, seg.role))
            left -= w
        return tuple(out)

    @property
    def _ellipsis(self) -> str:
        return "…" if self.settings.unicode else "~"

    def _protocol_line(self, width: int) -> Line:
        snap = self.snapshot
        if snap is None:
            return self._fit_line([Segment("waiting for data...", Role.HEADER)], width)
        seen = {p for p, n in snap.protocols.items() if n}  # zeros are noise
        names = [p for p in PROTOCOL_ORDER if p in seen]
        names += sorted(seen - set(PROTOCOL_ORDER))
        text = "  ".join(f"{p} {format_bytes(snap.protocols[p])}" for p in names)
        return self._fit_line([Segment(text or "no traffic yet", Role.HEADER)], width)

    def _status_line(self, state: UIState, width: int) -> Line:
        segs: list[Segment] = []
        if state.paused:
            segs.append(Segment("PAUSED  ", Role.BADGE))
        if state.ended:
            segs.append(Segment("end of replay  ", Role.BADGE))
        if self._note:
            segs.append(Segment(f"{self._note}  ", Role.BADGE))
        if state.filter_text:
            shown = len(self.rows(state))
            segs.append(Segment(f"Filter '{state.filter_text}': {shown} shown  ", Role.BADGE))
        snap = self.snapshot
        s = self.settings
        flows = len(snap.flows) if snap else 0
        procs = len(snap.processes) if snap else 0
        text = (
            f"Rate {format_rate(self._total_rate)}  Flows {flows}  Procs {procs}"
            f"  Interval {s.interval_s:g}s  Alpha {s.alpha:g}"
        )
        if snap is not None and snap.dropped:
            text += f"  Dropped {snap.dropped}"
        if snap is not None and state.show_service and self._no_cgroups:
            text += "  Service: no cgroup data"
        if snap is not None and snap.closed.flows:
            text += f"  Closed {snap.closed.flows} ({format_bytes(snap.closed.bytes)})"
        segs.append(Segment(text, Role.HEADER))
        if s.note:
            segs.append(Segment(f"  {s.note}", Role.BADGE))
        return self._fit_line(segs, width)

    def _table(self, state: UIState, width: int, count: int) -> list[Line]:
        state = self._shown(state)
        why = self.snapshot is not None and bool(self.snapshot.table.marks)
        cols = layout(shown_columns(state, why), width)
        sort = effective_sort(state)
        titles: list[Segment] = []
        for i, (col, w) in enumerate(cols):
            sep = " " if i else ""
            if col.id is sort:
                down = col.descending != state.reverse
                arrow = ("▼" if down else "▲") if self.settings.unicode else ("v" if down else "^")
                title = col.title + arrow
                role = Role.TITLE_SORTED
            else:
                title, role = col.title, Role.TITLE
            titles.append(Segment(sep + fit(title, w, col.align, self._ellipsis), role))
        lines: list[Line] = [self._pad(titles, width, Role.TITLE)]
        layout_key = (
            state.mode,
            width,
            self.settings.unicode,
            state.show_service,
            state.numeric,
            why,
        )
        if layout_key != self._line_cache_layout:
            self._line_cache = {}
            self._line_cache_layout = layout_key
        cache = self._line_cache
        for row in self.visible_rows(state, count):
            line = cache.get(id(row))
            if line is None:
                line = cache[id(row)] = self._row_line(row, cols, width)
            lines.append(line)
        return lines

    def _row_line(self, row: Any, cols: list[tuple[Column[Any], int]], width: int) -> Line:
        if row.anomaly:
            role = Role.ANOMALY
        elif row.kernel if isinstance(row, FlowStat | ServiceRow) else row.stat.kernel:
            role = Role.KERNEL
        else:
            role = Role.NORMAL
        ascii_only = not self.settings.unicode
        ellipsis = self._ellipsis
        cells = []
        for col, w in cols:
            text = col.text(row)
            if len(text) <= w and text.isascii() and (col.safe or text.isprintable()):
                # What fit(sanitize(text)) returns here, without the calls.
                cells.append(text.rjust(w) if col.align == "right" else text.ljust(w))
            else:
                text = text if col.safe else sanitize(text, ascii_only)
                cells.append(fit(text, w, col.align, ellipsis))
        text = " ".join(cells)
        if role is Role.ANOMALY:
            # A highlighted row is a full-width bar. Each cell is exactly w
            # cells wide, so the row's width is known.
            used = sum(w for _, w in cols) + len(cols) - 1
            return (Segment(text + " " * (width - used), role),)
        return (Segment(text.rstrip(" "), role),)  # fewer cells for curses to paint

    def _pad(self, segs: list[Segment], width: int, role: Role) -> Line:
        """Fill the line to the full width so highlighted rows form a bar."""
        line = self._fit_line(segs, width)
        used = sum(display_width(s.text) for s in line)
        if used < width:
            line = (*line, Segment(" " * (width - used), role))
        return line

    def alert_text(self, latest: bool = True) -> tuple[str, Role]:
        """The footer's alert part; `latest` adds the newest alert's subject."""
        alerts = self._alerts
        n = self._anomalies if alerts is None else alerts.firing
        u = self.settings.unicode
        if n == 0:
            return ("✓ No anomalies detected" if u else "OK: No anomalies detected"), Role.OK
        noun = "flow" if n == 1 else "flows"
        if alerts is None or alerts.flows_above_threshold:
            text = f"ALERT: {n} {noun} above {format_rate(self.settings.threshold_bps)}"
        else:
            per = ", ".join(f"{k} {DETECTOR_WORDS.get(d, d)}" for d, k in alerts.by_detector)
            text = f"ALERT: {n} {noun} ({per})" if per else f"ALERT: {n} firing"
        if latest and alerts is not None and alerts.latest:
            text += f", latest {sanitize(alerts.latest, not u)}"
        return ("⚠️ " + text if u else "!! " + text), Role.ALERT

    def _footer(self, state: UIState, width: int) -> tuple[Line, int | None]:
        # Never touch the last column: writing the bottom-right cell can
        # scroll some terminals, and emoji widths differ between terminals.
        usable = max(width - (2 if self.settings.unicode else 1), 1)
        if state.editing:
            prompt = "Filter: "
            text = sanitize(state.draft, not self.settings.unicode)
            hint = "   Enter apply, Esc clear"
            line = self._fit_line(
                [
                    Segment(prompt, Role.INPUT),
                    Segment(text, Role.INPUT),
                    Segment(hint, Role.FOOTER),
                ],
                usable,
            )
            cursor_x = min(display_width(prompt) + display_width(text), usable)
            return line, cursor_x
        alert, role = self.alert_text()
        hints = "  h help  q quit  s/</> sort  r reverse  / filter  g procs  k kernel  p pause"
        hints += "  a alerts"
        if state.mode is not Mode.FLOWS:
            hints = hints.replace("g procs", "g flows")
        over = display_width(alert + hints) - usable
        if over > 0:
            # The keys matter more than the newest alert's name: cut that.
            short, _ = self.alert_text(latest=False)
            room = display_width(alert) - over
            alert = (
                truncate(alert, room, self._ellipsis)
                if room >= display_width(short) + 12
                else short
            )
        return self._fit_line([Segment(alert, role), Segment(hints, Role.FOOTER)], usable), None

    def _help_lines(self, width: int) -> list[Line]:
        on = self.settings.detectors
        texts = [*HELP_TEXT, "", "Detectors (--detectors; * running)"]
        texts += [f"  {'*' if n in on else ' '} {n:<11}{what}" for n, what in DETECTOR_HELP.items()]
        return [self._fit_line([Segment(text, Role.HELP)], width) for text in texts]

    def _log_lines(self, width: int) -> list[Line]:
        log = self._alerts.log if self._alerts is not None else ()
        texts = ["Alert log, newest first (any key closes)", *(log or ("  no alerts yet",))]
        return [self._fit_line([Segment(text, Role.HELP)], width) for text in texts]


# The detectors' one-line descriptions (netmon.alerts.choice.DETECTORS; not
# imported, so that the view does not depend on the alert path).
DETECTOR_HELP = {
    "threshold": "a flow above --threshold",
    "baseline": "a flow or process far above its own learned normal",
    "fanout": "many ports of one host, or many hosts on one port",
    "new-peer": "a process using a peer it never used",
}

# How the footer counts each detector's alerts: "3 flows (2 baseline, 1 scan)".
DETECTOR_WORDS = {"fanout": "scan", "new-peer": "new peer"}

HELP_TEXT = (
    "Keys (any key closes this help)",
    "  q            quit",
    "  Up/Down      scroll one row",
    "  PgUp/PgDn    scroll one page",
    "  Home/End     first / last row",
    "  s  >         next sort column",
    "  <            previous sort column",
    "  r            reverse the sort order",
    "  p            pause the display (capture continues)",
    "  /            filter by name, PID, port, IP or service; Enter applies",
    "  Esc          clear the filter",
    "  k            show / hide kernel threads",
    "  c            show / hide the SERVICE column (systemd unit, container, pod)",
    "  g            switch between flows and processes",
    "  G            processes grouped by service, or not",
    "  n            show the peers' host names / addresses",
    "  a            alert log: time, state, detector, process, peer, value",
    "  h  ?         this help",
)


def clamp_offset(offset: int, total: int, page: int) -> int:
    return max(0, min(offset, total - page))


def _next_sort(state: UIState, step: int) -> UIState:
    ids = [c.id for c in _columns(state)]
    current = ids.index(effective_sort(state))
    return replace(state, sort=ids[(current + step) % len(ids)], reverse=False, offset=0)


def apply_key(state: UIState, key: str, total: int, page: int) -> UIState:
    """The state after one key. `key` is a printable character or one of
    UP DOWN PGUP PGDN HOME END ENTER ESC BACKSPACE RESIZE; `total` is the
    number of rows in the current list and `page` the rows on screen."""
    if state.help:
        return replace(state, help=False, quit=key == "q")
    if state.log:
        return replace(state, log=False, quit=key == "q")
    if state.editing:
        if key == "ENTER":
            return replace(state, editing=False, filter_text=state.draft, offset=0)
        if key == "ESC":
            return replace(state, editing=False, draft="", filter_text="", offset=0)
        if key == "BACKSPACE":
            return replace(state, draft=state.draft[:-1])
        if len(key) == 1 and key.isprintable() and len(state.draft) < MAX_FILTER_LEN:
            return replace(state, draft=state.draft + key)
        return state
    scroll = {
        "UP": state.offset - 1,
        "DOWN": state.offset + 1,
        "PGUP": state.offset - page,
        "PGDN": state.offset + page,
        "HOME": 0,
        "END": total,
    }
    if key in scroll:
        return replace(state, offset=clamp_offset(scroll[key], total, page))
    if key == "q":
        return replace(state, quit=True)
    if key in ("s", ">"):
        return _next_sort(state, 1)
    if key == "<":
        return _next_sort(state, -1)
    if key == "r":
        return replace(state, reverse=not state.reverse, offset=0)
    if key == "p":
        return replace(state, paused=not state.paused)
    if key == "/":
        return replace(state, editing=True, draft="")  # a new filter, as in less
    if key == "ESC":
        return replace(state, filter_text="", draft="", offset=0)
    if key == "k":
        return replace(state, show_kernel=not state.show_kernel, offset=0)
    if key == "g":
        mode = Mode.PROCESSES if state.mode is Mode.FLOWS else Mode.FLOWS
        return replace(state, mode=mode, offset=0)
    if key == "G":
        mode = Mode.PROCESSES if state.mode is Mode.SERVICES else Mode.SERVICES
        return replace(state, mode=mode, offset=0)
    if key == "c":
        return replace(state, show_service=not state.show_service)
    if key in ("h", "?"):
        return replace(state, help=True)
    if key == "n":
        return replace(state, numeric=not state.numeric)
    if key == "a":
        return replace(state, log=True)
    return state
