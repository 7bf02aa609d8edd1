"""Each alert sink for real: a file, a syslog socket, a journald socket, a
program. A hostile process name must reach every one as inert data."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from netmon.alerts.events import FIRING, RESOLVED, AlertEvent, Subject
from netmon.alerts.feed import AlertStatus, footer_alerts
from netmon.alerts.sinks import (
    DeliveryError,
    ExecSink,
    FileSink,
    JournalSink,
    Message,
    SyslogSink,
    open_sinks,
)
from netmon.errors import OutputError
from netmon.ui.text import sanitize
from netmon.view import UIState, View, ViewSettings
from tests.ui.builders import flow, snapshot


def hostile(tmp_path: Path) -> str:
    """Quotes, command substitutions, backticks, a newline, escape
    sequences, a bidi override: all things a name may hold."""
    return f"a'b\"c$(touch {tmp_path}/pwned)`touch {tmp_path}/pwned2`\nx\x1b[2J\x1b]0;t\x07\u202ez;"


def event(comm: str, state: str = FIRING) -> AlertEvent:
    subject = Subject("flow", 4242, comm, "TCP", "IPv4", 443, "192.0.2.7", "client")
    return AlertEvent(
        state, "threshold", 9, subject, 2e7, 1e7, "B/s", 1.7e9, 1.7e9,
        None if state == FIRING else 1.7e9 + 5, "rate 19.1 MB/s above 9.5 MB/s",
    )  # fmt: skip


def no_controls(text: str) -> bool:
    return all(ch >= " " and ch != "\x7f" and not 0x80 <= ord(ch) < 0xA0 for ch in text)


def test_file_sink_writes_the_name_exactly_as_json(tmp_path: Path) -> None:
    name = hostile(tmp_path)
    path = tmp_path / "alerts.jsonl"
    sink = FileSink(str(path))
    sink.deliver(Message.of_event(event(name)))
    sink.deliver(Message.of_event(event(name, RESOLVED)))
    sink.close()
    raw = path.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert b"\x1b" not in raw and raw.count(b"\n") == 2  # escaped inside JSON strings
    first, second = (json.loads(line) for line in raw.splitlines())
    assert first["comm"] == second["comm"] == name
    assert (first["state"], second["state"]) == ("firing", "resolved")
    # Appends to an existing file of its own; never truncates it.
    again = FileSink(str(path))
    again.deliver(Message.of_event(event("z")))
    again.close()
    assert path.read_bytes().startswith(raw)
    assert not (tmp_path / "pwned").exists()


def test_file_sink_refuses_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_text("")
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(OutputError, match="symbolic link"):
        FileSink(str(tmp_path / "link"))


@contextlib.contextmanager
def datagram_server(path: Path) -> Iterator[socket.socket]:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(10)
    try:
        yield server
    finally:
        server.close()


def test_syslog_sink_sends_one_safe_line(tmp_path: Path) -> None:
    name = hostile(tmp_path)
    with datagram_server(tmp_path / "log") as server:
        sink = SyslogSink(str(tmp_path / "log"))
        sink.deliver(Message.of_event(event(name)))
        sink.deliver(Message.of_event(event(name, RESOLVED)))
        sink.close()
        firing = server.recv(65536).decode()
        resolved = server.recv(65536).decode()
    assert firing.startswith(f"<28>netmon[{os.getpid()}]: netmon alert firing: threshold: ")
    assert resolved.startswith(f"<29>netmon[{os.getpid()}]: netmon alert resolved: ")
    assert sanitize(name) in firing
    assert no_controls(firing) and no_controls(resolved)


def parse_journal(datagram: bytes) -> dict[str, str]:
    """journald's native protocol: KEY=value lines, or KEY, a length, data."""
    fields: dict[str, str] = {}
    rest = datagram
    while rest:
        line, _, after = rest.partition(b"\n")
        if b"=" in line:
            key, _, value = line.partition(b"=")
            fields[key.decode()] = value.decode()
            rest = after
        else:
            (size,) = struct.unpack("<Q", after[:8])
            fields[line.decode()] = after[8 : 8 + size].decode()
            rest = after[8 + size + 1 :]
    return fields


def test_journal_sink_sends_structured_safe_fields(tmp_path: Path) -> None:
    name = hostile(tmp_path)
    with datagram_server(tmp_path / "journal") as server:
        sink = JournalSink(str(tmp_path / "journal"))
        sink.deliver(Message.of_event(event(name)))
        sink.close()
        fields = parse_journal(server.recv(65536))
    assert fields["NETMON_COMM"] == sanitize(name)
    assert fields["NETMON_ALERT_STATE"] == "firing"
    assert fields["NETMON_ALERT_DETECTOR"] == "threshold"
    assert fields["NETMON_ALERT_ID"] == "9"
    assert fields["NETMON_PID"] == "4242"
    assert fields["NETMON_REMOTE_IP"] == "192.0.2.7"
    assert fields["PRIORITY"] == "4"
    assert fields["SYSLOG_IDENTIFIER"] == "netmon"
    assert fields["MESSAGE"].startswith("netmon alert firing: threshold: ")
    assert all(no_controls(value) for value in fields.values())


def test_a_missing_log_socket_is_an_error_at_start(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="cannot reach"):
        SyslogSink(str(tmp_path / "nothing"))


def recorder_program(tmp_path: Path, body: str = "") -> Path:
    """A program that saves its argv, environment and stdin to out.json."""
    program = tmp_path / "hook"
    program.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "data = sys.stdin.read()\n"
        f"json.dump({{'argv': sys.argv, 'env': dict(os.environ), 'stdin': data,"
        f" 'pid': os.getpid()}}, open({str(tmp_path / 'out.json')!r}, 'w'))\n" + body
    )
    program.chmod(0o755)
    return program


def test_exec_sink_gives_the_event_as_data(tmp_path: Path) -> None:
    name = hostile(tmp_path)
    sink = ExecSink(str(recorder_program(tmp_path)), timeout_s=60)
    sink.deliver(Message.of_event(event(name)))
    sink.close()
    got = json.loads((tmp_path / "out.json").read_text())
    assert got["argv"] == [str(tmp_path / "hook")]
    assert json.loads(got["stdin"])["comm"] == name
    assert got["stdin"].count("\n") == 1
    env = got["env"]
    assert env["NETMON_COMM"] == sanitize(name)
    assert env["NETMON_ALERT_STATE"] == "firing"
    assert env["NETMON_PORT"] == "443"
    assert all(no_controls(v) for k, v in env.items() if k.startswith("NETMON_"))
    assert "NETMON_ALERT_TEXT" in env
    assert not any(k in env for k in ("HOME", "PYTEST_CURRENT_TEST"))  # not netmon's environment
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()


def test_exec_sink_kills_a_program_that_outlives_its_timeout(tmp_path: Path) -> None:
    program = recorder_program(tmp_path, "import time\ntime.sleep(3600)\n")
    sink = ExecSink(str(program), timeout_s=0.5)
    with pytest.raises(DeliveryError, match=r"did not finish within 0\.5 s: killed"):
        sink.deliver(Message.of_event(event("x")))
    pid = json.loads((tmp_path / "out.json").read_text())["pid"]
    assert not Path(f"/proc/{pid}").exists()  # killed and reaped


def test_exec_sink_reports_a_failing_program(tmp_path: Path) -> None:
    program = recorder_program(tmp_path, "sys.stderr.write('no\\x1b[31m way\\n'); sys.exit(3)\n")
    sink = ExecSink(str(program))
    with pytest.raises(DeliveryError, match=r"exited with status 3: no\^\[\[31m way"):
        sink.deliver(Message.of_event(event("x")))


def test_exec_sink_wants_an_absolute_executable(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="absolute path"):
        ExecSink("hook")
    plain = tmp_path / "plain"
    plain.write_text("")
    with pytest.raises(OutputError, match="not an executable"):
        ExecSink(str(plain))


def test_open_sinks_refuses_two_of_a_kind(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="more than once"):
        open_sinks([str(tmp_path / "a"), str(tmp_path / "b")], None, 1.0)


def test_the_table_footer_shows_a_hostile_name_safely(tmp_path: Path) -> None:
    name = hostile(tmp_path)
    view = View(ViewSettings(interval_s=1.0, alpha=0.4, threshold_bps=1e7))
    view.set_snapshot(snapshot([flow(4242, name, rate=2e7)]))
    view.set_alerts(footer_alerts(AlertStatus(firing=(event(name),), events=())))
    frame = view.frame(UIState(), 1000, 10)  # wide enough for the whole name
    footer = "".join(seg.text for seg in frame.lines[-1])
    assert footer.startswith("⚠️ ALERT: 1 flow above 9.5 MB/s, latest ")
    assert sanitize(name) in footer
    assert no_controls(footer)
