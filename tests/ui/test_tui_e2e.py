"""End to end: `python -m netmon --replay FILE` in a pseudo-terminal, read
through a terminal emulator (pyte). No root needed."""

from __future__ import annotations

import curses
import os
import signal
import termios
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from netmon.model import FlowStat

from .builders import MB, flow, snapshot, write_replay
from .ptyterm import TERM, Terminal, netmon_argv

# pid -> rate; PIDs are deliberately not in rate order.
RATES = {104: 25 * MB, 102: 12 * MB, 106: 5 * MB, 101: 1 * MB, 105: 10 * 1024, 103: 0.0}
BY_RATE = [104, 102, 106, 101, 105, 103]
ANOMALOUS = {104, 102}
PROTOCOLS = {"TCP": int(1.2 * 1024 * MB), "UDP": 34 * MB, "ICMP": 12 * 1024}
NAMES = {101: "alpha", 102: "bravo", 103: "charlie", 104: "delta", 105: "echo", 106: "foxtrot"}


def keycap(name: str) -> bytes:
    """The bytes the terminal sends for a key, from terminfo."""
    seq = curses.tigetstr(name)
    assert seq, name
    return seq


@pytest.fixture(scope="module", autouse=True)
def _terminfo() -> None:
    curses.setupterm(TERM, 1)


def main_snapshot() -> list[FlowStat]:
    return [
        flow(pid, NAMES[pid], rate=rate, sent=pid * 1000, recv=pid * 10, remote_ip=f"10.0.0.{pid}")
        for pid, rate in RATES.items()
    ]


@pytest.fixture
def main_file(tmp_path: Path) -> Path:
    return write_replay(tmp_path / "main.jsonl", [snapshot(main_snapshot(), protocols=PROTOCOLS)])


StartTerm = Callable[..., Terminal]


@pytest.fixture
def term_factory() -> Iterator[StartTerm]:
    """start(path, cols=100, rows=30, env=None): netmon replaying `path`."""
    terms: list[Terminal] = []

    def start(
        path: Path, cols: int = 100, rows: int = 30, env: dict[str, str] | None = None
    ) -> Terminal:
        t = Terminal(netmon_argv("--replay", str(path)), cols, rows, env)
        terms.append(t)
        return t

    yield start
    for t in terms:
        t.close()


def table_pids(t: Terminal) -> list[int]:
    pids = []
    for line in t.lines()[3:-1]:
        first = line.split()[:1]
        if first and first[0].isdigit():
            pids.append(int(first[0]))
    return pids


FOOTERS = (
    "⚠ ALERT",
    "✓ No anomalies",
    "!! ALERT",
    "OK: No anomalies",
    "✓ No flows",
    "OK: No flows",
)


def ready(t: Terminal) -> None:
    """The first snapshot is painted: curses paints top to bottom, so once
    the footer is there the rows above it are too."""
    t.wait_for(
        lambda t: "end of replay" in t.line(1) and t.lines()[-1].startswith(FOOTERS),
        what="first snapshot",
    )


def sync(t: Terminal) -> None:
    """Make sure everything painted so far has arrived: open the filter
    prompt and wait for it in the footer (the last line curses paints),
    then close it again."""
    t.send("/")
    t.wait_for(lambda t: t.lines()[-1].startswith("Filter: "), what="filter prompt")
    t.send("\x1b")
    t.wait_for(lambda t: t.lines()[-1].startswith(FOOTERS), what="footer back")


def assert_restored(t: Terminal) -> None:
    flags = t.termios_flags()
    assert flags & termios.ECHO, "echo left off"
    assert flags & termios.ICANON, "canonical mode left off"
    raw = bytes(t.raw)
    assert raw.rfind(keycap("rmcup")) > raw.rfind(keycap("smcup")) >= 0, "alternate screen"
    assert raw.rfind(keycap("cnorm")) > raw.rfind(keycap("civis")) >= 0, "cursor left hidden"


@pytest.mark.parametrize("size", [(100, 30), (80, 24), (40, 10)])
def test_header_default_order_and_anomalies(
    term_factory: StartTerm, main_file: Path, size: tuple[int, int]
) -> None:
    cols, rows = size
    t = term_factory(main_file, cols, rows)
    ready(t)
    assert t.line(0).startswith("TCP 1.2 GB  UDP 34.0 MB  ICMP 12.0 KB")
    assert t.line(1).startswith("end of replay  Rate 43.0 MB/s")
    assert "RATE▼" in t.line(2)
    visible = rows - 4
    assert table_pids(t) == BY_RATE[:visible]
    for y, line in enumerate(t.lines()[3:-1], start=3):
        if not line.strip():
            continue
        pid = int(line.split()[0])
        assert t.row_reverse(y) == (pid in ANOMALOUS), (pid, t.dump())
    assert not t.row_any_reverse(2)
    assert t.line(rows - 1).startswith("⚠ ALERT: 2 flows above 10.0 MB/s")
    # Columns line up: every row's rate ends in the same column as the title.
    rate_end = t.line(2).index("RATE▼") + len("RATE▼")
    for line in t.lines()[3 : 3 + min(visible, len(BY_RATE))]:
        assert line[rate_end - 4 : rate_end].endswith("B/s"), line


def test_resort_and_reverse_with_keys(term_factory: StartTerm, main_file: Path) -> None:
    t = term_factory(main_file)
    ready(t)
    t.send("s")  # RATE is last, `s` wraps to PID
    t.wait_for(lambda t: "PID▲" in t.line(2) and table_pids(t) == sorted(RATES), what="by PID")
    t.send("r")
    t.wait_for(
        lambda t: "PID▼" in t.line(2) and table_pids(t) == sorted(RATES, reverse=True),
        what="reversed",
    )
    t.send("<")  # back to RATE, natural order again
    t.wait_for(lambda t: "RATE▼" in t.line(2) and table_pids(t) == BY_RATE, what="by rate")
    t.send(">")
    t.send(">")
    by_name = sorted(RATES, key=NAMES.__getitem__)
    t.wait_for(lambda t: "PROCESS▲" in t.line(2) and table_pids(t) == by_name, what="by name")


def test_no_anomaly_footer_and_ascii_fallback(term_factory: StartTerm, tmp_path: Path) -> None:
    quiet = write_replay(tmp_path / "q.jsonl", [snapshot([flow(7, "calm", rate=1 * MB)])])
    t = term_factory(quiet, 80, 24)
    ready(t)
    assert t.line(23).startswith("✓ No anomalies detected")
    ascii_env = {"LANG": "C", "LC_ALL": "C", "PYTHONCOERCECLOCALE": "0"}
    t2 = term_factory(quiet, 80, 24, env=ascii_env)
    ready(t2)
    assert t2.line(23).startswith("OK: No anomalies detected")
    assert "RATEv" in t2.line(2)
    loud = write_replay(tmp_path / "l.jsonl", [snapshot(main_snapshot())])
    t3 = term_factory(loud, 80, 24, env=ascii_env)
    ready(t3)
    assert t3.line(23).startswith("!! ALERT: 2 flows above 10.0 MB/s")
    assert t3.text().isascii()


def test_colour_and_no_color(term_factory: StartTerm, main_file: Path) -> None:
    t = term_factory(main_file, 100, 30)
    ready(t)
    y = t.find_row(" delta ")
    assert t.row_reverse(y)
    assert t.row_fg(y) == {"red"}
    t2 = term_factory(main_file, 100, 30, env={"NO_COLOR": "1"})
    ready(t2)
    y = t2.find_row(" delta ")
    assert t2.row_reverse(y)  # the alert does not depend on colour
    assert t2.row_fg(y) == {"default"}


def test_scrolling(term_factory: StartTerm, tmp_path: Path) -> None:
    # 60 flows, pid i has rate (100 - i) KB/s: rate order is pid order.
    snap = snapshot([flow(1000 + i, f"p{i}", rate=(100 - i) * 1024.0) for i in range(60)])
    t = term_factory(write_replay(tmp_path / "s.jsonl", [snap]), 80, 24)
    ready(t)
    page = 20
    assert table_pids(t) == list(range(1000, 1000 + page))
    steps = [
        (keycap("kcud1"), 1001),  # Down
        (keycap("knp"), 1021),  # PgDn
        (keycap("kend"), 1040),  # End: the last page
        (keycap("kcuu1"), 1039),  # Up
        (keycap("kpp"), 1019),  # PgUp
        (keycap("khome"), 1000),  # Home
    ]
    for key, first in steps:
        t.send(key)
        expected = list(range(first, first + page))

        def shows_page(t: Terminal, e: list[int] = expected) -> bool:
            return table_pids(t) == e

        t.wait_for(shows_page, what=f"rows from {first}")


def test_filter_then_clear(term_factory: StartTerm, main_file: Path) -> None:
    t = term_factory(main_file)
    ready(t)
    t.send("/")
    t.wait_for(lambda t: t.line(29).startswith("Filter: "), what="filter prompt")
    t.send("10.0.0.10")  # would match the IPs of 101 ... 106
    t.send("\x7f")  # Backspace: "10.0.0.1"
    t.send("05")
    t.wait_for(lambda t: t.line(29).startswith("Filter: 10.0.0.105 "), what="typed")
    assert table_pids(t) == BY_RATE  # not applied before Enter
    t.send("\r")
    t.wait_for(lambda t: table_pids(t) == [105], what="filter applied")
    assert "Filter '10.0.0.105': 1 shown" in t.line(1)
    t.send("/charlie\r")  # by name
    t.wait_for(lambda t: table_pids(t) == [103], what="name filter")
    t.send("/102\r")  # by PID
    t.wait_for(lambda t: table_pids(t) == [102], what="pid filter")
    t.send("\x1b")  # Esc clears
    t.wait_for(lambda t: table_pids(t) == BY_RATE, what="filter cleared")
    assert "Filter" not in t.line(1)


def test_process_view(term_factory: StartTerm, tmp_path: Path) -> None:
    flows = [*main_snapshot(), flow(104, "delta", rate=1 * MB, port=80, remote_ip="10.0.0.99")]
    t = term_factory(write_replay(tmp_path / "p.jsonl", [snapshot(flows)]))
    ready(t)
    assert len(table_pids(t)) == 7
    t.send("g")
    t.wait_for(
        lambda t: "FLOWS" in t.line(2) and "g flows" in t.line(29) and table_pids(t) == BY_RATE,
        what="process view",
    )
    delta = t.lines()[t.find_row(" delta ")].split()
    assert delta[:3] == ["104", "delta", "2"]
    assert delta[-2:] == ["26.0", "MB/s"]
    t.send("g")
    t.wait_for(lambda t: "REMOTE" in t.line(2), what="flow view")


def test_services_column_toggle_grouping_and_filter(
    term_factory: StartTerm, tmp_path: Path
) -> None:
    services = {101: "web.service", 102: "web.service", 104: "docker:3f2a1b0c9d8e"}
    flows = [
        flow(pid, NAMES[pid], rate=rate, sent=pid * 1000, recv=pid * 10, service=services.get(pid))
        for pid, rate in RATES.items()
    ]
    t = term_factory(write_replay(tmp_path / "s.jsonl", [snapshot(flows)]), cols=160)
    ready(t)
    assert "SERVICE" in t.line(2)
    assert t.lines()[t.find_row(" delta ")].split()[:3] == ["104", "delta", "docker:3f2a1b0c9d8e"]
    t.send("c")
    t.wait_for(lambda t: "SERVICE" not in t.line(2) and "REMOTE" in t.line(2), what="no column")
    t.send("c")
    t.wait_for(lambda t: "SERVICE" in t.line(2), what="the column again")
    t.send("/web.serv\r")
    t.wait_for(lambda t: sorted(table_pids(t)) == [101, 102], what="filtered by service")
    t.send("\x1b")
    t.wait_for(lambda t: len(table_pids(t)) == 6, what="filter cleared")
    t.send("g")
    t.send("G")
    t.wait_for(lambda t: t.line(2).split()[:3] == ["SERVICE", "PROCS", "FLOWS"], what="grouped")
    # (The header can be painted before the rows below it: wait for both.)
    t.wait_for(
        lambda t: [line.split()[:3] for line in t.lines()[3:-1] if line.strip()]
        == [["docker:3f2a1b0c9d8e", "1", "1"], ["web.service", "2", "2"], ["-", "3", "3"]],
        what="one row per service",
    )


def test_kernel_toggle(term_factory: StartTerm, tmp_path: Path) -> None:
    flows = [*main_snapshot(), flow(2, "kworker/u8:0", rate=50 * MB, kernel=True)]
    t = term_factory(write_replay(tmp_path / "k.jsonl", [snapshot(flows)]))
    ready(t)
    assert "kworker" not in t.text()
    t.send("k")
    t.wait_for(lambda t: table_pids(t) == [2, *BY_RATE], what="kernel thread shown")
    assert "[kworker/u8:0]" in t.text()
    t.send("k")
    t.wait_for(lambda t: table_pids(t) == BY_RATE, what="kernel thread hidden")
    sync(t)
    assert "kworker" not in t.text()


def test_pause_keeps_the_display_while_the_feed_goes_on(
    term_factory: StartTerm, tmp_path: Path
) -> None:
    first = snapshot([flow(1, "before", rate=1 * MB)], ts=1000.0)
    second = snapshot([flow(1, "after", rate=2 * MB)], ts=1002.0)
    t = term_factory(write_replay(tmp_path / "pause.jsonl", [first, second]))
    t.wait_text("before")
    t.send("p")
    t.wait_for(lambda t: t.line(1).startswith("PAUSED"), what="paused")
    # The second snapshot arrives while paused: the feed ends, the table stays.
    t.wait_text("end of replay")
    sync(t)
    assert "before" in t.text() and "after" not in t.text()
    assert t.line(1).startswith("PAUSED")
    t.send("p")
    t.wait_for(lambda t: "after" in t.text() and "PAUSED" not in t.line(1), what="resumed")


def test_help_overlay(term_factory: StartTerm, main_file: Path) -> None:
    t = term_factory(main_file)
    ready(t)
    t.send("h")
    # The overlay is painted top to bottom: wait for all of it, not its title.
    keys = ("PgUp/PgDn", "Home/End", "reverse", "pause", "filter", "kernel", "processes")
    t.wait_for(
        lambda t: (
            "Keys (any key closes this help)" in t.text() and all(key in t.text() for key in keys)
        ),
        what="the whole help overlay",
    )
    t.send(" ")
    t.wait_for(lambda t: "Keys" not in t.text() and table_pids(t) == BY_RATE, what="closed")
    t.send("?")
    t.wait_text("Keys (any key closes this help)")


def test_resize_down_to_tiny_and_back(term_factory: StartTerm, main_file: Path) -> None:
    t = term_factory(main_file, 100, 30)
    ready(t)
    t.resize(40, 10)
    t.wait_for(
        lambda t: (
            "REMOTE" not in t.line(2)
            and "RATE" in t.line(2)
            and table_pids(t) == BY_RATE[:6]
            and t.line(9).startswith("⚠ ALERT")
        ),
        what="narrow",
    )
    t.resize(20, 5)
    t.wait_for(lambda t: t.line(4).startswith("⚠ ALERT"), what="very small")
    t.resize(120, 40)
    t.wait_for(
        lambda t: "REMOTE" in t.line(2) and t.line(39).startswith("⚠") and table_pids(t) == BY_RATE,
        what="wide",
    )
    t.send("q")
    assert t.wait_exit() == 0


def test_escape_sequence_in_a_process_name_is_harmless(
    term_factory: StartTerm, tmp_path: Path
) -> None:
    evil = "\x1b[2J\x1b[31m\x1b]0;owned\x07x"
    flows = [*main_snapshot(), flow(666, evil, rate=30 * MB), flow(777, "中文名字", rate=20 * MB)]
    t = term_factory(write_replay(tmp_path / "e.jsonl", [snapshot(flows)]), 120, 30)
    ready(t)
    y = t.find_row(" 666 ")
    assert "^[[2J^[[31m^[]0;ow" in t.line(y)
    assert t.line(0).startswith("TCP")  # not cleared
    assert t.screen.title == ""  # the title was not changed
    assert t.line(t.find_row("中文名字")).split()[:2] == ["777", "中文名字"]
    # Columns stay aligned around wide characters.
    rate_end = t.line(2).index("RATE▼") + len("RATE▼")
    for yy in (y, t.find_row("中文名字")):
        cells = t.screen.buffer[yy]
        text = "".join(cells[x].data for x in range(rate_end - 4, rate_end))
        assert text.endswith("B/s")


def test_quit_with_q_restores_the_terminal(term_factory: StartTerm, main_file: Path) -> None:
    t = term_factory(main_file)
    ready(t)
    assert not t.termios_flags() & termios.ICANON  # the UI changed the mode
    t.send("q")
    assert t.wait_exit() == 0
    assert_restored(t)


@pytest.mark.parametrize("how", ["SIGTERM", "SIGHUP", "ctrl-c"])
def test_signals_exit_cleanly_and_restore_the_terminal(
    term_factory: StartTerm, main_file: Path, how: str
) -> None:
    t = term_factory(main_file)
    ready(t)
    if how == "ctrl-c":
        t.send("\x03")
    else:
        t.proc.send_signal(getattr(signal, how))
    assert t.wait_exit() == 0
    assert_restored(t)
    assert b"Traceback" not in t.raw


def test_a_corrupt_recording_is_one_clear_line(term_factory: StartTerm, tmp_path: Path) -> None:
    good = snapshot(main_snapshot())
    path = write_replay(tmp_path / "bad.jsonl", [good, good])
    path.write_text('{"ts": 1.0, "flows": [\n' + path.read_text())
    t = term_factory(path, 300, 10)
    status = t.wait_exit()
    assert status == 8
    assert f"{path}: line 1: invalid JSON" in t.text()
    assert b"Traceback" not in t.raw
    assert keycap("smcup") not in t.raw  # the first line is read before the UI starts


def test_a_corrupt_line_later_stops_the_replay_with_one_clear_line(
    term_factory: StartTerm, tmp_path: Path
) -> None:
    """Replay reads as it plays: the good lines show, then the bad one ends it."""
    good = snapshot(main_snapshot())
    path = write_replay(tmp_path / "bad.jsonl", [good, good])
    path.write_text(path.read_text() + '{"ts": 1.0, "flows": [\n')
    t = term_factory(path, 300, 10)
    status = t.wait_exit()
    assert status == 8
    assert f"{path}: line 3: invalid JSON" in t.text()
    assert b"Traceback" not in t.raw
    assert_restored(t)


def test_a_dropped_connection_ends_netmon(term_factory: StartTerm, main_file: Path) -> None:
    """Like an ssh session dropping: the terminal goes away (the kernel sends
    SIGHUP and further writes fail); netmon must exit, not spin or hang."""
    t = term_factory(main_file)
    ready(t)
    os.close(t.slave)  # only the program holds the terminal now
    t.slave = os.open(os.devnull, os.O_RDONLY)  # keeps close() simple
    os.close(t.master)
    t.master = os.open(os.devnull, os.O_RDONLY)
    assert t.proc.wait(timeout=10) == 0
