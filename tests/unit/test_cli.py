from __future__ import annotations

import errno
import io
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from netmon import cli
from netmon.config import Config
from netmon.errors import (
    BccMissing,
    KernelHeadersMissing,
    NetmonError,
    OutputError,
    PermissionDenied,
    ProbeError,
    RecordingError,
    TracefsUnavailable,
    UsageError,
)
from netmon.feed import Feed
from netmon.jsonl import dumps, loads
from netmon.model import Snapshot

from .helpers import FakeClock, FakeSource, FakeStop

CONTRACT_KEYS = {"ts", "interval_s", "flows", "processes", "protocols", "dropped", "closed",
                 "alerts"}
FLOW_KEYS = {
    "pid", "comm", "protocol", "family", "port", "remote_ip", "remote_name", "role", "bytes_sent",
    "bytes_recv", "packets_sent", "packets_recv", "rate_bps", "anomaly", "kernel", "cgroup",
    "service",
}  # fmt: skip
PROCESS_KEYS = {"pid", "comm", "bytes_sent", "bytes_recv", "rate_bps", "kernel", "cgroup",
                "service"}  # fmt: skip


class Factory:
    """Hands out one FakeSource and remembers how it was asked for."""

    def __init__(self, source: FakeSource | None = None, error: BaseException | None = None):
        self.source = source or FakeSource()
        self.error = error
        self.calls: list[dict[str, Any]] = []

    def __call__(self, *, probes: str, max_flows: int) -> FakeSource:
        self.calls.append({"probes": probes, "max_flows": max_flows})
        if self.error is not None:
            raise self.error
        return self.source


def no_factory(*, probes: str, max_flows: int) -> FakeSource:
    raise AssertionError("the live source must not be opened on this path")


def only_line(text: str) -> str:
    lines = text.splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(
    "argv",
    [
        ["--interval", "0"],
        ["--interval", "-5"],
        ["--interval", "abc"],
        ["--interval", "nan"],
        ["--interval", "50"],
        ["--json", "--interval", "1e16"],
        ["--threshold", "9" * 400],
        ["--speed", "1e-300", "--replay", "f"],
        ["--append"],
        ["--follow"],
        ["--alpha", "0"],
        ["--alpha", "1.5"],
        ["--alpha", "-0.1"],
        ["--alpha", "x"],
        ["--threshold", "ten"],
        ["--threshold", "-5"],
        ["--threshold", "10X"],
        ["--count", "0"],
        ["--count", "-1"],
        ["--count", "1.5", "--json"],
        ["--max-flows", "0"],
        ["--max-flows", "lots"],
        ["--speed", "0", "--replay", "f"],
        ["--speed", "-1", "--replay", "f"],
        ["--probes", "kprobes"],
        ["--bogus"],
        ["--count", "3"],
        ["--speed", "2"],
        ["--record", "f", "--replay", "g"],
        ["--record", "f", "--json"],
        ["--interval"],
    ],
)
def test_invalid_options_exit_2_with_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv, source_factory=no_factory) == 2
    err = capsys.readouterr()
    assert err.out == ""
    line = only_line(err.err)
    assert line.startswith("netmon: error: ")
    assert "Traceback" not in err.err


@pytest.mark.parametrize(
    "error",
    [
        NetmonError("something broke"),
        UsageError("bad usage"),
        PermissionDenied("need root or CAP_BPF"),
        BccMissing("no bcc"),
        KernelHeadersMissing("no headers"),
        TracefsUnavailable("no tracefs"),
        ProbeError("attach failed"),
        RecordingError("bad file"),
        OutputError("disk full"),
    ],
)
@pytest.mark.parametrize("json_mode", [True, False])
def test_source_errors_exit_with_their_code(
    error: NetmonError, json_mode: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--json"] if json_mode else []
    assert cli.main(argv, source_factory=Factory(error=error)) == error.exit_code
    out = capsys.readouterr()
    assert only_line(out.err) == f"netmon: {error}"
    assert out.out == ""


def test_exit_codes_are_distinct() -> None:
    codes = [
        c.exit_code
        for c in (NetmonError, UsageError, PermissionDenied, BccMissing,
                  KernelHeadersMissing, TracefsUnavailable, ProbeError, RecordingError,
                  OutputError)
    ]  # fmt: skip
    assert len(set(codes)) == len(codes)


def test_error_while_reading_exits_with_its_code(capsys: pytest.CaptureFixture[str]) -> None:
    clock = FakeClock()
    source = FakeSource(clock=clock, errors=[None, ProbeError("probe vanished")])
    code = cli.main(["--json"], source_factory=Factory(source), clock=clock, stop=FakeStop(clock))
    assert code == ProbeError.exit_code
    out = capsys.readouterr()
    assert len(out.out.splitlines()) == 1
    assert only_line(out.err) == "netmon: probe vanished"
    assert source.closed == 1


def test_json_count_3(capsys: pytest.CaptureFixture[str]) -> None:
    clock = FakeClock()
    factory = Factory(FakeSource(clock=clock))
    argv = ["--json", "--count", "3", "--probes", "syscalls", "--max-flows", "99"]
    assert cli.main(argv, source_factory=factory, clock=clock, stop=FakeStop(clock)) == 0
    out = capsys.readouterr()
    assert out.err == ""
    lines = out.out.splitlines()
    assert len(lines) == 3
    for line in lines:
        obj = json.loads(line)
        assert set(obj) == CONTRACT_KEYS
        assert obj["flows"] and set(obj["flows"][0]) == FLOW_KEYS
        assert obj["processes"] and set(obj["processes"][0]) == PROCESS_KEYS
        loads(line)
    assert factory.calls == [{"probes": "syscalls", "max_flows": 99}]
    assert factory.source.closed == 1
    assert len(factory.source.published) == 3


def test_json_stop_writes_final_object_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    clock = FakeClock()
    source = FakeSource(clock=clock)
    stop = FakeStop(clock, after_waits=3)
    assert cli.main(["--json"], source_factory=Factory(source), clock=clock, stop=stop) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4  # three on schedule, one final
    final = loads(lines[-1])
    assert final.flows[0].bytes_sent == source.reads * source.bytes_per_read
    assert source.closed == 1


def test_json_sigterm_writes_final_object_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    class SelfSignalling(FakeSource):
        def read(self) -> Any:
            if self.reads == 1:
                os.kill(os.getpid(), signal.SIGTERM)
            return super().read()

    before = signal.getsignal(signal.SIGTERM)
    source = SelfSignalling()
    # The signal arrives during the second read. The clock jumps a whole interval
    # per call, so the run never waits on real time: if the signal went unnoticed,
    # the run would go on to --count and the final-object check would fail.
    clock = FakeClock()

    def ticking() -> float:
        clock.advance(1.0)
        return clock.now

    argv = ["--json", "--count", "5", "--interval", "1000"]
    assert cli.main(argv, source_factory=Factory(source), clock=ticking) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3  # the first poll, the one that got the signal, the final one
    assert loads(lines[-1]).flows[0].bytes_sent == 3 * source.bytes_per_read
    assert signal.getsignal(signal.SIGTERM) is before


def test_warnings_go_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    clock = FakeClock()
    source = FakeSource(clock=clock, warnings=["sendfile traffic is not counted"])
    argv = ["--json", "--count", "1"]
    assert cli.main(argv, source_factory=Factory(source), clock=clock, stop=FakeStop(clock)) == 0
    out = capsys.readouterr()
    assert only_line(out.err) == "netmon: warning: sendfile traffic is not counted"
    assert len(out.out.splitlines()) == 1


def test_a_pid_that_names_no_process_is_a_warning(capsys: pytest.CaptureFixture[str]) -> None:
    clock = FakeClock()
    source = FakeSource(clock=clock)
    absent = 2**22 + 1  # above PID_MAX_LIMIT: never a pid
    assert not Path(f"/proc/{absent}").exists()
    argv = ["--json", "--count", "1", "--pid", f"{os.getpid()},{absent}"]
    assert cli.main(argv, source_factory=Factory(source), clock=clock, stop=FakeStop(clock)) == 0
    err = capsys.readouterr().err
    assert only_line(err) == (
        f"netmon: warning: --pid {absent}: no such process now; it is shown if it appears"
    )


def test_transient_read_failure_is_logged_to_stderr_in_json_mode(
    capsys: pytest.CaptureFixture[str],
) -> None:
    clock = FakeClock()
    source = FakeSource(clock=clock, errors=[OSError(errno.EIO, "map read failed")])
    argv = ["--json", "--count", "2"]
    assert cli.main(argv, source_factory=Factory(source), clock=clock, stop=FakeStop(clock)) == 0
    out = capsys.readouterr()
    assert len(out.out.splitlines()) == 2
    assert only_line(out.err).startswith("netmon: warning: reading the kernel counters failed")
    assert "map read failed" in out.err


def test_log_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log_file = tmp_path / "netmon.log"
    clock = FakeClock()
    source = FakeSource(clock=clock, errors=[OSError(errno.EIO, "map read failed")])
    argv = ["--json", "--count", "1", "--log-file", str(log_file)]
    assert cli.main(argv, source_factory=Factory(source), clock=clock, stop=FakeStop(clock)) == 0
    assert "map read failed" not in capsys.readouterr().err
    logged = log_file.read_text()
    assert "map read failed" in logged
    assert "Traceback" in logged  # the details go to the file


def test_unwritable_log_file_is_a_clean_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--json", "--log-file", str(tmp_path / "missing" / "x.log")]
    assert cli.main(argv, source_factory=no_factory) == OutputError.exit_code
    assert only_line(capsys.readouterr().err).startswith("netmon: cannot open log file")


def test_keyboard_interrupt_while_opening_exits_130(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--json"], source_factory=Factory(error=KeyboardInterrupt())) == 130
    out = capsys.readouterr()
    assert out.err == "" and out.out == ""


def test_ui_path_runs_the_ui_and_closes_the_source(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import netmon.ui.app

    seen: dict[str, Any] = {}

    def fake_run_ui(config: Config, feed: Feed, recorder: Any = None, alerts: Any = None) -> int:
        seen.update(config=config, snap=feed.poll(feed.next_due() or 0.0), recorder=recorder)
        return 0

    monkeypatch.setattr(netmon.ui.app, "run_ui", fake_run_ui)
    clock = FakeClock()
    factory = Factory(FakeSource(clock=clock))
    assert cli.main(["--alpha", "0.7"], source_factory=factory, clock=clock) == 0
    assert seen["config"].alpha == 0.7
    assert isinstance(seen["snap"], Snapshot)
    assert seen["recorder"] is None
    assert factory.source.closed == 1
    assert capsys.readouterr().err == ""  # nothing logged over the UI


def test_record_passes_a_recorder_to_the_ui(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import netmon.ui.app

    def fake_run_ui(config: Config, feed: Feed, recorder: Any = None, alerts: Any = None) -> int:
        snap = feed.poll(feed.next_due() or 0.0)
        assert snap is not None and recorder is not None
        recorder.write(snap)
        return 0

    monkeypatch.setattr(netmon.ui.app, "run_ui", fake_run_ui)
    path = tmp_path / "rec.jsonl"
    clock = FakeClock()
    assert (
        cli.main(["--record", str(path)], source_factory=Factory(FakeSource(clock)), clock=clock)
        == 0
    )
    assert len(path.read_text().splitlines()) == 1


def test_bad_record_path_fails_before_opening_the_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--record", str(tmp_path / "no" / "such" / "dir.jsonl")]
    assert cli.main(argv, source_factory=no_factory) == OutputError.exit_code
    assert only_line(capsys.readouterr().err).startswith("netmon: cannot record to ")


def _write_recording(path: Path, n: int) -> list[Snapshot]:
    snaps = [
        Snapshot(ts=1000.0 + i, interval_s=1.0, flows=(), processes=(), protocols={"TCP": i})
        for i in range(n)
    ]
    path.write_text("".join(dumps(s) + "\n" for s in snaps))
    return snaps


def _forget_modules(monkeypatch: pytest.MonkeyPatch, names: list[str]) -> None:
    for name in names:
        monkeypatch.delitem(sys.modules, name, raising=False)


def test_replay_json_needs_no_bcc(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rec.jsonl"
    snaps = _write_recording(path, 4)
    _forget_modules(monkeypatch, ["bcc", "netmon.sources.live"])
    clock = FakeClock()
    argv = ["--replay", str(path), "--json", "--speed", "4"]
    assert cli.main(argv, source_factory=no_factory, clock=clock, stop=FakeStop(clock)) == 0
    assert [loads(x) for x in capsys.readouterr().out.splitlines()] == snaps
    assert "netmon.sources.live" not in sys.modules
    assert "bcc" not in sys.modules
    assert clock.now == pytest.approx(1000.0 + 3 / 4)


def test_replay_ui(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import netmon.ui.app

    path = tmp_path / "rec.jsonl"
    snaps = _write_recording(path, 2)
    got: list[Snapshot | None] = []

    def fake_run_ui(config: Config, feed: Feed, recorder: Any = None, alerts: Any = None) -> int:
        got.append(feed.poll(feed.next_due() or 0.0))
        return 0

    monkeypatch.setattr(netmon.ui.app, "run_ui", fake_run_ui)
    assert cli.main(["--replay", str(path)], source_factory=no_factory) == 0
    assert got == [snaps[0]]


@pytest.mark.parametrize("content", [None, "", "not json\n", '{"ts": 1}\n'])
def test_bad_recordings_exit_8(
    content: str | None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rec.jsonl"
    if content is not None:
        path.write_text(content)
    assert cli.main(["--replay", str(path)], source_factory=no_factory) == 8
    out = capsys.readouterr()
    assert only_line(out.err).startswith("netmon: ")
    assert "Traceback" not in out.err


def test_print_bpf(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import netmon.sources.live

    calls: list[dict[str, Any]] = []

    def fake_render(**kwargs: Any) -> str:
        calls.append(kwargs)
        return "int prog(void) { return 0; }"

    monkeypatch.setattr(netmon.sources.live, "render_program", fake_render)
    argv = ["--print-bpf", "--max-flows", "128", "--probes", "syscalls"]
    assert cli.main(argv, source_factory=no_factory) == 0
    assert capsys.readouterr().out == "int prog(void) { return 0; }\n"
    assert calls == [{"max_flows": 128, "probes": "syscalls"}]


def test_bcc_import_failure_becomes_bcc_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import netmon.sources.live

    def no_bcc(**kwargs: Any) -> str:
        raise ModuleNotFoundError("No module named 'bcc'", name="bcc")

    monkeypatch.setattr(netmon.sources.live, "render_program", no_bcc)
    assert cli.main(["--print-bpf"]) == BccMissing.exit_code
    assert only_line(capsys.readouterr().err).startswith("netmon: ")


def test_help_and_version_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    assert "--threshold" in capsys.readouterr().out
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("netmon ")


def test_closed_stdout_ends_quietly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class ClosedPipe(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    clock = FakeClock()
    source = FakeSource(clock=clock)
    argv = ["--json"]
    assert cli.main(argv, source_factory=Factory(source), clock=clock, stop=FakeStop(clock)) == 0
    assert capsys.readouterr().err == ""
    assert source.closed == 1
