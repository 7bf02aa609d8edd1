"""Give up root once the probes are attached.

Loading and attaching the BPF programs needs root (or CAP_BPF and
CAP_PERFMON). Reading and updating the maps through the file descriptors
netmon already holds does not, on Linux 6.5 and later (privilege is checked
when a map is created or a program loaded, not on each lookup), nor does
closing those descriptors, which detaches the programs. Older kernels with
kernel.unprivileged_bpf_disabled set refuse every bpf() call without CAP_BPF:
`map_access_needs_cap_bpf` finds out by trying, and netmon then keeps that
one capability. So once the probes are attached and every file named on the
command line is open, netmon switches to an unprivileged user and keeps no
capability (or only CAP_BPF):

- the capability bounding set is emptied, so nothing executed later (an
  --alert-exec program, a set-user-ID binary it might run) can get one back;
- supplementary groups are dropped, then the real, effective and saved group
  and user IDs all become the target user's; leaving uid 0 clears the
  permitted, effective and ambient capability sets;
- no_new_privs is set;
- the result is read back from /proc/self/status and a switch back to root
  must fail, or netmon stops.

The bounding set and no_new_privs are per thread: the drop is made while
netmon has a single thread, before the metrics server and the alert sinks
start theirs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import pwd
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from netmon.errors import NetmonError, UsageError
from netmon.sources.bpf_link import bpf

log = logging.getLogger(__name__)

_PR_SET_KEEPCAPS = 8
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_CAP_VERSION_3 = 0x20080522
_CAP_SETPCAP = 8

CAPABILITY_NAMES = {
    0: "CAP_CHOWN",
    1: "CAP_DAC_OVERRIDE",
    2: "CAP_DAC_READ_SEARCH",
    5: "CAP_KILL",
    6: "CAP_SETGID",
    7: "CAP_SETUID",
    8: "CAP_SETPCAP",
    10: "CAP_NET_BIND_SERVICE",
    12: "CAP_NET_ADMIN",
    21: "CAP_SYS_ADMIN",
    38: "CAP_PERFMON",
    39: "CAP_BPF",
}
CAPABILITY_NUMBERS = {name: number for number, name in CAPABILITY_NAMES.items()}


class PrivilegeError(NetmonError):
    """Dropping privileges failed: netmon does not go on with more than it asked to keep."""

    exit_code = 3


@dataclass(frozen=True)
class Credentials:
    """What /proc/self/status says about this process."""

    uids: tuple[int, int, int, int]  # real, effective, saved, filesystem
    gids: tuple[int, int, int, int]
    groups: tuple[int, ...]
    cap_eff: int
    cap_prm: int
    cap_bnd: int
    cap_amb: int
    no_new_privs: bool


def read_credentials(status: Path = Path("/proc/self/status")) -> Credentials:
    fields: dict[str, str] = {}
    for line in status.read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()

    def ids(name: str) -> tuple[int, int, int, int]:
        a, b, c, d = (int(v) for v in fields[name].split())
        return (a, b, c, d)

    return Credentials(
        uids=ids("Uid"),
        gids=ids("Gid"),
        groups=tuple(int(g) for g in fields.get("Groups", "").split()),
        cap_eff=int(fields["CapEff"], 16),
        cap_prm=int(fields["CapPrm"], 16),
        cap_bnd=int(fields["CapBnd"], 16),
        cap_amb=int(fields.get("CapAmb", "0"), 16),
        no_new_privs=fields.get("NoNewPrivs", "0") == "1",
    )


def caps_mask(caps: Iterable[int]) -> int:
    mask = 0
    for cap in caps:
        mask |= 1 << cap
    return mask


def describe_caps(mask: int) -> str:
    if mask == 0:
        return "no capabilities"
    names = [CAPABILITY_NAMES.get(n, f"cap {n}") for n in range(64) if mask >> n & 1]
    return ", ".join(names)


@dataclass(frozen=True)
class Target:
    """The user to become, looked up while /etc/passwd can still be read."""

    name: str
    uid: int
    gid: int


def lookup_user(name: str) -> Target:
    """The user `name` (or a numeric uid); UsageError if there is none."""
    try:
        entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except (KeyError, OverflowError):
        raise UsageError(f"--user: no such user {name!r}") from None
    return Target(name=entry.pw_name, uid=entry.pw_uid, gid=entry.pw_gid)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def _prctl(libc: ctypes.CDLL, option: int, arg: int) -> None:
    if libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}, {arg}): {os.strerror(err)}")


def _capset(libc: ctypes.CDLL, mask: int) -> None:
    """Set the permitted and effective sets to `mask` (inheritable empty)."""
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in range(2):
        word = (mask >> (32 * i)) & 0xFFFFFFFF
        data[i].effective = data[i].permitted = word
    if libc.capset(ctypes.byref(header), data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"capset: {os.strerror(err)}")


def _last_cap() -> int:
    try:
        return int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        return 63


_BPF_MAP_CREATE, _BPF_MAP_LOOKUP_ELEM = 0, 1
_BPF_MAP_TYPE_ARRAY = 2
CAP_BPF = 39


def map_access_needs_cap_bpf(target: Target) -> bool:
    """Whether this kernel refuses a map lookup, through a descriptor already
    open, to `target` without capabilities. Tried for real: a forked child
    becomes `target` and looks up a one-element map made for the test.
    When in doubt (the test itself fails), True."""
    libc = _libc()
    try:
        create = ctypes.create_string_buffer(struct.pack("IIII", _BPF_MAP_TYPE_ARRAY, 4, 4, 1), 128)
        map_fd = bpf(_BPF_MAP_CREATE, create)
    except OSError:
        return True
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child: no Python-level cleanup
            code = 2
            try:
                os.setgroups([])
                os.setresgid(target.gid, target.gid, target.gid)
                os.setresuid(target.uid, target.uid, target.uid)
                _capset(libc, 0)  # a non-root start keeps its uid: drop its capabilities
                key, value = ctypes.c_uint32(0), ctypes.c_uint32(0)
                lookup = ctypes.create_string_buffer(
                    struct.pack(
                        "IIQQQ", map_fd, 0, ctypes.addressof(key), ctypes.addressof(value), 0
                    ),
                    128,
                )
                code = 0 if bpf(_BPF_MAP_LOOKUP_ELEM, lookup) == 0 else 1
            except OSError:
                code = 1
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status) != 0
    finally:
        os.close(map_fd)


def thread_count() -> int:
    return len(os.listdir("/proc/self/task"))


def drop_privileges(target: Target, keep: Iterable[int] = ()) -> Credentials:
    """Become `target` with only the capabilities in `keep` (normally none).

    Must run while the process has one thread. Raises PrivilegeError if the
    result is not what was asked for."""
    keep_mask = caps_mask(keep)
    if thread_count() != 1:
        raise PrivilegeError(
            f"cannot drop privileges: netmon has {thread_count()} threads "
            "(capability limits are per thread)"
        )
    libc = _libc()
    try:
        if read_credentials().cap_eff >> _CAP_SETPCAP & 1:
            for cap in range(_last_cap() + 1):
                if not keep_mask >> cap & 1:
                    _prctl(libc, _PR_CAPBSET_DROP, cap)
        if keep_mask:
            _prctl(libc, _PR_SET_KEEPCAPS, 1)
        if os.geteuid() == 0 or (target.uid, target.gid) != (os.getuid(), os.getgid()):
            os.setgroups([])
            os.setresgid(target.gid, target.gid, target.gid)
            os.setresuid(target.uid, target.uid, target.uid)
        # Leaving uid 0 already cleared the sets unless KEEPCAPS; a non-root
        # start with file capabilities gets them cleared here too.
        _capset(libc, keep_mask)
        if keep_mask:
            _prctl(libc, _PR_SET_KEEPCAPS, 0)
        _prctl(libc, _PR_SET_NO_NEW_PRIVS, 1)
    except OSError as exc:
        raise PrivilegeError(f"cannot drop privileges to user {target.name}: {exc}") from None
    creds = read_credentials()
    _check(creds, target, keep_mask)
    return creds


def _check(creds: Credentials, target: Target, keep_mask: int) -> None:
    problems = []
    if set(creds.uids) != {target.uid}:
        problems.append(f"uids are {creds.uids}")
    if set(creds.gids) != {target.gid}:
        problems.append(f"gids are {creds.gids}")
    if creds.cap_eff != keep_mask or creds.cap_prm != keep_mask:
        problems.append(f"CapEff {creds.cap_eff:#x}, CapPrm {creds.cap_prm:#x}")
    if creds.cap_amb:
        problems.append(f"CapAmb {creds.cap_amb:#x}")
    if target.uid != 0:
        try:
            os.setuid(0)
        except PermissionError:
            pass
        else:
            problems.append("switching back to root succeeded")
    if problems:
        raise PrivilegeError(
            f"dropping privileges to user {target.name} left more than asked: "
            + "; ".join(problems)
        )


def describe(creds: Credentials, target: Target) -> str:
    """One line for the log."""
    return (
        f"dropped privileges: running as user {target.name} (uid {creds.uids[1]}, "
        f"gid {creds.gids[1]}) with {describe_caps(creds.cap_eff)}"
    )
