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

_BPF_SYSCALL = {
    "x86_64": 321,
    "aarch64": 280,
    "riscv64": 280,
    "armv7l": 386,
    "ppc64le": 361,
    "s390x": 351,
}
_BPF_PROG_QUERY = 16
_BPF_LINK_CREATE = 28
_ATTR_SIZE = 64  # the kernel accepts a larger, zero-filled bpf_attr


class BpfError(OSError):
    pass


def bpf(cmd: int, attr: ctypes.Array[ctypes.c_char]) -> int:
    """The bpf() system call (which BCC's Python binding does not expose for
    these commands); returns its result, raises BpfError on failure."""
    nr = _BPF_SYSCALL.get(platform.machine())
    if nr is None:
        raise BpfError(0, f"bpf() syscall number unknown on {platform.machine()}")
    libc = ctypes.CDLL(None, use_errno=True)
    result = int(libc.syscall(nr, cmd, attr, len(attr)))
    if result < 0:
        err = ctypes.get_errno()
        raise BpfError(err, os.strerror(err))
    return result


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
    attr = ctypes.create_string_buffer(
        struct.pack("IIII", prog_fd, target_fd, attach_type, 0), _ATTR_SIZE
    )
    return bpf(_BPF_LINK_CREATE, attr)


def cgroup_program_ids(cgroup: Path, attach_type: int) -> set[int]:
    """Ids of the programs attached to `cgroup` for `attach_type`."""
    ids = (ctypes.c_uint32 * 256)()
    fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
    try:
        # target_fd, attach_type, query_flags, attach_flags, prog_ids, prog_cnt
        attr = ctypes.create_string_buffer(
            struct.pack("IIIIQI", fd, attach_type, 0, 0, ctypes.addressof(ids), len(ids)),
            _ATTR_SIZE,
        )
        bpf(_BPF_PROG_QUERY, attr)
    finally:
        os.close(fd)
    count = struct.unpack_from("I", attr.raw, 24)[0]
    return {ids[i] for i in range(count)}
