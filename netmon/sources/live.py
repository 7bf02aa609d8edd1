"""The live source: compiles bpf/netmon.bpf.c with BCC, attaches it and reads
its maps. The only module that imports bcc."""

from __future__ import annotations

import ctypes
import ipaddress
import logging
import os
import platform
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from netmon.abi import Abi, bpf_dir, load_abi
from netmon.config import PROBE_MODES
from netmon.errors import (
    BccMissing,
    KernelHeadersMissing,
    PermissionDenied,
    ProbeError,
    TracefsUnavailable,
)
from netmon.model import FlowCounters, FlowKey, ProcessCounters, RawSample
from netmon.sources.bpf_link import LinkError, cgroup2_mount, link_create
from netmon.sources.btf import BtfError, load_vmlinux_btf
from netmon.sources.memory import release_compiler_memory
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
    "udp4_sendmsg_peer": ("CGROUP_UDP4_SENDMSG", "CGROUP_SOCK_ADDR"),
    "udp6_sendmsg_peer": ("CGROUP_UDP6_SENDMSG", "CGROUP_SOCK_ADDR"),
    "udp4_recvmsg_peer": ("CGROUP_UDP4_RECVMSG", "CGROUP_SOCK_ADDR"),
    "udp6_recvmsg_peer": ("CGROUP_UDP6_RECVMSG", "CGROUP_SOCK_ADDR"),
    "raw_socket_created": ("CGROUP_INET_SOCK_CREATE", "CGROUP_SOCK"),
    "raw_socket_released": ("CGROUP_INET_SOCK_RELEASE", "CGROUP_SOCK"),
}

# Socket mode: the counting programs, attached after the cgroup programs.
COUNTING_PROGRAMS = {
    "count_send": "sock:sock_send_length",
    "count_recv": "sock:sock_recv_length",
}

# Socket mode: syscall tracepoints that give the peers of unconnected raw and
# ICMP sockets (function name -> tracepoint).
RAW_PEER_PROGRAMS = {
    f"raw_{edge}_{call}": f"syscalls:sys_{edge}_{call}"
    for call, edges in (
        ("sendto", ("enter",)),
        ("sendmsg", ("enter",)),
        ("sendmmsg", ("enter",)),
        ("recvfrom", ("enter", "exit")),
        ("recvmsg", ("enter", "exit")),
        ("recvmmsg", ("enter", "exit")),
    )
    for edge in edges
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
    flags = [f"-I{bpf_dir()}", f"-DNETMON_MAX_FLOWS={max_flows}"]
    flags.append("-DNETMON_MODE_SOCKET=1" if mode == "socket" else "-DNETMON_MODE_SYSCALLS=1")
    low, high = ephemeral_range()
    flags += [f"-DNETMON_EPHEMERAL_LOW={low}", f"-DNETMON_EPHEMERAL_HIGH={high}"]
    if have_set_state:
        flags.append("-DNETMON_HAVE_SET_STATE=1")
    flags += [f"-D{macro}={value}" for macro, value in offsets.items()]
    return flags


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


def _resolve_mode(bcc: Any, probes: str) -> str:
    has_socket_tps = all(
        bcc.BPF.tracepoint_exists("sock", name) for name in ("sock_send_length", "sock_recv_length")
    )
    has_cgroup2 = cgroup2_mount() is not None
    if probes == "auto":
        return "socket" if has_socket_tps and has_cgroup2 else "syscalls"
    if probes == "socket" and not has_socket_tps:
        raise ProbeError(
            "this kernel has no sock:sock_send_length tracepoint: use --probes syscalls"
        )
    if probes == "socket" and not has_cgroup2:
        raise ProbeError(
            "socket mode needs the cgroup v2 hierarchy mounted (for the peers of unconnected "
            "UDP sockets): mount it, or use --probes syscalls"
        )
    return probes


def _format_ip(family: str, raw: bytes) -> str | None:
    if family == "IPv4":
        raw = raw[:4]
    elif family != "IPv6":
        return None
    if not any(raw):
        return None
    return str(ipaddress.ip_address(raw))


def _scalar(value: Any) -> int:
    """BCC hands out plain ints from batch reads and ctypes scalars elsewhere."""
    return int(getattr(value, "value", value))


def _comm(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


class _PerCpu:
    """One entry of a per-CPU traffic_stats map, its CPUs' copies combined:
    counters summed, the name and flags of the copy named last."""

    def __init__(self, copies: Any) -> None:
        self.bytes_sent = sum(c.bytes_sent for c in copies)
        self.bytes_recv = sum(c.bytes_recv for c in copies)
        self.packets_sent = sum(c.packets_sent for c in copies)
        self.packets_recv = sum(c.packets_recv for c in copies)
        named = max(copies, key=lambda c: c.named_ns)
        self.comm = _comm(bytes(named.comm))
        self.flags = named.flags


class LiveSource:
    """Probes attached to the running kernel. Use `LiveSource.open(...)`."""

    def __init__(self, bpf: Any, mode: str, abi: Abi) -> None:
        self._bpf = bpf
        self.mode = mode
        self.warnings = list(BLIND_SPOTS[mode])
        self._abi = abi
        self._traffic = bpf["traffic_map"]
        self._pids = bpf["pid_stats"]
        self._protocols = bpf["protocol_totals"]
        self._anomaly = bpf["anomaly_map"]
        self._counters = bpf["counters"]
        self._raw_keys: dict[FlowKey, Any] = {}
        self._batch = True
        self._closed = False
        self._links: list[int] = []  # cgroup attachments: closing the fd detaches
        self._raw_sockets_at_start = 0
        self._raw_hooks_attached = False
        self._may_attach = True  # False once netmon has given up its privileges
        self._told_cannot_attach = False

    @classmethod
    def open(cls, probes: str = "auto", max_flows: int | None = None) -> LiveSource:
        if probes not in PROBE_MODES:
            choices = ", ".join(PROBE_MODES)
            raise ProbeError(f"unknown probe mode {probes!r} (choose from {choices})")
        check_privileges()
        bcc = import_bcc()
        ensure_tracefs()
        check_headers()
        abi = load_abi()
        mode = _resolve_mode(bcc, probes)
        have_set_state = bool(bcc.BPF.tracepoint_exists("sock", "inet_sock_set_state"))
        flags = program_cflags(mode, max_flows or abi.values["MAX_FLOWS"], have_set_state)
        try:
            bpf = bcc.BPF(src_file=str(bpf_dir() / "netmon.bpf.c"), cflags=flags)
        except Exception as exc:  # BCC raises bare Exception for compile/load/attach failures
            raise ProbeError(f"loading the BPF program failed: {exc}") from None
        source = cls(bpf, mode, abi)
        try:
            source._seed_maps()
            if mode == "socket":
                source._attach_cgroup_programs(bcc)
                for fn_name, tracepoint in COUNTING_PROGRAMS.items():
                    bpf.attach_tracepoint(tp=tracepoint, fn_name=fn_name)
                # After the counting programs are attached, so none is missed.
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
                fn = self._bpf.load_func(name, getattr(bcc.BPF, prog_type), attach_type=attach_type)
                try:
                    self._links.append(link_create(fn.fd, cgroup_fd, int(attach_type)))
                except LinkError as exc:
                    raise ProbeError(
                        f"attaching {name} to the cgroup at {root} failed: {exc.strerror}"
                    ) from None
        finally:
            os.close(cgroup_fd)

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
                    "raw or ICMP sockets exist: the peers of their unconnected sends and "
                    "receives are unknown (remote_ip null) because netmon runs without "
                    "privileges; their bytes are still counted"
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

    def read(self) -> RawSample:
        self.update_raw_peer_hooks()
        monotonic_ns = time.monotonic_ns()
        wall = time.time()
        # The creation count first: a flow created while the map is being read
        # then shows up as present, never as evicted.
        created = self._counter("COUNTER_FLOWS_CREATED")
        flows: dict[FlowKey, FlowCounters] = {}
        raw_keys: dict[FlowKey, Any] = {}
        kernel_flag = self._abi.values["FLAG_KERNEL_THREAD"]
        for raw_key, copies in self._items(self._traffic):
            key = self._flow_key(raw_key)
            st = _PerCpu(copies)
            flows[key] = FlowCounters(
                bytes_sent=st.bytes_sent,
                bytes_recv=st.bytes_recv,
                packets_sent=st.packets_sent,
                packets_recv=st.packets_recv,
                comm=st.comm,
                kernel=bool(st.flags & kernel_flag),
            )
            raw_keys[key] = raw_key
        self._raw_keys = raw_keys
        processes = {
            _scalar(raw_pid): ProcessCounters(
                pid=_scalar(raw_pid),
                comm=st.comm,
                bytes_sent=st.bytes_sent,
                bytes_recv=st.bytes_recv,
                packets_sent=st.packets_sent,
                packets_recv=st.packets_recv,
                kernel=bool(st.flags & kernel_flag),
            )
            for raw_pid, st in ((p, _PerCpu(c)) for p, c in self._items(self._pids))
        }
        # The kernel keeps a process's name current (renames, exec); a flow's
        # own name is the one it had when the flow began.
        for key, counters in flows.items():
            process = processes.get(key.pid)
            if process is not None and process.comm and process.comm != counters.comm:
                flows[key] = replace(counters, comm=process.comm)
        protocols = self._protocol_totals()
        return RawSample(
            monotonic_ns=monotonic_ns,
            wall_time=wall,
            flows=flows,
            processes=processes,
            protocols=protocols,
            dropped=self._dropped(created, len(flows)),
        )

    def _flow_key(self, raw_key: Any) -> FlowKey:
        family = self._abi.name("FAMILY", raw_key.family)
        return FlowKey(
            pid=raw_key.pid,
            protocol=self._abi.name("PROTO", raw_key.protocol),
            family=family,
            port=raw_key.port,
            remote_ip=_format_ip(family, bytes(raw_key.remote_ip)),
            role=self._abi.name("ROLE", raw_key.role),
        )

    def read_published_rates(self) -> dict[FlowKey, int]:
        """What anomaly_map holds now: the rates last written back (bytes/s)."""
        return {self._flow_key(k): _scalar(v) for k, v in self._items(self._anomaly)}

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
        the creation count read before the map."""
        evicted = max(0, created - flows_present)
        return self._counter("COUNTER_FLOW_DROPS") + evicted

    def publish_rates(self, rates: Mapping[FlowKey, float]) -> None:
        """Write the smoothed rates into anomaly_map (bytes/s)."""
        pairs = [(self._raw_keys[k], int(r)) for k, r in rates.items() if k in self._raw_keys]
        if not pairs:
            return
        table = self._anomaly
        # anomaly_map has its own ctypes class for the same C struct: copy the bytes.
        keys = (table.Key * len(pairs))(*(table.Key.from_buffer_copy(k) for k, _ in pairs))
        values = (table.Leaf * len(pairs))(*(v for _, v in pairs))
        try:
            table.items_update_batch(keys, values)
        except Exception:
            for key, value in zip(keys, values, strict=True):
                table[key] = value

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for fd in self._links:
            os.close(fd)
        self._links.clear()
        self._bpf.cleanup()

    def __enter__(self) -> LiveSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["BLIND_SPOTS", "PROBE_MODES", "LiveSource", "render_program"]
