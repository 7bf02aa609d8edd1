"""Recorder: 0600 file, one flushed JSON line per snapshot, clean errors."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from netmon.errors import RecordingError
from netmon.jsonl import loads
from netmon.model import FlowKey, FlowStat, ProcessStat, Snapshot
from netmon.record import Recorder


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


def test_an_existing_file_is_truncated_and_narrowed_to_0600(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    path.write_text("old content\n")
    path.chmod(0o644)
    Recorder.open(str(path)).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == ""


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
    with pytest.raises(RecordingError, match="closed"):
        rec.write(snap(1.0))


def test_unwritable_path_is_a_recording_error(tmp_path: Path) -> None:
    path = tmp_path / "missing-dir" / "rec.jsonl"
    with pytest.raises(RecordingError) as info:
        Recorder.open(str(path))
    assert str(path) in str(info.value)
    assert info.value.exit_code == RecordingError.exit_code


def test_a_full_disk_is_a_recording_error() -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    rec = Recorder.open("/dev/full")
    with pytest.raises(RecordingError, match="/dev/full"):
        rec.write(snap(1.0))
    with pytest.raises(RecordingError):
        rec.close()  # the unwritten line fails again; the file is closed anyway
    rec.close()
