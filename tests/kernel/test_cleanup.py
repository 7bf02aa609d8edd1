"""netmon leaves nothing attached behind, even when it is killed.

Socket mode attaches cgroup programs at the root of the cgroup v2 hierarchy.
They are attached through BPF links, which the kernel detaches when the last
file descriptor of the link is closed: at exit, and at SIGKILL too.
"""

from __future__ import annotations

import ctypes
import os
import platform
import signal
import struct
import subprocess
import sys
from pathlib import Path

from netmon.sources.bpf_link import cgroup2_mount

from .test_pipeline import LINE_TIMEOUT_S, _read_line

_BPF_PROG_QUERY = 16
_BPF_CGROUP_UDP4_RECVMSG = 19
_BPF_CGROUP_INET_SOCK_CREATE = 2


def _attached(attach_type: int) -> int:
    """How many programs are attached at the cgroup v2 root for `attach_type`."""
    root = cgroup2_mount()
    assert root is not None, "socket mode needs cgroup v2"
    nr = {"x86_64": 321, "aarch64": 280}[platform.machine()]
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        # target_fd, attach_type, query_flags, attach_flags, prog_ids (NULL), prog_cnt
        attr = ctypes.create_string_buffer(struct.pack("IIIIQI", fd, attach_type, 0, 0, 0, 0), 64)
        if libc.syscall(nr, _BPF_PROG_QUERY, attr, 64) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        return int(struct.unpack_from("I", attr.raw, 24)[0])
    finally:
        os.close(fd)


def test_cgroup_programs_go_away_when_netmon_is_killed() -> None:
    before = {t: _attached(t) for t in (_BPF_CGROUP_UDP4_RECVMSG, _BPF_CGROUP_INET_SOCK_CREATE)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "netmon", "--json", "--probes", "socket"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert proc.stdout is not None
        _read_line(proc.stdout, LINE_TIMEOUT_S)  # attached from here on
        during = {t: _attached(t) for t in before}
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=LINE_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    after = {t: _attached(t) for t in before}
    assert during == {t: n + 1 for t, n in before.items()}
    assert after == before
