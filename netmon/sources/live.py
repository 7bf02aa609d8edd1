"""The live source: compiles bpf/netmon.bpf.c with BCC, attaches it and reads
its maps. The only module that imports bcc."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import platform
import subprocess
import time
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from netmon.abi import Abi, bpf_dir, load_abi
from netmon.cgroups import CgroupNames
from netmon.config import PROBE_MODES
from netmon.errors import (
    BccMissing,
    KernelHeadersMissing,
    PermissionDenied,
    ProbeError,
    TracefsUnavailable,
)
from netmon.model import (
    COUNT_FIELDS,
    Cgroup,
    FlowKey,
    FlowRates,
    FlowReadings,
    ProcessReadings,
    RawSample,
)
from netmon.peers import peer_address
from netmon.sources.bpf_link import BpfError, cgroup2_mount, link_create
from netmon.sources.btf import BtfError, load_vmlinux_btf
from netmon.sources.idle import IdleRows
from netmon.sources.memory import release_compiler_memory
from netmon.sources.slots import SlotFlusher
from netmon.sources.socket_tables import ephemeral_range, listening_ports, raw_and_icmp_sockets

log = logging.getLogger(__name__)

TRACEFS = Path("/sys/kernel/tracing")

# What each probe mode cannot see; netmon warns about it at start.
BLIND_SPOTS = {
    "socket": [],
    "syscalls": [
        "syscalls mode cannot see io_uring traffic",
        "syscalls mode cannot see preadv2/pwritev2 on sockets",
    ],
}

# Kernel fields whose offsets differ between versions: macro -> (struct, member).
_BTF_OFFSETS = {
    "OFF_TASK_FLAGS": ("task_struct", "flags"),
    "OFF_TASK_FILES": ("task_struct", "files"),
    "OFF_FILES_FDT": ("files_struct", "fdt"),
    "OFF_FDT_MAX_FDS": ("fdtable", "max_fds"),
    "OFF_FDT_FD": ("fdtable", "fd"),
    "OFF_FILE_INODE": ("file", "f_inode"),
    "OFF_FILE_PRIVATE_DATA": ("file", "private_data"),
    "OFF_INODE_MODE": ("inode", "i_mode"),
    "OFF_SOCKET_SK": ("socket", "sk"),
    "OFF_SK_USERLOCKS": ("sock", "sk_userlocks"),
    "OFF_INET_SPORT": ("inet_sock", "inet_sport"),
}

# Socket mode: cgroup programs (function -> BPFAttachType name, program type
# name) that report the peers of unconnected UDP calls, and count the raw and
# ICMP sockets that exist.
CGROUP_PROGRAMS = {
    "udp4_recvmsg_peer": ("CGROUP_UDP4_RECVMSG", "CGROUP_SOCK_ADDR"),
    "udp6_recvmsg_peer": ("CGROUP_UDP6_RECVMSG", "CGROUP_SOCK_ADDR"),
    "raw_socket_created": ("CGROUP_INET_SOCK_CREATE", "CGROUP_SOCK"),
    "raw_socket_released": ("CGROUP_INET_SOCK_RELEASE", "CGROUP_SOCK"),
}

# The counting programs of each mode (function -> tracepoint), attached by
# LiveSource.open once everything they rely on is in place: the listening
# ports that predate netmon, and in socket mode the cgroup programs.
_SYSCALL_PAIRS = ("sendto", "sendmsg", "sendmmsg", "recvfrom", "recvmsg", "recvmmsg",
                  "read", "readv", "write", "writev")  # fmt: skip
COUNTING_PROGRAMS = {
    "socket": {"count_send": "sock:sock_send_length", "count_recv": "sock:sock_recv_length"},
    "syscalls": {
        f"count_{edge}_{call}": f"syscalls:sys_{edge}_{call}"
        for call in _SYSCALL_PAIRS
        for edge in ("enter", "exit")
    },
}

# Socket mode: syscall tracepoints that give the sources of receives on
# unconnected raw and ICMP sockets, attached only while such sockets exist.
RAW_PEER_PROGRAMS = {
    f"raw_{edge}_{call}": f"syscalls:sys_{edge}_{call}"
    for call in ("recvfrom", "recvmsg", "recvmmsg")
    for edge in ("enter", "exit")
}

# Where a send's destination is, in the user registers saved at syscall
# entry (struct pt_regs): the member holding the syscall number, the members
# holding the syscall's 2nd, 3rd and 5th arguments, and the numbers of
# sendto, sendmsg and sendmmsg.
_SYSCALL_REGS = {
    "x86_64": (("orig_ax", "si", "dx", "r8"), (44, 46, 307)),
    "aarch64": (("syscallno", "regs[1]", "regs[2]", "regs[4]"), (206, 211, 269)),
}

_CAP_PERFMON, _CAP_BPF, _CAP_SYS_ADMIN = 38, 39, 21


def _effective_caps() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def check_privileges() -> None:
    caps = _effective_caps()
    has = lambda cap: bool(caps >> cap & 1)  # noqa: E731
    if has(_CAP_SYS_ADMIN) or (has(_CAP_BPF) and has(_CAP_PERFMON)):
        return
    raise PermissionDenied(
        "live capture needs root (or CAP_BPF and CAP_PERFMON) to load the probes: "
        "run netmon with sudo"
    )


def ensure_tracefs() -> None:
    """BCC finds tracepoints through tracefs; mount it if it is missing."""
    if (TRACEFS / "events").is_dir():
        return
    try:
        subprocess.run(
            ["mount", "-t", "tracefs", "tracefs", str(TRACEFS)],
            check=True,
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise TracefsUnavailable(
            f"tracefs is not mounted at {TRACEFS} and mounting it failed ({exc}); "
            "mount it with: mount -t tracefs tracefs /sys/kernel/tracing"
        ) from None
    if not (TRACEFS / "events").is_dir():
        raise TracefsUnavailable(f"tracefs at {TRACEFS} has no events directory")


def check_headers() -> None:
    release = platform.release()
    build = Path("/lib/modules") / release / "build"
    if not (build / "include").is_dir():
        raise KernelHeadersMissing(
            f"kernel headers for {release} not found at {build}: install them with "
            f"'apt-get install linux-headers-{release}' (or run 'make install')"
        )


def import_bcc() -> Any:
    try:
        import bcc
    except ImportError:
        raise BccMissing(
            "the bcc Python module is missing: install it with 'apt-get install python3-bpfcc' "
            "and run netmon with /usr/bin/python3 or a venv made with --system-site-packages"
        ) from None
    if not hasattr(bcc, "BPF"):
        raise BccMissing(
            "the 'bcc' module found is not BCC (is the unrelated PyPI package 'bcc' installed?): "
            "pip uninstall bcc; apt-get install python3-bpfcc"
        )
    return bcc


def program_cflags(mode: str, max_flows: int, have_set_state: bool = True) -> list[str]:
    """Compiler flags carrying the settings and the running kernel's offsets."""
    try:
        btf = load_vmlinux_btf()
        offsets = {macro: btf.offset(s, m) for macro, (s, m) in _BTF_OFFSETS.items()}
        # The program reads sk_type and sk_protocol (adjacent u16s) at once.
        sk_type, sk_protocol = btf.offset("sock", "sk_type"), btf.offset("sock", "sk_protocol")
    except BtfError as exc:
        raise ProbeError(f"cannot read kernel struct offsets from BTF: {exc}") from None
    if abs(sk_type - sk_protocol) != 2:
        raise ProbeError("unsupported struct sock layout: sk_type and sk_protocol not adjacent")
    offsets["OFF_SK_TYPE_PROTOCOL"] = min(sk_type, sk_protocol)
    offsets["OFF_SK_TYPE_INDEX"] = int(sk_type > sk_protocol)
    offsets.update(_syscall_regs(btf))
    flags = [f"-I{bpf_dir()}", f"-DNETMON_MAX_FLOWS={max_flows}"]
    flags.append("-DNETMON_MODE_SOCKET=1" if mode == "socket" else "-DNETMON_MODE_SYSCALLS=1")
    if mode == "socket" and sock_raw_tracepoints(btf):
        flags.append(RAW_TP_FLAG)
    low, high = ephemeral_range()
    flags += [f"-DNETMON_EPHEMERAL_LOW={low}", f"-DNETMON_EPHEMERAL_HIGH={high}"]
    if have_set_state:
        flags.append("-DNETMON_HAVE_SET_STATE=1")
    flags += [f"-D{macro}={value}" for macro, value in offsets.items()]
    return flags


RAW_TP_FLAG = "-DNETMON_SOCK_RAW_TP=1"
# The arguments the counting programs read, in order, when they run as raw
# tracepoint programs (the kernel's call_trace_sock_{send,recv}_length).
SOCK_RAW_TP_ARGS = ["struct sock *", "int", "int"]


def sock_raw_tracepoints(btf: Any) -> bool:
    """Whether the socket-mode counting programs can run as raw tracepoint
    programs: the kernel passes (sk, ret, flags) to both tracepoints.
    Otherwise they are tracepoint programs, which read the same fields from
    the trace-event record, for a little more per event."""
    try:
        return all(
            btf.tracepoint_args(event) == SOCK_RAW_TP_ARGS
            for event in ("sock_send_length", "sock_recv_length")
        )
    except BtfError:
        return False


def _syscall_regs(btf: Any) -> dict[str, int]:
    """Macros that let the program read a send's arguments from pt_regs. On
    an architecture not listed, no syscall number matches: sends on
    unconnected sockets are counted without their peer."""
    names = ("NETMON_REGS_NR", "NETMON_REGS_ARG1", "NETMON_REGS_ARG2", "NETMON_REGS_ARG4")
    numbers = ("NETMON_NR_SENDTO", "NETMON_NR_SENDMSG", "NETMON_NR_SENDMMSG")
    known = _SYSCALL_REGS.get(platform.machine())
    if known is None:
        return {**dict.fromkeys(names, 0), **dict.fromkeys(numbers, 0xFFFFFFFF)}
    members, nrs = known
    out: dict[str, int] = {}
    for macro, member in zip(names, members, strict=True):
        field, _, index = member.partition("[")
        out[macro] = btf.offset("pt_regs", field) + 8 * int(index.rstrip("]") or 0)
    out.update(zip(numbers, nrs, strict=True))
    return out


def render_program(max_flows: int, probes: str) -> str:
    """The C program with its settings, as it would be compiled (no root needed)."""
    mode = "socket" if probes == "auto" else probes
    flags = program_cflags(mode, max_flows)
    source = (bpf_dir() / "netmon.bpf.c").read_text()
    header = (bpf_dir() / "netmon.h").read_text()
    defines = "\n".join(
        "#define " + flag[2:].replace("=", " ", 1) for flag in flags if flag.startswith("-D")
    )
    return f"/* compiled with: {' '.join(flags)} */\n{defines}\n{header}\n{source}"


def _resolve_mode(bcc: Any, probes: str) -> tuple[str, str | None]:
    """The probe mode to use, and why `auto` fell back to syscalls mode."""
    has_socket_tps = all(
        bcc.BPF.tracepoint_exists("sock", name) for name in ("sock_send_length", "sock_recv_length")
    )
    has_cgroup2 = cgroup2_mount() is not None
    if probes == "auto":
        if not has_socket_tps:
            return "syscalls", "this kernel has no sock:sock_send_length tracepoint"
        if not has_cgroup2:
            return "syscalls", "the cgroup v2 hierarchy is not mounted"
        return "socket", None
    if probes == "socket" and not has_socket_tps:
        raise ProbeError(
            "this kernel has no sock:sock_send_length tracepoint: use --probes syscalls"
        )
    if probes == "socket" and not has_cgroup2:
        raise ProbeError(
            "socket mode needs the cgroup v2 hierarchy mounted (for the peers of unconnected "
            "UDP sockets): mount it, or use --probes syscalls"
        )
    return probes, None


def _scalar(value: Any) -> int:
    """BCC hands out plain ints from batch reads and ctypes scalars elsewhere."""
    return int(getattr(value, "value", value))


# -- the per-interval read path ------------------------------------------------


def numpy_dtype(ctype: Any) -> np.dtype[Any]:
    """The numpy layout of a ctypes type BCC built from a map's C key or
    value type, with char arrays as byte strings."""
    dtype: np.dtype[Any] = np.dtype(ctype)
    if dtype.names is None:
        return dtype
    fields = dtype.fields
    assert fields is not None
    formats = []
    for name in dtype.names:
        field = fields[name][0]
        if field.subdtype is not None and field.subdtype[0] == np.dtype("S1"):
            field = np.dtype(f"S{field.itemsize}")
        formats.append(field)
    return np.dtype({"names": list(dtype.names), "formats": formats,
                     "offsets": [fields[n][1] for n in dtype.names],
                     "itemsize": dtype.itemsize})  # fmt: skip


def _lookup_batch(table: Any, keys: Any, values: Any) -> int:
    """Fill `keys` and `values` (ctypes arrays as long as the map) with every
    entry of a hash map, with BPF_MAP_LOOKUP_BATCH; returns how many."""
    from bcc.libbcc import lib

    key_size, value_size = ctypes.sizeof(table.Key), ctypes.sizeof(table.Leaf)
    in_batch, out_batch, count = ctypes.c_uint32(0), ctypes.c_uint32(0), ctypes.c_uint32(0)
    total = 0
    while total < len(keys):
        count.value = len(keys) - total
        res = lib.bpf_lookup_batch(
            table.map_fd,
            ctypes.byref(in_batch) if total else None,
            ctypes.byref(out_batch),
            ctypes.byref(keys, key_size * total),
            ctypes.byref(values, value_size * total),
            ctypes.byref(count),
        )
        err = ctypes.get_errno()
        total += count.value
        if res != 0:
            if err == errno.ENOENT:  # the end of the map
                break
            raise OSError(err, f"BPF_MAP_LOOKUP_BATCH failed: {os.strerror(err)}")
        if count.value == 0:
            break
        in_batch.value = out_batch.value
    return total


def counter_columns(values: np.ndarray, kernel_flag: int) -> tuple[np.ndarray, ...]:
    """Counters (n, 4), names, kernel-thread marks and cgroup ids of a batch
    of `struct traffic_stats` (traffic_map and pid_stats values): the one
    place that knows what a value holds. The maps are per CPU: `values` has
    one column per CPU, whose counters add up; the name, flags and cgroup are
    those of the copy named last (see netmon.h)."""
    if values.ndim == 1:
        values = values[:, np.newaxis]
    counts = np.stack([values[f].sum(axis=1, dtype=np.uint64) for f in COUNT_FIELDS], axis=1)
    named = values[np.arange(len(values)), values["named_ns"].argmax(axis=1)]
    return (counts, named["comm"], (named["flags"] & kernel_flag) != 0,
            named["cgroup_id"].astype(np.uint64))  # fmt: skip


def current_names(
    flow_pids: np.ndarray, flow_comm: np.ndarray, pids: np.ndarray, comm: np.ndarray
) -> np.ndarray:
    """The kernel keeps a process's name current (renames, exec); a flow's
    own name is the one it had when the flow began: show the process's."""
    if not len(pids) or not len(flow_pids):
        return flow_comm
    order = np.argsort(pids)
    at = np.searchsorted(pids[order], flow_pids).clip(max=len(pids) - 1)
    found = pids[order][at] == flow_pids
    names = comm[order][at]
    return np.where(found & (names != b""), names, flow_comm)


# A rate is written back into anomaly_map when it has moved by more than
# 1/PUBLISH_MOVED of the value last written for that flow (integer bytes/s),
# when the flow was never written, or when it was last written
# PUBLISH_EVERY reads ago (so that an entry the LRU map dropped comes back).
PUBLISH_MOVED = 16
PUBLISH_EVERY = 10


class PublishedRates:
    """What was last written into anomaly_map, row by row of the last read."""

    def __init__(self) -> None:
        self._reads = 0
        self._ids: Sequence[Hashable] = []
        self._token: bytes | None = None
        self.value = np.zeros(0, dtype=np.int64)
        self.written_at = np.zeros(0, dtype=np.int64)  # read number, -1: never

    def due(
        self, ids: Callable[[], Sequence[Hashable]], token: bytes | None, rates: np.ndarray
    ) -> np.ndarray:
        """Which of `rates` (int bytes/s per row of a read) to write now.
        `ids` gives the rows' ids; an equal `token` means the same rows as
        last time."""
        self._reads += 1
        if token is None or token != self._token:
            self._align(ids())
            self._token = token
        old = self.value
        moved = np.abs(rates - old) * PUBLISH_MOVED > old
        stale = self._reads - self.written_at >= PUBLISH_EVERY
        due: np.ndarray = (self.written_at < 0) | moved | stale
        return due

    def written(self, rows: np.ndarray, rates: np.ndarray) -> None:
        self.value[rows] = rates[rows]
        self.written_at[rows] = self._reads

    def _align(self, ids: Sequence[Hashable]) -> None:
        """Carry what was written over to the rows of a new read."""
        before = {row_id: n for n, row_id in enumerate(self._ids)}
        at = np.array([before.get(i, -1) for i in ids], dtype=np.intp)
        known = at >= 0
        value = np.zeros(len(ids), dtype=np.int64)
        written_at = np.full(len(ids), -1, dtype=np.int64)
        value[known] = self.value[at[known]]
        written_at[known] = self.written_at[at[known]]
        self._ids, self.value, self.written_at = ids, value, written_at


class LiveSource:
    """Probes attached to the running kernel. Use `LiveSource.open(...)`."""

    def __init__(
        self,
        bpf: Any,
        mode: str,
        abi: Abi,
        clock_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self._bpf = bpf
        self._clock_ns = clock_ns  # CLOCK_MONOTONIC; replaceable in tests
        self.mode = mode
        self.warnings = list(BLIND_SPOTS[mode])
        self._abi = abi
        self._traffic = bpf["traffic_map"]
        self._pids = bpf["pid_stats"]
        self._protocols = bpf["protocol_totals"]
        self._anomaly = bpf["anomaly_map"]
        self._counters = bpf["counters"]
        self._batch = True
        # The per-interval read path: reusable batch buffers, the last read.
        self._raw_batch = True
        self._buffers: dict[str, tuple[Any, Any]] = {}
        self._last_read: tuple[FlowReadings, np.ndarray] | None = None
        self._published = PublishedRates()
        self._closed = False
        self._links: list[int] = []  # cgroup attachments: closing the fd detaches
        self._slots: SlotFlusher | None = None  # socket mode's per-CPU pending counts
        self._exited = bpf["exited_pids"]
        self._removed_flows = 0  # flows deleted by netmon: exited processes, idle
        self._idle: IdleRows | None = None  # None: idle flows stay
        self._lookup_and_delete = True  # BPF_MAP_LOOKUP_AND_DELETE_ELEM works here
        self._raw_sockets_at_start = 0
        self._raw_hooks_attached = False
        self._may_attach = True  # False once netmon has given up its privileges
        self._told_cannot_attach = False
        self._cgroups = CgroupNames(cgroup2_mount())
        self._cgroups_read: tuple[bytes, dict[int, Cgroup]] = (b"", {})  # ids, names
        if self._cgroups.root is None:
            self.warnings.append(
                "no cgroup v2 hierarchy is mounted: flows carry no cgroup or service"
            )

    @classmethod
    def open(
        cls,
        probes: str = "auto",
        max_flows: int | None = None,
        *,
        idle_timeout_s: float | None = None,
        clock_ns: Callable[[], int] = time.monotonic_ns,
    ) -> LiveSource:
        if probes not in PROBE_MODES:
            choices = ", ".join(PROBE_MODES)
            raise ProbeError(f"unknown probe mode {probes!r} (choose from {choices})")
        check_privileges()
        bcc = import_bcc()
        ensure_tracefs()
        check_headers()
        abi = load_abi()
        mode, fallback = _resolve_mode(bcc, probes)
        have_set_state = bool(bcc.BPF.tracepoint_exists("sock", "inet_sock_set_state"))
        flags = program_cflags(mode, max_flows or abi.values["MAX_FLOWS"], have_set_state)
        try:
            bpf = bcc.BPF(src_file=str(bpf_dir() / "netmon.bpf.c"), cflags=flags)
        except Exception as exc:  # BCC raises bare Exception for compile/load/attach failures
            raise ProbeError(f"loading the BPF program failed: {exc}") from None
        source = cls(bpf, mode, abi, clock_ns)
        source.retire_idle_after(idle_timeout_s)
        if fallback is not None:
            source.warnings.insert(0, f"using syscalls probes: {fallback}")
        try:
            source._seed_maps()
            if mode == "socket":
                source._slots = SlotFlusher(bpf["flusher"])
                source.warnings += source._slots.warnings
                source._attach_cgroup_programs(bcc)
            raw = RAW_TP_FLAG in flags
            for fn_name, tracepoint in COUNTING_PROGRAMS[mode].items():
                if raw:
                    bpf.attach_raw_tracepoint(tp=tracepoint.split(":")[1], fn_name=fn_name)
                else:
                    bpf.attach_tracepoint(tp=tracepoint, fn_name=fn_name)
            if mode == "socket":
                # After the cgroup programs that count raw/ICMP sockets as
                # they come and go are attached, so none is missed.
                source._raw_sockets_at_start = raw_and_icmp_sockets()
                source.update_raw_peer_hooks()
        except Exception:
            source.close()
            raise
        release_compiler_memory()
        return source

    def _attach_cgroup_programs(self, bcc: Any) -> None:
        """Attach the cgroup programs at the root of the cgroup v2 hierarchy
        (so: for every process)."""
        root = cgroup2_mount()
        assert root is not None, "checked when the mode was chosen"
        cgroup_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for name, (attach, prog_type) in CGROUP_PROGRAMS.items():
                attach_type = getattr(bcc.BPFAttachType, attach)
                try:
                    fn = self._bpf.load_func(
                        name, getattr(bcc.BPF, prog_type), attach_type=attach_type
                    )
                except Exception as exc:  # BCC raises a bare Exception
                    raise ProbeError(
                        f"loading the cgroup program {name} failed ({exc}): socket mode needs "
                        "CAP_NET_ADMIN besides CAP_BPF and CAP_PERFMON, or use --probes syscalls"
                    ) from None
                try:
                    self._links.append(link_create(fn.fd, cgroup_fd, int(attach_type)))
                except BpfError as exc:
                    raise ProbeError(
                        f"attaching {name} to the cgroup at {root} failed: {exc.strerror}"
                    ) from None
        finally:
            os.close(cgroup_fd)

    def retire_idle_after(self, seconds: float | None) -> None:
        """Remove flows that moved nothing for `seconds` from the kernel's
        tables after a read (their final counts are in that read, and in its
        `retired`); None keeps them until the table is full."""
        self._idle = None if not seconds else IdleRows(max(int(seconds * 1e9), 1))

    @property
    def raw_peer_hooks(self) -> bool:
        """Whether the syscall programs that see the peers of unconnected raw
        and ICMP sockets are attached (socket mode attaches them only while
        such sockets exist; syscalls mode always sees them)."""
        return self.mode == "syscalls" or self._raw_hooks_attached

    def update_raw_peer_hooks(self) -> None:
        """Attach the raw_* programs while raw or ICMP sockets exist, and
        detach them when none do: any syscall tracepoint slows every syscall
        of every process."""
        if self.mode != "socket":
            return
        opened = self._counter("COUNTER_RAW_OPENED")
        closed = self._counter("COUNTER_RAW_CLOSED")
        wanted = self._raw_sockets_at_start + opened - closed > 0
        if wanted == self._raw_hooks_attached:
            return
        if wanted and not self._may_attach:
            if not self._told_cannot_attach:
                self._told_cannot_attach = True
                log.warning(
                    "raw or ICMP sockets exist: the sources of their unconnected receives "
                    "are unknown (remote_ip null) because netmon runs without privileges; "
                    "their bytes are still counted"
                )
            return
        for fn_name, tracepoint in RAW_PEER_PROGRAMS.items():
            if wanted:
                self._bpf.attach_tracepoint(tp=tracepoint, fn_name=fn_name)
            else:
                self._bpf.detach_tracepoint(tp=tracepoint)
        self._raw_hooks_attached = wanted
        log.info("raw/ICMP peer programs %s", "attached" if wanted else "detached")

    def stop_attaching(self) -> None:
        """Called before netmon gives up its privileges. Attaching the raw/ICMP
        peer programs then fails: it loads them (CAP_BPF), opens a perf event
        on each tracepoint (CAP_PERFMON) and reads the tracepoint's id in
        tracefs, which only root may enter (CAP_DAC_READ_SEARCH); see
        bench/privileges.py. Detaching only closes file descriptors: the
        programs are still detached when the last such socket closes, and
        not attached again."""
        self._may_attach = False

    def _seed_maps(self) -> None:
        """Record the listeners that existed before netmon started (the
        kernel tracks later ones)."""
        ports = self._bpf["listen_ports"]
        tcp = self._abi.values["PROTO_TCP"]
        for port, listeners in listening_ports().items():
            ports[ports.Key(port=port, protocol=tcp)] = ports.Leaf(listeners)

    def _items(self, table: Any) -> Iterator[tuple[Any, Any]]:
        if self._batch:
            try:
                return iter(list(table.items_lookup_batch()))
            except Exception as exc:  # older kernels: batch ops unsupported on this map type
                log.info("batch map reads unavailable (%s); using per-key reads", exc)
                self._batch = False
        return iter(list(table.items()))

    def _dump(self, name: str, table: Any) -> tuple[np.ndarray, np.ndarray]:
        """Every key and value of a hash map, as numpy records (copies). The
        values of a per-CPU map come as one row per key, one column per CPU."""
        per_cpu = hasattr(table, "sLeaf")  # BCC's per-CPU tables: Leaf = sLeaf * CPUs
        cpus = int(table.total_cpu) if per_cpu else 1
        key_type = numpy_dtype(table.Key)
        value_type = numpy_dtype(table.sLeaf if per_cpu else table.Leaf)

        def shaped(values: np.ndarray) -> np.ndarray:
            return values.reshape(-1, cpus) if per_cpu else values

        if self._raw_batch:
            buffers = self._buffers.get(name)
            if buffers is None:
                size = table.max_entries
                buffers = self._buffers[name] = ((table.Key * size)(), (table.Leaf * size)())
            try:
                n = _lookup_batch(table, *buffers)
            except Exception as exc:  # older kernels: no batch ops on this map type
                log.info("batch map reads unavailable (%s); using per-key reads", exc)
                self._raw_batch = False
            else:
                return (np.frombuffer(buffers[0], key_type, n).copy(),
                        shaped(np.frombuffer(buffers[1], value_type, n * cpus).copy()))  # fmt: skip
        pairs = list(self._items(table))
        keys = b"".join(bytes(k) for k, _ in pairs)
        values = b"".join(bytes(v) for _, v in pairs)
        return (np.frombuffer(keys, key_type).copy(),
                shaped(np.frombuffer(values, value_type).copy()))  # fmt: skip

    def read(self) -> RawSample:
        self.update_raw_peer_hooks()
        if self._slots is not None:
            self._slots.flush()  # every CPU's pending counts into the maps, before they are read
        monotonic_ns = self._clock_ns()
        wall = time.time()
        # The creation count first: a flow created while the map is being read
        # then shows up as present, never as evicted.
        created = self._counter("COUNTER_FLOWS_CREATED")
        # Exited processes first too: the counts read below are then their last.
        exited = frozenset(_scalar(k) for k in self._exited)
        keys, values = self._dump("traffic_map", self._traffic)
        pid_keys, pid_values = self._dump("pid_stats", self._pids)
        kernel_flag = self._abi.values["FLAG_KERNEL_THREAD"]
        counts, comm, kernel, cgroup = counter_columns(values, kernel_flag)
        pid_counts, pid_comm, pid_kernel, pid_cgroup = counter_columns(pid_values, kernel_flag)
        pids = pid_keys.astype(np.int64)
        raw_keys = keys.view(np.dtype((np.void, keys.dtype.itemsize)))
        retired = self._retire_idle(keys, raw_keys, counts, exited, monotonic_ns)
        flows = FlowReadings(
            ids=raw_keys.tolist,  # bytes of each key, made only if needed
            key_of=self._flow_key,
            counts=counts,
            comm=current_names(keys["pid"].astype(np.int64), comm, pids, pid_comm),
            kernel=kernel,
            rows_token=keys.tobytes(),  # same bytes: same flows in the same order
            cgroup=cgroup,
        )
        self._last_read = (flows, keys)
        processes = ProcessReadings(
            ids=pids.tolist(), counts=pid_counts, comm=pid_comm, kernel=pid_kernel,
            cgroup=pid_cgroup,
        )  # fmt: skip
        cgroups = self._cgroup_names(cgroup, pid_cgroup, pids)
        protocols = self._protocol_totals()
        dropped = self._dropped(created, len(flows))
        self._removed_flows += len(retired)  # present in this read: counted from the next
        if exited:
            self._remove_exited(exited, keys)
        return RawSample(
            monotonic_ns=monotonic_ns,
            wall_time=wall,
            flows=flows,
            processes=processes,
            protocols=protocols,
            dropped=dropped,
            exited=exited,
cgroups=cgroups,
            retired=retired,
        )

    def _cgroup_names(
        self, flow_ids: np.ndarray, pid_ids: np.ndarray, pids: np.ndarray
    ) -> dict[int, Cgroup]:
        """The names of the cgroup ids of a read (the same ids as last time:
        the same names, without sorting them again). A process with an id
        helps name it."""
        token = flow_ids.tobytes() + pid_ids.tobytes()
        if token == self._cgroups_read[0]:
            return self._cgroups_read[1]
        ids = np.unique(np.concatenate([flow_ids, pid_ids])).tolist()
        names = self._cgroups.names(ids, dict(zip(pid_ids.tolist(), pids.tolist(), strict=True)))
        self._cgroups_read = (token, names)
        return names

    def _retire_idle(
        self,
        keys: np.ndarray,
        raw_keys: np.ndarray,
        counts: np.ndarray,
        exited: frozenset[int],
        now_ns: int,
    ) -> frozenset[bytes]:
        """Delete the flows idle for the timeout from the kernel's tables,
        their counts as the deletion found them written into `counts` (a
        byte that landed since the dump is not lost); returns their ids.
        Flows of exited processes are left to _remove_exited. The caller
        adds them to _removed_flows once this read's `dropped` is known."""
        if self._idle is None or not len(keys):
            return frozenset()
        idle = self._idle.idle(raw_keys.tolist, keys.tobytes(), counts, now_ns)
        if exited:
            idle &= ~np.isin(keys["pid"], np.fromiter(exited, dtype=np.int64))
        rows = np.flatnonzero(idle)
        if not len(rows):
            return frozenset()
        ids = raw_keys[rows].tolist()
        kernel_flag = self._abi.values["FLAG_KERNEL_THREAD"]
        for row, raw in zip(rows.tolist(), ids, strict=True):
            final = self._take(self._traffic, raw)
            if final is not None:
                counts[row] = np.maximum(counts[row], counter_columns(final, kernel_flag)[0][0])
            with contextlib.suppress(KeyError):
                del self._anomaly[self._anomaly.Key.from_buffer_copy(raw)]
        self._idle.drop(idle)
        return frozenset(ids)

    def _take(self, table: Any, raw: bytes) -> np.ndarray | None:
        """Delete one entry of a per-CPU hash map and return its value (one
        row, one column per CPU) as the deletion found it, or None if the
        entry is gone already."""
        from bcc.libbcc import lib

        key = table.Key.from_buffer_copy(raw)
        leaf = table.Leaf()
        if self._lookup_and_delete:
            if lib.bpf_lookup_and_delete(table.map_fd, ctypes.byref(key), ctypes.byref(leaf)) == 0:
                return self._per_cpu_row(table, leaf)
            err = ctypes.get_errno()
            if err == errno.ENOENT:
                return None
            log.info("lookup-and-delete unavailable (%s); reading then deleting",
                     os.strerror(err))  # fmt: skip
            self._lookup_and_delete = False
        if lib.bpf_lookup_elem(table.map_fd, ctypes.byref(key), ctypes.byref(leaf)) != 0:
            return None
        lib.bpf_delete_elem(table.map_fd, ctypes.byref(key))
        return self._per_cpu_row(table, leaf)

    @staticmethod
    def _per_cpu_row(table: Any, leaf: Any) -> np.ndarray:
        cpus = int(table.total_cpu)
        values = np.frombuffer(bytes(leaf), numpy_dtype(table.sLeaf), cpus)
        return values.reshape(1, cpus)

    def _remove_exited(self, exited: frozenset[int], keys: np.ndarray) -> None:
        """Delete what the kernel holds for processes that exited, once their
        final counts are read. (Their pids are not reused within an interval
        in practice: pid_max is large and pids are handed out in turn.)"""
        gone = np.isin(keys["pid"], np.fromiter(exited, dtype=np.int64))
        for raw in keys[gone].view(np.dtype((np.void, keys.dtype.itemsize))).tolist():
            for table in (self._traffic, self._anomaly):
                with contextlib.suppress(KeyError):
                    del table[table.Key.from_buffer_copy(raw)]
        self._removed_flows += int(gone.sum())
        for pid in exited:
            for table in (self._pids, self._exited):
                with contextlib.suppress(KeyError):
                    del table[table.Key(pid)]

    def _flow_key(self, raw: bytes) -> FlowKey:
        """The FlowKey of a traffic_map key (its bytes)."""
        raw_key = self._traffic.Key.from_buffer_copy(raw)
        family, remote_ip = peer_address(
            self._abi.name("FAMILY", raw_key.family), bytes(raw_key.remote_ip)
        )
        return FlowKey(
            pid=raw_key.pid,
            protocol=self._abi.name("PROTO", raw_key.protocol),
            family=family,
            port=raw_key.port,
            remote_ip=remote_ip,
            role=self._abi.name("ROLE", raw_key.role),
        )

    def read_published_rates(self) -> dict[FlowKey, int]:
        """What anomaly_map holds now: the rates last written back (bytes/s)."""
        return {self._flow_key(bytes(k)): _scalar(v) for k, v in self._items(self._anomaly)}

    def _protocol_totals(self) -> dict[str, int]:
        """Bytes per protocol name (protocol_totals is per CPU: summed here)."""
        table = self._protocols
        return {
            name: int(table.sum(table.Key(proto_id)).value)
            for proto_id, name in self._abi.names["PROTO"].items()
        }

    def _counter(self, name: str) -> int:
        return _scalar(self._counters[ctypes.c_int(self._abi.values[name])])

    def _dropped(self, created: int, flows_present: int) -> int:
        """Failed inserts plus flows the LRU map evicted to make room, given
        the creation count read before the map (flows netmon removed itself,
        those of exited processes, are not evicted)."""
        evicted = max(0, created - flows_present - self._removed_flows)
        return self._counter("COUNTER_FLOW_DROPS") + evicted

    def publish_rates(self, rates: Mapping[FlowKey, float]) -> None:
        """Write the smoothed rates of the flows of the last read into
        anomaly_map (bytes/s), those that moved (see PUBLISH_MOVED)."""
        if self._last_read is None:
            return
        readings, keys = self._last_read
        if isinstance(rates, FlowRates) and rates.readings is readings:
            values = rates.array
        else:  # rates from elsewhere: match them to the rows by key
            rows = {key: n for n, key in enumerate(readings)}
            values = np.full(len(readings), np.nan)
            for key, rate in rates.items():
                if key in rows:
                    values[rows[key]] = rate
        given = ~np.isnan(values)
        ints = np.where(given, values, 0.0).astype(np.int64)
        due = self._published.due(lambda: readings.ids, readings.rows_token, ints) & given
        rows_due = np.flatnonzero(due)
        if not len(rows_due):
            return
        table = self._anomaly
        # anomaly_map has its own ctypes class for the same C struct: share the bytes.
        key_block = np.ascontiguousarray(keys[rows_due])
        value_block = np.ascontiguousarray(ints[rows_due].astype(np.uint64))
        ckeys = (table.Key * len(rows_due)).from_buffer(key_block)
        cvalues = (table.Leaf * len(rows_due)).from_buffer(value_block)
        try:
            table.items_update_batch(ckeys, cvalues)
        except Exception:
            for key, value in zip(ckeys, cvalues, strict=True):
                table[key] = value
        self._published.written(rows_due, ints)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for fd in self._links:
            os.close(fd)
        self._links.clear()
        if self._slots is not None:
            self._slots.close()
        self._bpf.cleanup()

    def __enter__(self) -> LiveSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["BLIND_SPOTS", "PROBE_MODES", "LiveSource", "render_program"]
