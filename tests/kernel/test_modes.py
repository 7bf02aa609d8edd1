"""Probe mode selection."""

from __future__ import annotations

from pathlib import Path

from .conftest import open_source

SOCK_TRACEPOINTS = Path("/sys/kernel/tracing/events/sock/sock_send_length")


def test_auto_prefers_socket_tracepoints_when_the_kernel_has_them() -> None:
    src = open_source("auto", check_mode=False)
    try:
        expected = "socket" if SOCK_TRACEPOINTS.exists() else "syscalls"
        assert src.mode == expected, f"auto chose {src.mode!r}; expected {expected!r}"
        if src.mode == "syscalls":
            assert any("io_uring" in w for w in src.warnings), src.warnings
    finally:
        src.close()


def test_socket_mode_counts_through_raw_tracepoints_where_the_kernel_allows() -> None:
    from netmon.sources.btf import load_vmlinux_btf
    from netmon.sources.live import sock_raw_tracepoints

    src = open_source("socket")
    try:
        raw = {name.decode() for name in src._bpf.raw_tracepoint_fds}
        perf = {name.decode() for name in src._bpf.tracepoint_fds}
    finally:
        src.close()
    if sock_raw_tracepoints(load_vmlinux_btf()):
        assert raw == {"sock_send_length", "sock_recv_length"}, raw
        assert not perf & {"sock:sock_send_length", "sock:sock_recv_length"}, perf
    else:
        assert {"sock:sock_send_length", "sock:sock_recv_length"} <= perf, perf
