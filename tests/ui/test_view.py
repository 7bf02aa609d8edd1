"""The pure view: header, sorting, filtering, scrolling, modes, footer, keys."""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from netmon.model import Snapshot, flow_tie
from netmon.ui.text import display_width, fit, sanitize
from netmon.view import (
    FLOW_COLUMNS,
    HEADER_LINES,
    HELP_TEXT,
    PROCESS_COLUMNS,
    Col,
    Frame,
    Mode,
    Role,
    UIState,
    View,
    ViewSettings,
    already_sorted,
    apply_key,
    layout,
)

from .builders import MB, THRESHOLD, flow, snapshot

SETTINGS = ViewSettings(interval_s=1.0, alpha=0.4, threshold_bps=THRESHOLD)
ASCII = replace(SETTINGS, unicode=False)


def make_view(snap: Snapshot, settings: ViewSettings = SETTINGS) -> View:
    view = View(settings)
    view.set_snapshot(snap)
    return view


def text_lines(frame: Frame) -> list[str]:
    return ["".join(seg.text for seg in line) for line in frame.lines]


def table_pids(view: View, state: UIState, width: int = 120, height: int = 40) -> list[int]:
    lines = text_lines(view.frame(state, width, height))[HEADER_LINES:-1]
    return [int(line.split()[0]) for line in lines if line.strip()]


def sample() -> Snapshot:
    return snapshot(
        [
            flow(10, "nginx", rate=2 * MB, port=443, role="server", remote_ip="198.51.100.7",
                 sent=5000, recv=100),
            flow(20, "curl", rate=30 * MB, port=443, role="client", remote_ip="203.0.113.9",
                 sent=100, recv=9000),
            flow(30, "dnsmasq", rate=512.0, protocol="UDP", port=53, role="server",
                 remote_ip="192.0.2.53", sent=300, recv=200),
            flow(40, "ping", rate=64.0, protocol="ICMP", port=0, remote_ip="2001:db8::1",
                 sent=64, recv=64),
            flow(5, "kworker/0:1", rate=1 * MB, port=8080, role="server", kernel=True,
                 sent=1, recv=1),
        ],
        protocols={"UDP": 34 * MB, "TCP": int(1.2 * 1024 * MB), "ICMP": 12 * 1024},
    )  # fmt: skip


# -- header ---------------------------------------------------------------


def test_header_shows_protocol_totals_in_a_fixed_order() -> None:
    lines = text_lines(make_view(sample()).frame(UIState(), 120, 30))
    assert lines[0].startswith("TCP 1.2 GB  UDP 34.0 MB  ICMP 12.0 KB")


def test_header_leaves_out_protocols_without_traffic() -> None:
    snap = snapshot([], protocols={"RAW": 0, "UDP": 5, "SCTP": 2048, "ICMP": 0})
    assert text_lines(make_view(snap).frame(UIState(), 120, 30))[0] == "UDP 5 B  SCTP 2.0 KB"
    empty = snapshot([], protocols={"TCP": 0})
    assert text_lines(make_view(empty).frame(UIState(), 120, 30))[0] == "no traffic yet"


def test_status_line_has_total_rate_counts_interval_and_alpha() -> None:
    snap = snapshot([flow(1, rate=1 * MB), flow(2, rate=2 * MB)], dropped=7)
    view = make_view(snap, replace(SETTINGS, interval_s=0.5, alpha=0.25))
    status = text_lines(view.frame(UIState(), 120, 30))[1]
    assert "Rate 3.0 MB/s" in status
    assert "Flows 2" in status
    assert "Procs 2" in status
    assert "Interval 0.5s" in status
    assert "Alpha 0.25" in status
    assert "Dropped 7" in status


def test_status_badges() -> None:
    view = make_view(sample())
    status = text_lines(view.frame(UIState(paused=True, ended=True), 120, 30))[1]
    assert status.startswith("PAUSED")
    assert "end of replay" in status
    assert "PAUSED" not in text_lines(view.frame(UIState(), 120, 30))[1]


def test_no_snapshot_yet_does_not_crash() -> None:
    view = View(SETTINGS)
    lines = text_lines(view.frame(UIState(), 80, 24))
    assert "waiting" in lines[0]


# -- table ------------------------------------------------------------------


def test_default_sort_is_rate_descending_without_kernel_threads() -> None:
    assert table_pids(make_view(sample()), UIState()) == [20, 10, 30, 40]


def test_kernel_threads_are_shown_on_request_in_brackets() -> None:
    view = make_view(sample())
    state = UIState(show_kernel=True)
    assert table_pids(view, state) == [20, 10, 5, 30, 40]
    row = next(line for line in view.frame(state, 120, 30).lines if "kworker" in line[0].text)
    assert "[kworker/0:1]" in row[0].text
    assert row[0].role is Role.KERNEL


def test_cells_show_port_role_ip_and_sizes() -> None:
    lines = text_lines(make_view(sample()).frame(UIState(), 120, 30))
    by_pid = {int(line.split()[0]): line.split() for line in lines[HEADER_LINES:-1] if line}
    assert by_pid[10][:5] == ["10", "nginx", "TCP", "443/s", "198.51.100.7"]
    assert by_pid[10][5:] == ["4.9", "KB", "100", "B", "2.0", "MB/s"]
    assert by_pid[20][3] == "443/c"
    assert by_pid[30][2:4] == ["UDP", "53/s"]
    assert by_pid[40][3:5] == ["-", "2001:db8::1"]


def test_title_marks_the_sort_column_and_direction() -> None:
    view = make_view(sample())
    title = text_lines(view.frame(UIState(), 120, 30))[2]
    assert "RATE▼" in title
    title = text_lines(view.frame(UIState(sort=Col.PID, reverse=True), 120, 30))[2]
    assert "PID▼" in title
    assert "RATE▼" not in title
    ascii_title = text_lines(make_view(sample(), ASCII).frame(UIState(), 120, 30))[2]
    assert "RATEv" in ascii_title


@pytest.mark.parametrize(
    ("col", "expected"),
    [
        (Col.PID, [10, 20, 30, 40]),
        (Col.NAME, [20, 30, 10, 40]),  # curl, dnsmasq, nginx, ping
        (Col.PROTO, [40, 10, 20, 30]),  # ICMP, TCP, TCP, UDP
        (Col.PORT, [40, 30, 20, 10]),  # 0, 53, 443 client, 443 server
        (Col.REMOTE, [30, 10, 20, 40]),  # numeric, IPv4 before IPv6
        (Col.SENT, [10, 30, 20, 40]),
        (Col.RECV, [20, 30, 10, 40]),
        (Col.RATE, [20, 10, 30, 40]),
    ],
)
def test_every_column_sorts(col: Col, expected: list[int]) -> None:
    view = make_view(sample())
    assert table_pids(view, UIState(sort=col)) == expected
    assert table_pids(view, UIState(sort=col, reverse=True)) == expected[::-1]


def test_anomalous_rows_have_the_anomaly_role() -> None:
    frame = make_view(sample()).frame(UIState(), 120, 30)
    roles = {
        int(line[0].text.split()[0]): {seg.role for seg in line}
        for line in frame.lines[HEADER_LINES:-1]
        if line
    }
    assert roles[20] == {Role.ANOMALY}
    assert roles[10] == {Role.NORMAL}


def test_highlighted_rows_and_titles_fill_the_width_others_end_at_their_text() -> None:
    # 150 columns: more than all columns at their widest.
    frame = make_view(sample()).frame(UIState(), 150, 30)
    table = frame.lines[HEADER_LINES - 1 : HEADER_LINES + 4]
    assert all(table)
    widths = [sum(display_width(s.text) for s in line) for line in table]
    assert widths[0] == 150  # titles
    assert widths[1] == 150  # pid 20, anomalous
    assert all(w < 150 for w in widths[2:])
    assert all(not line[-1].text.endswith(" ") for line in table[2:])
    assert frame.lines[HEADER_LINES + 4 : -1] == ((),) * (30 - HEADER_LINES - 5)


# -- filtering --------------------------------------------------------------


@pytest.mark.parametrize(
    ("needle", "expected"),
    [
        ("NGINX", [10]),  # name, case-insensitive
        ("30", [30]),  # pid
        ("53", [30]),  # port
        ("203.0.113", [20]),  # IPv4
        ("db8", [40]),  # IPv6
        ("443", [20, 10]),
        ("nothing-matches", []),
    ],
)
def test_filter_over_name_pid_port_ip(needle: str, expected: list[int]) -> None:
    assert table_pids(make_view(sample()), UIState(filter_text=needle)) == expected


def test_filter_shows_in_the_header_with_the_count() -> None:
    status = text_lines(make_view(sample()).frame(UIState(filter_text="443"), 120, 30))[1]
    assert "Filter '443': 2 shown" in status


def test_filter_typing_keys() -> None:
    s = apply_key(UIState(), "/", 10, 5)
    assert s.editing
    for ch in "curlx":
        s = apply_key(s, ch, 10, 5)
    s = apply_key(s, "BACKSPACE", 10, 5)
    assert s.draft == "curl"
    assert s.filter_text == ""  # not applied until Enter
    s = apply_key(s, "q", 10, 5)  # a letter, not quit, while typing
    assert not s.quit
    s = apply_key(s, "BACKSPACE", 10, 5)
    s = apply_key(s, "ENTER", 10, 5)
    assert (s.editing, s.filter_text) == (False, "curl")
    s = apply_key(s, "ESC", 10, 5)
    assert s.filter_text == ""
    s = apply_key(apply_key(s, "/", 10, 5), "x", 10, 5)
    s = apply_key(s, "ESC", 10, 5)
    assert (s.editing, s.filter_text, s.draft) == (False, "", "")
    # A new "/" starts an empty filter, which replaces the old one on Enter.
    s = replace(s, filter_text="old")
    s = apply_key(apply_key(apply_key(s, "/", 10, 5), "n", 10, 5), "ENTER", 10, 5)
    assert s.filter_text == "n"


def test_filter_prompt_in_the_footer_with_cursor() -> None:
    view = make_view(sample())
    frame = view.frame(UIState(editing=True, draft="ngi"), 80, 24)
    footer = text_lines(frame)[-1]
    assert footer.startswith("Filter: ngi")
    assert frame.cursor == (23, len("Filter: ngi"))


# -- process view -----------------------------------------------------------


def test_process_view_from_snapshot_processes() -> None:
    snap = snapshot(
        [
            flow(1, "a", rate=1 * MB, sent=10),
            flow(1, "a", rate=20 * MB, port=80, sent=5),
            flow(2, "b", rate=3 * MB),
        ]
    )
    view = make_view(snap)
    frame = view.frame(UIState(mode=Mode.PROCESSES), 100, 20)
    lines = text_lines(frame)
    assert "FLOWS" in lines[2] and "PROTO" not in lines[2]
    rows = [line.split() for line in lines[HEADER_LINES:-1] if line.strip()]
    assert [r[:3] for r in rows] == [["1", "a", "2"], ["2", "b", "1"]]
    assert rows[0][3:5] == ["15", "B"]
    # A process with an anomalous flow is highlighted.
    assert frame.lines[HEADER_LINES][0].role is Role.ANOMALY
    assert frame.lines[HEADER_LINES + 1][0].role is Role.NORMAL


def test_flow_only_sort_column_falls_back_to_rate_in_process_view() -> None:
    view = make_view(sample())
    state = UIState(sort=Col.PORT, mode=Mode.PROCESSES)
    assert table_pids(view, state) == [20, 10, 30, 40]
    assert "RATE▼" in text_lines(view.frame(state, 120, 30))[2]
    state = apply_key(state, "g", 4, 10)
    assert state.mode is Mode.FLOWS
    assert table_pids(view, state) == [40, 30, 20, 10]  # by port again


# -- scrolling --------------------------------------------------------------


def many(n: int) -> Snapshot:
    return snapshot(flow(pid, f"p{pid}", rate=float(n - pid)) for pid in range(n))


def test_frame_shows_only_the_visible_window() -> None:
    view = make_view(many(100))
    frame = view.frame(UIState(offset=10), 80, 24)
    assert len(frame.lines) == 24
    assert table_pids(view, UIState(offset=10), 80, 24) == list(range(10, 30))


def test_scroll_keys() -> None:
    total, page = 100, 20
    s = UIState()
    s = apply_key(s, "DOWN", total, page)
    assert s.offset == 1
    s = apply_key(s, "UP", total, page)
    s = apply_key(s, "UP", total, page)
    assert s.offset == 0
    s = apply_key(s, "PGDN", total, page)
    assert s.offset == 20
    s = apply_key(s, "END", total, page)
    assert s.offset == 80
    s = apply_key(s, "PGDN", total, page)
    assert s.offset == 80
    s = apply_key(s, "PGUP", total, page)
    assert s.offset == 60
    s = apply_key(s, "HOME", total, page)
    assert s.offset == 0
    assert apply_key(UIState(), "END", 5, 20).offset == 0


def test_an_offset_past_the_end_shows_the_last_page() -> None:
    view = make_view(many(30))
    assert table_pids(view, UIState(offset=1000), 80, 14) == list(range(20, 30))


def test_reverse_scrolls_from_the_other_end() -> None:
    view = make_view(many(100))
    assert table_pids(view, UIState(reverse=True, offset=5), 80, 14)[:3] == [94, 93, 92]


# -- the cache --------------------------------------------------------------


def test_sorted_list_is_cached_until_data_sort_filter_or_mode_change() -> None:
    view = make_view(many(50))
    state = UIState()
    rows = view.rows(state)
    assert view.rows(replace(state, offset=7, reverse=True, paused=True)) is rows
    view.frame(replace(state, offset=3), 80, 24)
    assert view.rows(state) is rows
    assert view.rows(replace(state, sort=Col.PID)) is not rows
    assert view.rows(replace(state, filter_text="p1")) is not view.rows(state)
    rows = view.rows(state)
    view.set_snapshot(many(50))
    assert view.rows(state) is not rows


# -- footer -----------------------------------------------------------------


def test_footer_ok_and_alert_states() -> None:
    quiet = snapshot([flow(1, rate=1 * MB)])
    loud = snapshot([flow(1, rate=11 * MB), flow(2, rate=12 * MB), flow(3, rate=1.0)])
    one = snapshot([flow(1, rate=11 * MB)])
    assert text_lines(make_view(quiet).frame(UIState(), 120, 10))[-1].startswith(
        "✓ No anomalies detected"
    )
    assert text_lines(make_view(loud).frame(UIState(), 120, 10))[-1].startswith(
        "⚠️ ALERT: 2 flows above 10.0 MB/s"
    )
    assert "ALERT: 1 flow above" in text_lines(make_view(one).frame(UIState(), 120, 10))[-1]
    assert text_lines(make_view(quiet, ASCII).frame(UIState(), 120, 10))[-1].startswith(
        "OK: No anomalies detected"
    )
    assert text_lines(make_view(loud, ASCII).frame(UIState(), 120, 10))[-1].startswith(
        "!! ALERT: 2 flows above 10.0 MB/s"
    )


def test_footer_counts_alerts_hidden_by_a_filter() -> None:
    view = make_view(sample())
    footer = text_lines(view.frame(UIState(filter_text="dnsmasq"), 120, 10))[-1]
    assert "ALERT: 1 flow above" in footer


def test_footer_lists_key_hints_and_avoids_the_last_column() -> None:
    frame = make_view(sample()).frame(UIState(), 150, 10)
    footer = text_lines(frame)[-1]
    for hint in ("h help", "q quit", "/ filter", "p pause"):
        assert hint in footer
    assert display_width(footer) < 150


# -- sizes and hostile text ---------------------------------------------------


def hostile() -> Snapshot:
    return snapshot(
        [
            flow(1, "\x1b[2J\x1b]0;pwned\x07", rate=20 * MB, service="\x1b[31mred\x1b[0m.service"),
            flow(2, "中文进程名字很长很长", rate=2 * MB, service="中文服务名字很长.service"),
            flow(3, "e\u0301\u0301\u0301vil\u202e", rate=1 * MB),
            flow(4, "x" * 200, rate=1.0, remote_ip="2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff"),
        ]
    )


@pytest.mark.parametrize("size", [(120, 40), (80, 24), (40, 10), (20, 5), (10, 3), (1, 1)])
@pytest.mark.parametrize("mode", [Mode.FLOWS, Mode.PROCESSES, Mode.SERVICES])
@pytest.mark.parametrize("help_on", [False, True])
def test_no_line_exceeds_the_screen(size: tuple[int, int], mode: Mode, help_on: bool) -> None:
    width, height = size
    frame = make_view(hostile()).frame(UIState(mode=mode, help=help_on), width, height)
    assert len(frame.lines) <= height
    for line in frame.lines:
        assert sum(display_width(seg.text) for seg in line) <= width


def test_tiny_screen_keeps_the_alert_footer_and_rate() -> None:
    lines = text_lines(make_view(hostile()).frame(UIState(), 40, 10))
    assert lines[-1].startswith("⚠️ ALERT")
    assert "RATE" in lines[2] and "PID" in lines[2]
    assert len(lines) == 10
    assert text_lines(make_view(hostile()).frame(UIState(), 40, 2))[-1].startswith("⚠️ ALERT")


def test_escape_sequences_never_reach_the_frame() -> None:
    for settings in (SETTINGS, ASCII):
        frame = make_view(hostile(), settings).frame(UIState(), 120, 20)
        for line in frame.lines:
            for seg in line:
                assert all(ch >= " " and ch != "\x7f" for ch in seg.text), repr(seg.text)
                assert "\u202e" not in seg.text
        assert "^[[2J^[]0;pwned^G" in "\n".join(text_lines(frame))


def test_ascii_terminal_gets_only_ascii() -> None:
    frame = make_view(hostile(), ASCII).frame(UIState(help=True), 120, 40)
    frame2 = make_view(hostile(), ASCII).frame(UIState(), 120, 40)
    for line in text_lines(frame) + text_lines(frame2):
        assert line.isascii(), line


def test_layout_drops_low_priority_columns_first() -> None:
    wide = [c.id for c, _ in layout(FLOW_COLUMNS, 200)]
    assert wide == [c.id for c in FLOW_COLUMNS]
    narrow = [c.id for c, _ in layout(FLOW_COLUMNS, 40)]
    assert Col.RATE in narrow and Col.PID in narrow and Col.NAME in narrow
    assert Col.RECV not in narrow
    for width in range(1, 200):
        for cols in (FLOW_COLUMNS, PROCESS_COLUMNS):
            chosen = layout(cols, width)
            assert sum(w for _, w in chosen) + len(chosen) - 1 <= max(width, 1)


# -- keys ---------------------------------------------------------------------


def test_sort_keys_cycle_through_named_columns() -> None:
    ids = [c.id for c in FLOW_COLUMNS]
    s = UIState()
    seen = []
    for _ in ids:
        s = apply_key(s, "s", 10, 5)
        seen.append(s.sort)
    assert sorted(seen, key=ids.index) == ids  # every column exactly once
    assert seen[-1] is Col.RATE
    assert apply_key(UIState(), ">", 10, 5).sort is Col.PID  # wraps after RATE
    assert apply_key(UIState(), "<", 10, 5).sort is Col.RECV


def test_sort_change_resets_reverse_and_scroll() -> None:
    s = apply_key(UIState(reverse=True, offset=4), "s", 10, 5)
    assert (s.reverse, s.offset) == (False, 0)
    assert apply_key(UIState(), "r", 10, 5).reverse


@pytest.mark.parametrize(
    ("key", "field", "value"),
    [
        ("p", "paused", True),
        ("k", "show_kernel", True),
        ("g", "mode", Mode.PROCESSES),
        ("h", "help", True),
        ("?", "help", True),
        ("q", "quit", True),
        ("/", "editing", True),
    ],
)
def test_toggle_keys(key: str, field: str, value: object) -> None:
    assert getattr(apply_key(UIState(), key, 10, 5), field) == value


def test_help_lists_every_key_and_any_key_closes_it() -> None:
    help_text = "\n".join(HELP_TEXT)
    for key in ("q", "Up/Down", "PgUp/PgDn", "Home/End", "s", "<", ">", "r", "p", "/",
                "Esc", "k", "g", "h", "?"):  # fmt: skip
        assert f" {key} " in help_text, key
    lines = text_lines(make_view(sample()).frame(UIState(help=True), 100, 30))
    assert lines[2] == HELP_TEXT[0]
    s = apply_key(UIState(help=True), "x", 10, 5)
    assert not s.help and not s.quit
    assert apply_key(UIState(help=True), "q", 10, 5).quit


def test_unknown_keys_change_nothing() -> None:
    assert apply_key(UIState(), "Z", 10, 5) == UIState()
    assert apply_key(UIState(), "RESIZE", 10, 5) == UIState()


@pytest.mark.parametrize("settings", [SETTINGS, ASCII])
@pytest.mark.parametrize("width", [200, 120, 60])
def test_each_cell_is_the_fitted_sanitised_text(settings: ViewSettings, width: int) -> None:
    """Row lines take a shortcut for plain ASCII cells that fit; it must give
    what fitting each sanitised cell gives, hostile names included."""
    snap = snapshot([*hostile().flows, flow(5, "nginx", rate=3 * MB, port=8080, service="x.scope")])
    view = make_view(snap, settings)
    state = UIState(show_kernel=True)
    ellipsis = "…" if settings.unicode else "~"
    cols = layout(FLOW_COLUMNS, width)
    lines = view.frame(state, width, 20).lines[HEADER_LINES:]
    rows = view.visible_rows(state, 16)
    assert len(rows) == 5
    for row, line in zip(rows, lines, strict=False):
        cells = [
            fit(sanitize(col.text(row), not settings.unicode), w, col.align, ellipsis)
            for col, w in cols
        ]
        want = " ".join(cells)
        (seg,) = line
        assert seg.text.rstrip(" ") == want.rstrip(" ")


# -- the column-wise sort ------------------------------------------------------


def crowded() -> Snapshot:
    """Many ties: few pids, ports, names and peers, repeated rates and sizes."""
    rnd = random.Random(3)
    flows = []
    for _ in range(300):
        flows.append(
            flow(
                rnd.choice([7, 8, 9]),
                rnd.choice(["b", "A", "a", "中", "kworker"]),
                rate=rnd.choice([0.0, 1.0, 11 * MB, rnd.random()]),
                protocol=rnd.choice(["TCP", "UDP", "ICMP"]),
                port=rnd.choice([0, 53, 443]),
                remote_ip=rnd.choice([None, "10.0.0.2", "9.0.0.1", "2001:db8::1", "::1"]),
                role=rnd.choice(["client", "server", "unknown"]),
                sent=rnd.choice([0, 5, 2**40]),
                recv=rnd.choice([0, 7]),
                kernel=rnd.random() < 0.2,
                service=rnd.choice([None, "web.service", "Api.service", "a.scope"]),
            )
        )
    snap = snapshot(flows)
    # The snapshot's own order: highest rate first.
    return snapshot(sorted(snap.flows, key=lambda f: -f.rate_bps))


@pytest.mark.parametrize("col", [c.id for c in FLOW_COLUMNS])
@pytest.mark.parametrize("needle", ["", "a", "10."])
@pytest.mark.parametrize("show_kernel", [False, True])
def test_table_sort_is_the_row_by_row_sort(col: Col, needle: str, show_kernel: bool) -> None:
    """Sorted on columns, the rows come in the order of a stable sort by the
    column's key of the rows taken by pid, protocol, port and peer."""
    snap = crowded()
    column = next(c for c in FLOW_COLUMNS if c.id is col)
    base = sorted(snap.flows, key=lambda f: flow_tie(f.key))
    expected = [
        f
        for f in base
        if (show_kernel or not f.kernel)
        and (
            not needle
            or any(
                needle in h
                for h in (sanitize(f.comm).lower(), str(f.key.pid), str(f.key.port),
                          (f.key.remote_ip or "").lower(), (f.service or "").lower())
            )
        )
    ]  # fmt: skip
    expected.sort(key=column.sort_key)
    state = UIState(sort=col, filter_text=needle, show_kernel=show_kernel)
    assert list(make_view(snap).rows(state)) == expected


# -- services --------------------------------------------------------------


def services() -> Snapshot:
    return snapshot(
        [
            flow(10, "nginx", rate=2 * MB, port=443, role="server", sent=5000, recv=100,
                 service="nginx.service"),
            flow(11, "nginx", rate=1 * MB, port=443, role="server", sent=3000, recv=50,
                 service="nginx.service"),
            flow(20, "python3", rate=512.0, port=5432, sent=300, recv=200,
                 service="docker:3f2a1b0c9d8e"),
            flow(30, "curl", rate=64.0, sent=64, recv=64),
        ]
    )  # fmt: skip


def test_the_service_column_shows_each_flows_service_and_the_key_c_hides_it() -> None:
    view = make_view(services())
    lines = text_lines(view.frame(UIState(), 120, 30))
    assert "SERVICE" in lines[2] and "no cgroup" not in lines[1]
    by_pid = {int(line.split()[0]): line.split() for line in lines[HEADER_LINES:-1] if line}
    assert by_pid[10][:3] == ["10", "nginx", "nginx.service"]
    assert by_pid[20][:3] == ["20", "python3", "docker:3f2a1b0c9d8e"]
    assert by_pid[30][:3] == ["30", "curl", "-"]
    hidden = apply_key(UIState(), "c", 4, 10)
    assert hidden.show_service is False
    lines = text_lines(view.frame(hidden, 120, 30))
    assert "SERVICE" not in lines[2] and "nginx.service" not in "\n".join(lines)
    assert apply_key(hidden, "c", 4, 10).show_service is True
    assert "c " in "\n".join(HELP_TEXT) and "service" in "\n".join(HELP_TEXT)


def test_the_service_column_is_dropped_first_on_a_narrow_screen() -> None:
    view = make_view(services())
    assert "SERVICE" in text_lines(view.frame(UIState(), 100, 30))[2]
    narrow = text_lines(view.frame(UIState(), 80, 30))[2]
    assert "SERVICE" not in narrow and "RECV" in narrow


def test_without_cgroup_data_the_status_line_says_so_once_and_no_column_shows() -> None:
    lines = text_lines(make_view(sample()).frame(UIState(), 120, 30))
    assert lines[1].count("no cgroup data") == 1
    assert "SERVICE" not in lines[2]
    assert "no cgroup data" not in "\n".join(lines[2:])


def test_the_filter_matches_the_service() -> None:
    view = make_view(services())
    state = UIState(filter_text="docker:3f2a")
    assert table_pids(view, state) == [20]
    assert [p.stat.pid for p in view.rows(replace(state, mode=Mode.PROCESSES))] == [20]
    assert [s.service for s in view.rows(replace(state, mode=Mode.SERVICES))] == [
        "docker:3f2a1b0c9d8e"
    ]


def test_the_process_view_groups_by_service() -> None:
    view = make_view(services())
    state = apply_key(UIState(mode=Mode.PROCESSES), "G", 4, 10)
    assert state.mode is Mode.SERVICES
    rows = view.rows(state)
    assert [(r.service, r.processes, r.flows, r.bytes_sent, r.bytes_recv) for r in rows] == [
        ("nginx.service", 2, 2, 8000, 150),
        ("docker:3f2a1b0c9d8e", 1, 1, 300, 200),
        (None, 1, 1, 64, 64),
    ]
    assert rows[0].rate_bps == 3 * MB
    lines = text_lines(view.frame(state, 120, 30))
    assert lines[2].split()[:3] == ["SERVICE", "PROCS", "FLOWS"]
    assert lines[HEADER_LINES].split()[:3] == ["nginx.service", "2", "2"]
    assert lines[HEADER_LINES + 2].split()[:2] == ["-", "1"]
    assert apply_key(state, "G", 3, 10).mode is Mode.PROCESSES
    assert apply_key(state, "g", 3, 10).mode is Mode.FLOWS
    by_name = view.rows(replace(state, sort=Col.SERVICE))
    assert [r.service for r in by_name] == [None, "docker:3f2a1b0c9d8e", "nginx.service"]


@hypothesis_settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.integers(0, 3), min_size=0, max_size=12), min_size=1, max_size=3))
def test_rows_already_in_order_are_recognised_exactly(columns: list[list[int]]) -> None:
    """The view skips its sort when the rows are already in order: that
    check must agree with the (stable) sort it replaces, ties included."""
    n = min(len(c) for c in columns)
    keys = [np.array(c[:n], dtype=np.int64) for c in columns]  # least significant first
    assert already_sorted(keys[::-1]) == bool(np.array_equal(np.lexsort(keys), np.arange(n)))
