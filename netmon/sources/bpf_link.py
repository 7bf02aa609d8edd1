"""Attach BPF programs to a cgroup with BPF links (bpf(BPF_LINK_CREATE)).

A link lives exactly as long as its file descriptor: when netmon exits, even
by SIGKILL, the kernel closes the fd and detaches the program. Programs
attached the older way (BPF_PROG_ATTACH, which is what BCC 0.26 offers) would
stay attached to the cgroup after the process is gone.
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct
from pathlib import Path

_BPF_SYSCALL = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "ppc64le": 361, "s390x": 351}
_BPF_LINK_CREATE = 28
_ATTR_SIZE = 64  # the kernel accepts a larger, zero-filled bpf_attr


class LinkError(OSError):
    pass


def cgroup2_mount(mounts: Path = Path("/proc/mounts")) -> Path | None:
    """Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or
    /sys/fs/cgroup/unified on hybrid systems), or None without one."""
    for line in mounts.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] == "cgroup2":
            return Path(fields[1].replace("\\040", " "))
    return None


def link_create(prog_fd: int, target_fd: int, attach_type: int) -> int:
    """Attach `prog_fd` to `target_fd` (a cgroup directory fd); returns the link fd."""
    nr = _BPF_SYSCALL.get(platform.machine())
    if nr is None:
        raise LinkError(0, f"bpf() syscall number unknown on {platform.machine()}")
    libc = ctypes.CDLL(None, use_errno=True)
    attr = ctypes.create_string_buffer(
        struct.pack("IIII", prog_fd, target_fd, attach_type, 0), _ATTR_SIZE
    )
    fd = int(libc.syscall(nr, _BPF_LINK_CREATE, attr, _ATTR_SIZE))
    if fd < 0:
        err = ctypes.get_errno()
        raise LinkError(err, os.strerror(err))
    return fd
