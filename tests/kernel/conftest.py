"""Fixtures for the kernel accuracy tests: live sources, a veth namespace, helpers.

These tests attach the real probes and need root and bcc. When either is
missing they fail, unless NETMON_SKIP_KERNEL_TESTS=1 is set, in which case
they are skipped (for developers without root).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from .traffic import Child, icmp_ping

HERE = Path(__file__).resolve().parent
MODES = ("socket", "syscalls")
# The shared live sources: both modes, and socket mode once more with its
# counting programs as tracepoint programs, which netmon loads where the
# kernel's raw tracepoint arguments are not the (sk, ret, flags) it expects.
LIVE_SOURCES = (*MODES, "socket-tracepoints")
SKIP_ENV = "NETMON_SKIP_KERNEL_TESTS"


def pytest_configure(config: pytest.Config) -> None:
    # BCC 0.26 warns about str map and file names on every call
    config.addinivalue_line("filterwarnings", "ignore:not a bytes object:DeprecationWarning")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.root)


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "they must run as root (they attach BPF probes and create network namespaces)"
    try:
        import bcc  # noqa: F401
    except ImportError as exc:
        return (
            f"bcc cannot be imported ({exc}); install python3-bpfcc and use a venv"
            " made with --system-site-packages"
        )
    try:
        from netmon.sources import live  # noqa: F401
    except ImportError as exc:
        return f"netmon.sources.live cannot be imported ({exc})"
    for tool in ("ip", "gcc"):
        if shutil.which(tool) is None:
            return f"`{tool}` is missing; install the packages in tests/kernel/APT_PACKAGES"
    return None


def need_kernel(extra: str | None = None) -> None:
    reason = extra or _unavailable()
    if reason is None:
        return
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"kernel tests skipped ({SKIP_ENV}=1): {reason}")
    pytest.fail(f"kernel tests cannot run: {reason}. Set {SKIP_ENV}=1 to skip them.", pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def kernel_ready() -> None:
    need_kernel()


def open_source(mode: str, check_mode: bool = True) -> Any:
    from netmon.sources.live import LiveSource

    if mode == "socket-tracepoints":
        with mock.patch("netmon.sources.live.sock_raw_tracepoints", return_value=False):
            src = LiveSource.open(probes="socket", max_flows=10240)
        if src._bpf.raw_tracepoint_fds:  # the test reads the BPF object: nothing else says
            src.close()
            raise AssertionError("socket-tracepoints: raw tracepoint programs were attached")
        mode = "socket"
    else:
        src = LiveSource.open(probes=mode, max_flows=10240)
    if check_mode and src.mode != mode:
        src.close()
        raise AssertionError(f"asked for probes={mode!r}, got mode {src.mode!r}")
    return src


@pytest.fixture(scope="session", params=LIVE_SOURCES)
def live(request: pytest.FixtureRequest, kernel_ready: None) -> Iterator[Any]:
    """One LiveSource per probe mode for the whole session (opening costs ~1 s)."""
    src = open_source(request.param)
    yield src
    src.close()


# --------------------------------------------------------------------------
# children


@pytest.fixture
def spawn() -> Iterator[Callable[..., Child]]:
    """Start generator children; any still running at teardown are killed."""
    children: list[Child] = []

    def start(comm: str, fn: Callable[..., Any], *args: Any, netns: str | None = None) -> Child:
        child = Child(comm, fn, *args, netns=netns)
        children.append(child)
        return child

    yield start
    for child in children:
        child.kill()


# --------------------------------------------------------------------------
# network namespace with a veth pair


@dataclass(frozen=True)
class Netns:
    name: str
    host_if: str
    ns_if: str
    host_mac: str
    ns_mac: str
    host4: str = "198.18.0.1"
    ns4: str = "198.18.0.2"
    host6: str = "fd00:6e6d::1"
    ns6: str = "fd00:6e6d::2"

    def host(self, family: str) -> str:
        return self.host4 if family == "IPv4" else self.host6

    def peer(self, family: str) -> str:
        return self.ns4 if family == "IPv4" else self.ns6


def _ip(*args: str) -> str:
    out = subprocess.run(["ip", *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout


def _mac(ifname: str, ns: str | None = None) -> str:
    prefix = ["-n", ns] if ns else []
    return str(json.loads(_ip(*prefix, "-j", "link", "show", "dev", ifname))[0]["address"])


def _wait_until(cond: Callable[[], bool], what: str, timeout: float = 10) -> None:
    """Poll an observable condition until it holds, or fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    step = 0.005
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(step)
        step = min(step * 2, 0.2)


def _allow_ping_sockets(ctl: Any) -> None:
    with open("/proc/sys/net/ipv4/ping_group_range", "w") as f:  # this netns's own
        f.write("0 2147483647\n")


@pytest.fixture(scope="session")
def netns(kernel_ready: None) -> Iterator[Netns]:
    tag = secrets.token_hex(3)
    name = f"netmon-test-{tag}"
    host_if, ns_if = f"nmt{tag}h", f"nmt{tag}n"
    try:
        _ip("netns", "add", name)
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", name)
        _ip("addr", "add", "198.18.0.1/24", "dev", host_if)
        _ip("-6", "addr", "add", "fd00:6e6d::1/64", "dev", host_if, "nodad")
        _ip("link", "set", host_if, "up")
        _ip("-n", name, "addr", "add", "198.18.0.2/24", "dev", ns_if)
        _ip("-n", name, "-6", "addr", "add", "fd00:6e6d::2/64", "dev", ns_if, "nodad")
        _ip("-n", name, "link", "set", ns_if, "up")
        _ip("-n", name, "link", "set", "lo", "up")
        # let ping sockets (SOCK_DGRAM ICMP) be used inside the namespace
        Child("nm-netns-setup", _allow_ping_sockets, netns=name).result()

        def both_up() -> bool:
            host = json.loads(_ip("-j", "link", "show", "dev", host_if))[0]
            peer = json.loads(_ip("-n", name, "-j", "link", "show", "dev", ns_if))[0]
            return bool(host["operstate"] == "UP" and peer["operstate"] == "UP")

        _wait_until(both_up, f"veth {host_if}/{ns_if} to come up")
        ns = Netns(name, host_if, ns_if, _mac(host_if), _mac(ns_if, name))
        for addr in (ns.ns4, ns.ns6):  # an echo reply proves the path works
            Child("nm-netns-ready", icmp_ping, addr, "raw", 1, 8).result()
        yield ns
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


# --------------------------------------------------------------------------
# the io_uring helper program


@pytest.fixture(scope="session")
def uring_io(tmp_path_factory: pytest.TempPathFactory, kernel_ready: None) -> Path:
    if not Path("/usr/include/liburing.h").exists():
        need_kernel("liburing.h is missing: install liburing-dev (see tests/kernel/APT_PACKAGES)")
    out = tmp_path_factory.mktemp("uring") / "uring_io"
    r = subprocess.run(
        ["gcc", "-O2", "-Wall", "-o", str(out), str(HERE / "uring_io.c"), "-luring"],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.fail(f"cannot build uring_io.c: {r.stderr}", pytrace=False)
    return out
