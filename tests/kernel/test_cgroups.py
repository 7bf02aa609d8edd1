"""Which service or container moved the bytes: generators moved into real
cgroup v2 directories named like a systemd unit, a docker scope and a
Kubernetes pod, each flow checked for its exact bytes and its cgroup."""

from __future__ import annotations

import contextlib
import errno
import secrets
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from netmon.cgroups import service_name
from netmon.metrics import MetricsEngine
from netmon.model import RawSample
from netmon.sources.bpf_link import cgroup2_mount

from .conftest import need_kernel
from .flows import assert_no_problems, flow_mismatches
from .traffic import (
    Child,
    Conn,
    Ledger,
    norm_ip,
    set_comm,
    tcp_client,
    tcp_server,
    tell,
    udp_client,
    udp_server,
)

RMDIR_TIMEOUT_S = 10


@pytest.fixture
def cgroup_root() -> Path:
    root = cgroup2_mount()
    if root is None:
        need_kernel("no cgroup v2 hierarchy is mounted (see /proc/mounts)")
    assert root is not None
    return root


def _own_cgroup(pid: int | str = "self") -> str:
    """A process's cgroup v2 path, from /proc/PID/cgroup ("0::/path")."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return line[3:]
    raise AssertionError(f"/proc/{pid}/cgroup has no cgroup v2 line")


class Cgroups:
    """Directories made under the cgroup2 mount for one test; `remove`
    moves whatever still runs in them back to the test's own cgroup and
    removes them, deepest first."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.made: list[Path] = []
        self.home = root / _own_cgroup().lstrip("/")

    def make(self, rel: str) -> Path:
        path = self.root
        for part in Path(rel).parts:
            path = path / part
            if not path.exists():
                path.mkdir()
                self.made.append(path)
        return path

    def move(self, pid: int, rel: str) -> None:
        (self.root / rel / "cgroup.procs").write_text(f"{pid}\n")

    def remove(self) -> None:
        errors = []
        for path in reversed(self.made):
            for pid in (path / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):  # exited meanwhile
                    (self.home / "cgroup.procs").write_text(f"{pid}\n")
            deadline = time.monotonic() + RMDIR_TIMEOUT_S
            while True:
                try:
                    path.rmdir()
                    break
                except OSError as exc:
                    # EBUSY: a task that exited is not released yet.
                    if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                        errors.append(f"{path}: {exc}")
                        break
                    time.sleep(0.05)
        if errors:
            raise AssertionError("cgroup directories left behind: " + "; ".join(errors))


@pytest.fixture
def cgroups(cgroup_root: Path) -> Iterator[Cgroups]:
    made = Cgroups(cgroup_root)
    try:
        yield made
    finally:
        made.remove()


def after_move(ctl: Conn, fn: Callable[..., Any], *args: Any) -> Any:
    """Run a generator once the test has moved this process (it says go)."""
    ctl.recv()
    return fn(ctl, *args)


def start_in(
    spawn: Callable[..., Child], cgroups: Cgroups, rel: str | None, comm: str,
    fn: Callable[..., Any], *args: Any,
) -> Child:  # fmt: skip
    """A generator child that starts only once moved into `rel` (None: it
    stays in the test's own cgroup)."""
    child = spawn(comm, after_move, fn, *args)
    if rel is not None:
        cgroups.move(child.pid, rel)
    child.send("go")
    return child


def cgroup_of_flows(before: RawSample, after: RawSample, pid: int) -> dict[str, set[str | None]]:
    """Paths and services of the flows `pid` moved (and of its process entry)."""
    paths: set[str | None] = set()
    services: set[str | None] = set()
    for key, counters in after.flows.items():
        if key.pid != pid or counters == before.flows.get(key):
            continue
        named = after.cgroups.get(counters.cgroup_id)
        paths.add(named.path if named else f"unnamed id {counters.cgroup_id}")
        services.add(named.service if named else None)
    proc = after.processes.get(pid)
    named = after.cgroups.get(proc.cgroup_id) if proc is not None else None
    return {
        "flows": paths,
        "services": services,
        "process": {named.path if named else None},
        "process_service": {named.service if named else None},
    }


def test_flows_carry_the_cgroup_of_their_service_container_or_pod(
    live: Any, spawn: Callable[..., Child], cgroups: Cgroups
) -> None:
    tag = f"{live.mode[:4]}{secrets.token_hex(3)}"
    box = secrets.token_hex(32)
    pod = uuid.uuid4()
    slice_ = f"netmon-test-{tag}.slice"
    web = f"{slice_}/netmon-test-{tag}-web.service"
    docker = f"{slice_}/docker-{box}.scope"
    kube = (f"{slice_}/kubepods.slice/kubepods-burstable.slice/"
            f"kubepods-burstable-pod{str(pod).replace('-', '_')}.slice/"
            f"cri-containerd-{secrets.token_hex(32)}.scope")  # fmt: skip
    for rel in (web, docker, kube):
        cgroups.make(rel)
    home = _own_cgroup()
    expect = {  # directory -> (path, service)
        web: (f"/{web}", f"netmon-test-{tag}-web.service"),
        docker: (f"/{docker}", f"docker:{box[:12]}"),
        kube: (f"/{kube}", f"pod:{str(pod)[:8]}"),
        None: (home, service_name(home)),
    }
    host = "127.0.0.1"
    before = live.read()
    # A TCP server in the unit, its client in the container; a UDP client in
    # the pod talking to a server left in the test's own cgroup.
    srv = start_in(spawn, cgroups, web, "nm-cg-web", tcp_server, host, "send", "recv",
                   70_001, 30_003)  # fmt: skip
    port = srv.recv()
    cli = start_in(spawn, cgroups, docker, "nm-cg-box", tcp_client, host, port, "send",
                   "recv", 70_001, 30_003)  # fmt: skip
    sizes = (1, 100, 1400, 9000)
    usrv = start_in(spawn, cgroups, None, "nm-cg-home", udp_server, host, "sendto", sizes)
    uport = usrv.recv()
    ucli = start_in(spawn, cgroups, kube, "nm-cg-pod", udp_client, host, uport, "sendto", sizes)
    ledgers = {cli.pid: cli.result(), ucli.pid: ucli.result(), usrv.pid: usrv.result()}
    srv.send("close")
    ledgers[srv.pid] = srv.result()
    after = live.read()

    placed = {srv: web, cli: docker, ucli: kube, usrv: None}
    problems: list[str] = []
    for child, rel in placed.items():
        problems += flow_mismatches(before, after, child.pid, ledgers[child.pid], child.comm,
                                    child.comm)  # fmt: skip
        path, service = expect[rel]
        got = cgroup_of_flows(before, after, child.pid)
        want = {"flows": {path}, "services": {service}, "process": {path},
                "process_service": {service}}  # fmt: skip
        if got != want:
            problems.append(f"{child.comm} in {rel or home}: expected {want}; got {got}")
    # The kernel's id is the directory's inode.
    for child, rel in placed.items():
        if rel is None:
            continue
        inode = (cgroups.root / rel).stat().st_ino
        ids = {c.cgroup_id for k, c in after.flows.items() if k.pid == child.pid}
        if ids != {inode}:
            problems.append(f"{child.comm}: cgroup ids {ids}, directory inode {inode}")
    assert_no_problems(problems, live)

    # Through the metrics: the snapshot's flows and processes say the same.
    engine = MetricsEngine(alpha=1.0, threshold_bps=1e15, nominal_interval_s=1.0)
    engine.update(before)
    snap = engine.update(after)
    for child, rel in placed.items():
        path, service = expect[rel]
        flows = [f for f in snap.flows if f.key.pid == child.pid]
        assert flows and {(f.cgroup, f.service) for f in flows} == {(path, service)}
        (proc,) = [p for p in snap.processes if p.pid == child.pid]
        assert (proc.cgroup, proc.service) == (path, service)


def mover(ctl: Conn, host: str, port: int, first: int, second: int, new_name: str) -> Any:
    """Send `first` bytes, wait while the test moves us, rename (as exec would),
    send `second` more on a new socket."""
    ledger = Ledger()
    for n, step in ((first, "moved"), (second, None)):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            sent = s.sendto(b"x" * n, (host, port))
            ledger.at("UDP", "IPv4", port, norm_ip(host), "client").sent(sent)
        if step is not None:
            tell(ctl, "sent")
            ctl.recv()
            set_comm(new_name)
    return ledger


def test_a_process_moved_then_renamed_shows_its_new_cgroup(
    live: Any, spawn: Callable[..., Child], cgroups: Cgroups
) -> None:
    """The process entry follows the move at the rename (exec does the same);
    the flow created before the move keeps the cgroup it was created in. The
    cgroup it moved to is named after it exited (a walk of the tree)."""
    tag = f"{live.mode[:4]}{secrets.token_hex(3)}"
    old = cgroups.make(f"netmon-test-{tag}.slice/netmon-test-{tag}-old.service")
    new = cgroups.make(f"netmon-test-{tag}.slice/netmon-test-{tag}-new.service")
    rel_old, rel_new = (str(p.relative_to(cgroups.root)) for p in (old, new))
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # queues, never read
    sink.bind(("127.0.0.1", 0))
    port = sink.getsockname()[1]
    before = live.read()
    child = start_in(spawn, cgroups, rel_old, "nm-cg-mover", mover, "127.0.0.1", port, 1234,
                     4321, "nm-cg-moved")  # fmt: skip
    assert child.recv() == "sent"
    # Read while it runs: its new cgroup is named through /proc/PID/cgroup,
    # without walking the tree.
    walks = live._cgroups.walks
    mid = live.read()
    assert cgroup_of_flows(before, mid, child.pid)["flows"] == {f"/{rel_old}"}
    assert live._cgroups.walks == walks
    cgroups.move(child.pid, rel_new)
    child.send("go on")
    ledger = child.result()
    after = live.read()
    sink.close()
    # One UDP flow (same port and peer): created in the old cgroup.
    comms = {"nm-cg-mover", "nm-cg-moved"}
    assert_no_problems(flow_mismatches(before, after, child.pid, ledger, comms, "mover"), live)
    got = cgroup_of_flows(before, after, child.pid)
    assert got["flows"] == {f"/{rel_old}"}
    assert got["process"] == {f"/{rel_new}"}
    assert after.processes[child.pid].comm == "nm-cg-moved"
