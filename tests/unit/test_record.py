"""Recorder: a new 0600 file or an explicit append, one whole JSON line per
snapshot, one-line errors (exit 9)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from netmon.errors import OutputError
from netmon.jsonl import dumps, loads
from netmon.model import FlowKey, FlowStat, ProcessStat, Snapshot
from netmon.record import Recorder
from netmon.sources.replay import open_replay_feed


def snap(ts: float, comm: str = "curl") -> Snapshot:
    key = FlowKey(pid=42, protocol="TCP", family="IPv4", port=443, remote_ip="192.0.2.1",
                  role="client")  # fmt: skip
    return Snapshot(
        ts=ts,
        interval_s=1.0,
        flows=(FlowStat(key, comm, 10, 20, 1, 2, 30.5, False),),
        processes=(ProcessStat(42, comm, 10, 20, 30.5),),
        protocols={"TCP": 30},
        dropped=1,
    )


def test_creates_the_file_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    old = os.umask(0)  # even with a permissive umask
    try:
        Recorder.open(str(path)).close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_an_existing_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    path.write_text("old content\n")
    path.chmod(0o644)
    with pytest.raises(OutputError, match="already exists; pass --append") as info:
        Recorder.open(str(path))
    assert info.value.exit_code == 9
    assert path.read_text() == "old content\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_append_adds_a_session_and_leaves_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    first = Recorder.open(str(path), append=True)  # a missing file is created
    first.write(snap(1.0))
    first.close()
    path.chmod(0o640)
    second = Recorder.open(str(path), append=True)
    second.write(snap(2.0))
    second.close()
    lines = path.read_text().splitlines()
    assert [loads(line, n) for n, line in enumerate(lines, 1)] == [snap(1.0), snap(2.0)]
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_append_refuses_a_file_that_ends_in_half_a_line(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    text = dumps(snap(1.0)) + "\n" + dumps(snap(2.0))[:20]
    path.write_text(text)
    with pytest.raises(OutputError, match="incomplete line"):
        Recorder.open(str(path), append=True)
    assert path.read_text() == text


def test_a_symlink_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    target.chmod(0o644)
    link = tmp_path / "rec.jsonl"
    link.symlink_to(target)
    for append in (False, True):
        with pytest.raises(OutputError, match="symbolic link"):
            Recorder.open(str(link), append=append)
    assert target.read_text() == "keep me\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_dev_null_is_refused_and_keeps_its_mode() -> None:
    before = os.stat("/dev/null")
    for append in (False, True):
        with pytest.raises(OutputError, match="character device, not a regular file"):
            Recorder.open("/dev/null", append=append)
    after = os.stat("/dev/null")
    assert (after.st_mode, after.st_uid) == (before.st_mode, before.st_uid)


def test_each_snapshot_is_one_line_readable_before_close(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    rec = Recorder.open(str(path))
    rec.write(snap(1.0))
    rec.write(snap(2.0, comm="名前\x1b"))
    # Flushed per line: another reader sees both lines while recording goes on.
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    rec.close()
    assert len(lines) == 2
    assert all(line.endswith("\n") for line in lines)
    assert loads(lines[0]) == snap(1.0)
    assert loads(lines[1], 2) == snap(2.0, comm="名前\x1b")


def test_close_twice_is_fine_and_write_after_close_is_an_error(tmp_path: Path) -> None:
    rec = Recorder.open(str(tmp_path / "rec.jsonl"))
    rec.close()
    rec.close()
    with pytest.raises(OutputError, match="closed"):
        rec.write(snap(1.0))


def test_unwritable_path_is_an_output_error(tmp_path: Path) -> None:
    path = tmp_path / "missing-dir" / "rec.jsonl"
    with pytest.raises(OutputError) as info:
        Recorder.open(str(path))
    assert str(path) in str(info.value)
    assert info.value.exit_code == OutputError.exit_code


# Writes snapshots until the file size limit (a stand-in for a full disk that
# needs no root: the write that crosses the limit is cut short, the next one
# fails with EFBIG), then reports what the recorder raised.
_FILL = """
import resource, signal, sys
from netmon.errors import OutputError
from netmon.model import FlowKey, FlowStat, ProcessStat, Snapshot
from netmon.record import Recorder
from netmon.sources.replay import open_replay_feed

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), int(sys.argv[2])))
key = FlowKey(42, "TCP", "IPv4", 443, "192.0.2.1", "client")
rec = Recorder.open(sys.argv[1])
try:
    for i in range(1000):
        flow = FlowStat(key, "curl", i, i, 1, 1, 1.5, False)
        rec.write(Snapshot(1000.0 + i, 1.0, (flow,), (ProcessStat(42, "curl", i, i, 1.5),)))
except OutputError as exc:
    print(exc, exc.exit_code)
"""


def test_a_full_disk_is_an_output_error_and_the_recording_replays(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    limit = 2000  # bytes: a few lines, then half of one
    result = subprocess.run(
        [sys.executable, "-c", _FILL, str(path), str(limit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{path}: cannot write recording: File too large")
    assert result.stdout.split()[-1] == "9"
    data = path.read_bytes()
    assert len(data) == limit and not data.endswith(b"\n")  # a half line at the end
    whole = data.count(b"\n")
    assert whole >= 2

    warnings: list[str] = []
    feed = open_replay_feed(str(path), speed=1e6, clock=lambda: 0.0, warn=warnings.append)
    played = []
    while (snapshot := feed.poll(1e9)) is not None:
        played.append(snapshot.ts)
    assert played == [1000.0 + i for i in range(whole)]
    assert feed.next_due() is None
    assert len(warnings) == 1 and f"line {whole + 1}: incomplete last line" in warnings[0]
