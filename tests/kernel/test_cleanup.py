"""netmon leaves nothing attached behind, even when it is killed.

Socket mode attaches cgroup programs at the root of the cgroup v2 hierarchy.
They are attached through BPF links, which the kernel detaches when the last
file descriptor of the link is closed: at exit, and at SIGKILL too.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from netmon.sources.bpf_link import cgroup2_mount, cgroup_program_ids

from .test_pipeline import LINE_TIMEOUT_S, _read_line

_BPF_CGROUP_UDP4_RECVMSG = 19
_BPF_CGROUP_INET_SOCK_CREATE = 2


def _attached(attach_type: int) -> set[int]:
    """Ids of the programs attached at the cgroup v2 root for `attach_type`."""
    root = cgroup2_mount()
    assert root is not None, "socket mode needs cgroup v2"
    return cgroup_program_ids(root, attach_type)


def _programs_of(pid: int) -> set[int]:
    """Ids of the BPF programs process `pid` holds open."""
    held = set()
    for info in Path(f"/proc/{pid}/fdinfo").iterdir():
        for line in info.read_text().splitlines():
            if line.startswith("prog_id:"):
                held.add(int(line.split()[1]))
    return held


def test_cgroup_programs_go_away_when_netmon_is_killed() -> None:
    types = (_BPF_CGROUP_UDP4_RECVMSG, _BPF_CGROUP_INET_SOCK_CREATE)
    proc = subprocess.Popen(
        [sys.executable, "-m", "netmon", "--json", "--numeric", "--probes", "socket"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert proc.stdout is not None
        _read_line(proc.stdout, LINE_TIMEOUT_S)  # attached from here on
        mine = _programs_of(proc.pid)
        during = {t: _attached(t) & mine for t in types}
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=LINE_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    after = {t: _attached(t) & mine for t in types}
    # Other netmon instances may come and go meanwhile: only ours are looked at.
    assert all(len(ids) == 1 for ids in during.values()), during
    assert after == {t: set() for t in types}
