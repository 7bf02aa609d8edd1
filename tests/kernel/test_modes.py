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
