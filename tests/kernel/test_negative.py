"""AF_UNIX sockets, pipes and files are not network traffic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .flows import pid_deltas
from .traffic import local_only


def test_unix_sockets_pipes_and_files_never_appear(live: Any, spawn: Any, tmp_path: Path) -> None:
    before = live.read()
    child = spawn("nm-local-only", local_only, str(tmp_path))
    moved = child.result()
    after = live.read()
    assert all(n > 0 for n in moved.values()), f"generator moved nothing somewhere: {moved}"
    flows = pid_deltas(before, after, child.pid)
    assert not flows, f"[{live.mode} mode] local I/O counted as network flows: {flows}"
    proc = after.processes.get(child.pid)
    if proc is not None:
        totals = (proc.bytes_sent, proc.bytes_recv, proc.packets_sent, proc.packets_recv)
        assert totals == (0, 0, 0, 0), f"[{live.mode} mode] local I/O in process totals: {proc}"
