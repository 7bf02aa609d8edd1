"""Hostile and careless input through the real command: every case ends with
one line on stderr and its documented exit code, never a traceback."""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import select
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from netmon import cli
from netmon.jsonl import decode, dumps
from netmon.model import Snapshot

from .helpers import FakeClock, FakeStop

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sample.jsonl"


def netmon(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "netmon", *args],
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,  # type: ignore[call-overload]
    )


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("netmon: ")
    return lines[0]


def good(ts: float, interval_s: float = 1.0) -> str:
    return dumps(Snapshot(ts=ts, interval_s=interval_s, flows=(), processes=())) + "\n"


def played(ts: float, interval_s: float = 1.0) -> str:
    """good(ts) as a replay writes it: with the alerts its detectors found."""
    return good(ts, interval_s)[:-2] + ',"alerts":[]}\n'


FLOW = {
    "pid": 7, "comm": "curl", "protocol": "TCP", "family": "IPv4", "port": 443,
    "remote_ip": "192.0.2.1", "role": "client", "bytes_sent": 1, "bytes_recv": 2,
    "packets_sent": 1, "packets_recv": 1, "rate_bps": 3.0, "anomaly": False, "kernel": False,
}  # fmt: skip


def line_with(**flow_fields: object) -> str:
    flow = {**FLOW, **flow_fields}
    obj = {"ts": 1001.0, "interval_s": 1.0, "flows": [flow], "processes": []}
    return json.dumps(obj) + "\n"


# --- --record and --log-file --------------------------------------------------


def test_record_through_a_symlink_is_refused_and_the_target_kept(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    target.chmod(0o644)
    link = tmp_path / "x.jsonl"
    link.symlink_to(target)
    result = netmon("--record", str(link))
    assert result.returncode == 9
    assert "is a symbolic link" in one_error_line(result.stderr)
    assert target.read_text() == "keep me\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_record_to_dev_null_is_refused_and_its_mode_kept() -> None:
    before = os.stat("/dev/null").st_mode
    result = netmon("--record", "/dev/null")
    assert result.returncode == 9
    assert "not a regular file" in one_error_line(result.stderr)
    assert os.stat("/dev/null").st_mode == before


def test_record_to_an_existing_file_is_refused_without_append(tmp_path: Path) -> None:
    path = tmp_path / "old.jsonl"
    path.write_text(good(1.0))
    result = netmon("--record", str(path))
    assert result.returncode == 9
    assert "--append" in one_error_line(result.stderr)
    assert path.read_text() == good(1.0)


def test_log_file_through_a_symlink_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "target.log"
    target.write_text("")
    link = tmp_path / "netmon.log"
    link.symlink_to(target)
    result = netmon("--replay", str(SAMPLE), "--json", "--log-file", str(link))
    assert result.returncode == 9
    assert "is a symbolic link" in one_error_line(result.stderr)
    assert result.stdout == ""
    assert target.read_text() == ""


def _limit_file_size(size: int) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


def test_a_log_file_that_cannot_be_written_is_an_error_at_exit(tmp_path: Path) -> None:
    log = tmp_path / "netmon.log"
    log.write_text("x" * 100)
    recording = tmp_path / "gap.jsonl"
    recording.write_text(good(1000.0) + good(9e8))  # a gap: one warning to log
    result = subprocess.run(
        [sys.executable, "-m", "netmon", "--replay", str(recording), "--json",
         "--speed", "1000", "--log-file", str(log)],
        capture_output=True, text=True, timeout=120,
        preexec_fn=lambda: _limit_file_size(100),  # the log cannot grow: like a full disk
    )  # fmt: skip
    assert result.returncode == 9
    assert "Traceback" not in result.stderr and "Logging error" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith("netmon: warning: the recording jumps")  # said on stderr too
    assert lines[-1] == f"netmon: {log}: cannot write log file: File too large"
    assert len(result.stdout.splitlines()) == 2


def test_a_new_log_file_is_private(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "netmon.log"
    recording = tmp_path / "gap.jsonl"
    recording.write_text(good(1000.0) + good(9e8))
    clock = FakeClock()
    argv = ["--replay", str(recording), "--json", "--log-file", str(log)]
    assert cli.main(argv, clock=clock, stop=FakeStop(clock)) == 0
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert "the recording jumps" in log.read_text()


# --- stdout -------------------------------------------------------------------


def test_json_to_a_full_disk_is_one_line_and_exit_9() -> None:
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [sys.executable, "-m", "netmon", "--replay", str(SAMPLE), "--json",
             "--speed", "1000000"],
            stdout=full, stderr=subprocess.PIPE, text=True, timeout=120,
        )  # fmt: skip
    assert result.returncode == 9
    line = one_error_line(result.stderr)
    assert line == "netmon: cannot write to standard output: No space left on device"


def test_an_io_error_on_stdout_is_one_line_and_exit_9(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class HungUp(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError(5, "Input/output error")

    monkeypatch.setattr(sys, "stdout", HungUp())
    clock = FakeClock()
    argv = ["--replay", str(SAMPLE), "--json"]
    assert cli.main(argv, clock=clock, stop=FakeStop(clock)) == 9
    err = capsys.readouterr().err
    assert one_error_line(err) == "netmon: cannot write to standard output: Input/output error"


def test_a_closed_pipe_on_stdout_ends_quietly() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "netmon", "--replay", str(SAMPLE), "--json", "--speed", "100"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()  # like `| head -1`
    assert proc.wait(timeout=120) == 0
    assert proc.stderr.read() == b""
    proc.stderr.close()


# --- --replay -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"ts": 1001, "interval_s": 1, "flows": "abc", "processes": []}\n',
         "'flows' must be a list"),
        ('{"ts": 1001, "interval_s": 1, "flows": [null], "processes": []}\n',
         "'flows' item 1 must be an object"),
        (line_with(rate_bps=float("nan")), "NaN is not a number"),
        (line_with(rate_bps=float("inf")), "Infinity is not a number"),
        (line_with(rate_bps=1).replace('"rate_bps": 1', '"rate_bps": 1e400'), "'rate_bps'"),
        (line_with(bytes_sent=1).replace('"bytes_sent": 1', '"bytes_sent": ' + "7" * 4000),
         "integer of 4000 digits"),
        (line_with(bytes_sent=-5), "'bytes_sent' must be from 0"),
        ('{"ts": 1e308, "interval_s": 1, "flows": [], "processes": []}\n', "'ts'"),
    ],
)  # fmt: skip
def test_a_bad_snapshot_is_one_line_naming_it_and_exit_8(
    tmp_path: Path, line: str, reason: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(good(1000.0) + line + good(1002.0))
    result = netmon("--replay", str(path), "--json", "--speed", "1000000")
    assert result.returncode == 8
    assert one_error_line(result.stderr).startswith(f"netmon: {path}: line 2: {reason}")
    assert result.stdout == played(1000.0)  # the good line before it played


def test_replay_of_dev_zero_stops_at_the_line_limit() -> None:
    result = netmon("--replay", "/dev/zero", "--json")
    assert result.returncode == 8
    assert one_error_line(result.stderr) == (
        "netmon: /dev/zero: line 1: longer than 64 MiB (not a recording?)"
    )


def test_a_truncated_last_line_plays_the_rest_and_warns(tmp_path: Path) -> None:
    path = tmp_path / "cut.jsonl"
    path.write_text(good(1000.0) + good(1001.0) + good(1002.0)[:25])
    result = netmon("--replay", str(path), "--json", "--speed", "1000000")
    assert result.returncode == 0
    assert result.stdout == played(1000.0) + played(1001.0)
    assert one_error_line(result.stderr) == (
        f"netmon: warning: {path}: line 3: incomplete last line ignored "
        "(the recording was cut short)"
    )


def test_count_1_reads_one_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(good(1000.0) + "this line is never read\n")
    result = netmon("--replay", str(path), "--json", "--count", "1")
    assert (result.returncode, result.stdout, result.stderr) == (0, played(1000.0), "")


def test_a_huge_gap_is_shortened_not_slept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "gap.jsonl"
    path.write_text(good(1000.0) + good(1000.0 + 1e9) + good(1001.0 + 1e9))
    clock = FakeClock(0.0)
    assert cli.main(["--replay", str(path), "--json"], clock=clock, stop=FakeStop(clock)) == 0
    out = capsys.readouterr()
    assert len(out.out.splitlines()) == 3
    assert clock.now == pytest.approx(3.0)  # 2 s for the jump, 1 s for the last one
    assert one_error_line(out.err).startswith("netmon: warning: the recording jumps 1e+09 s")


def test_replay_warnings_are_printed_after_the_table_closes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import netmon.ui.app

    path = tmp_path / "cut.jsonl"
    path.write_text(good(1000.0) + good(1001.0)[:10])
    seen_during_ui: list[str] = []

    def fake_run_ui(
        config: object, feed: cli.Feed, recorder: object = None, alerts: object = None
    ) -> int:
        while (due := feed.next_due()) is not None:
            feed.poll(due)
        seen_during_ui.append(capsys.readouterr().err)
        return 0

    monkeypatch.setattr(netmon.ui.app, "run_ui", fake_run_ui)
    assert cli.main(["--replay", str(path)]) == 0
    assert seen_during_ui == [""]  # nothing written over the table
    assert "line 2: incomplete last line" in one_error_line(capsys.readouterr().err)


def _readline(stream: io.BufferedReader, timeout: float = 60.0) -> bytes:
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, "no output in time"
    return stream.readline()


def test_a_fifo_plays_as_its_writer_writes(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        [sys.executable, "-m", "netmon", "--replay", str(fifo), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        with open(fifo, "w") as writer:  # waits for netmon to open it
            writer.write(good(1000.0))
            writer.flush()
            # The first snapshot comes out while the writer is still open.
            assert _readline(proc.stdout) == played(1000.0).encode()
            writer.write(good(1000.5, interval_s=0.5))
        assert _readline(proc.stdout) == played(1000.5, interval_s=0.5).encode()
        assert proc.wait(timeout=60) == 0
        assert proc.stderr.read() == b""
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_json_output_never_holds_nan_or_infinity(capsys: pytest.CaptureFixture[str]) -> None:
    clock = FakeClock()
    assert cli.main(["--replay", str(SAMPLE), "--json"], clock=clock, stop=FakeStop(clock)) == 0
    for line in capsys.readouterr().out.splitlines():
        decode(line)  # strict: raises on NaN or Infinity
