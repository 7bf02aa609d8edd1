#!/usr/bin/env python3
"""Record examples/sample.jsonl: real traffic from services in real cgroups.

Run as root from the repository (netmon attaches its probes):

    sudo .venv/bin/python examples/record_sample.py [OUTPUT]

What it does:
- makes cgroup v2 directories under the cgroup2 mount, named like a systemd
  unit, a docker scope and a Kubernetes pod, and removes them afterwards;
- starts netmon --json in a private mount namespace whose /etc/hosts names
  loopback aliases (127.0.0.0/8 is all on `lo`) and whose /etc/resolv.conf
  points at 127.0.0.1, so no lookup ever leaves the machine;
- once netmon writes its first snapshot, starts small traffic generators,
  each moved into its cgroup and renamed (prctl PR_SET_NAME) before it sends;
  the peers they talk to are processes of this script outside those cgroups,
  which netmon's --service filter leaves out, as if they ran on other hosts;
- writes OUTPUT (default examples/sample.jsonl) once netmon has written
  SNAPSHOTS snapshots.

Standard library only. The protocol totals in the header stay machine-wide,
so they include whatever else the machine moved while recording.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from benchproc import private_etc  # noqa: E402  (the benches' private /etc)

SNAPSHOTS = 12
INTERVAL_MS = 1000
START_WAIT_S = 120  # compiling the probes takes a few seconds, more on a busy machine

HOSTS = {
    "127.0.0.10": "app.internal",  # where the clients send from
    "127.0.0.20": "db.internal",
    "127.0.0.22": "backup.example.net",
    "127.0.0.23": "metrics.internal",
    "127.0.0.30": "client.example.net",
}

DOCKER_ID = secrets.token_hex(32)
POD_UID = str(uuid.uuid4())
CGROUPS = {
    "nginx": "system.slice/nginx.service",
    "postgres": "system.slice/postgresql.service",
    "statsd": "system.slice/statsd.service",
    "backup": f"system.slice/docker-{DOCKER_ID}.scope",
    "api": f"kubepods/burstable/pod{POD_UID}",
}
SERVICES = ["nginx.service", "postgresql.service", "statsd.service",
            f"docker:{DOCKER_ID[:12]}", f"pod:{POD_UID[:8]}"]  # fmt: skip


@dataclass(frozen=True)
class Talk:
    """One conversation: a client sending `rate` bytes/s in requests of
    `request` bytes, each answered with `reply` bytes, from `start` seconds
    after netmon's first snapshot. `client_cg`/`server_cg` name the cgroup
    (a key of CGROUPS) of each side; None leaves that side outside them."""

    proto: int  # socket.SOCK_STREAM or SOCK_DGRAM
    server: tuple[str, int]
    server_comm: str
    server_cg: str | None
    client_ip: str
    client_comm: str
    client_cg: str | None
    rate: int
    request: int
    reply: int
    start: float = 0.0


KB, MB = 1024, 1024 * 1024
TALKS = [
    # api-worker (a pod) queries postgres (a unit): both sides shown
    Talk(socket.SOCK_STREAM, ("127.0.0.20", 5432), "postgres", "postgres",
         "127.0.0.10", "api-worker", "api", 160 * KB, 2 * KB, 12 * KB),
    # api-worker's metrics over UDP, to statsd (a unit): both sides shown
    Talk(socket.SOCK_DGRAM, ("127.0.0.23", 8125), "statsd", "statsd",
         "127.0.0.10", "api-worker", "api", 6 * KB, 300, 0),
    # nginx serves a client elsewhere
    Talk(socket.SOCK_STREAM, ("127.0.0.10", 8443), "nginx", "nginx",
         "127.0.0.30", "curl", None, 24 * KB, 600, 16 * KB),
    # a backup container uploads at ~20 MB/s: above the 10 MB/s threshold
    Talk(socket.SOCK_STREAM, ("127.0.0.22", 443), "backup-recv", None,
         "127.0.0.10", "backup-upload", "backup", 20 * MB, 64 * KB, 0, start=4.0),
]  # fmt: skip

libc = ctypes.CDLL(None, use_errno=True)
PR_SET_NAME = 15


def set_comm(name: str) -> None:
    if libc.prctl(PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NAME)")


def cgroup2_mount() -> Path:
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] == "cgroup2":
            return Path(fields[1].replace("\\040", " "))
    sys.exit("record_sample: no cgroup v2 hierarchy is mounted (see /proc/mounts)")


@contextlib.contextmanager
def cgroups(root: Path) -> Iterator[None]:
    """The directories of CGROUPS, removed (deepest first) on the way out."""
    made: list[Path] = []
    try:
        for rel in CGROUPS.values():
            path = root
            for part in Path(rel).parts:
                path = path / part
                if not path.exists():
                    path.mkdir()
                    made.append(path)
        yield
    finally:
        for path in reversed(made):
            deadline = time.monotonic() + 10
            while True:
                try:
                    path.rmdir()
                    break
                except OSError as exc:  # EBUSY until the last exited member is gone
                    if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                        print(f"record_sample: could not remove {path}: {exc}", file=sys.stderr)
                        break
                    time.sleep(0.1)


def become(comm: str, cg: str | None, root: Path) -> None:
    """Move the calling process into its cgroup, then rename it: netmon reads
    a process's cgroup when it first moves bytes and when it renames itself."""
    if cg is not None:
        (root / CGROUPS[cg] / "cgroup.procs").write_text(f"{os.getpid()}\n")
    set_comm(comm)


def recv_exactly(sock: socket.socket, n: int) -> bool:
    while n > 0:
        data = sock.recv(min(n, 256 * KB))
        if not data:
            return False
        n -= len(data)
    return True


def serve(talk: Talk, listener: socket.socket) -> None:
    if talk.proto == socket.SOCK_DGRAM:
        while True:
            _, addr = listener.recvfrom(64 * KB)
            if talk.reply:
                listener.sendto(b"r" * talk.reply, addr)
    conn, _ = listener.accept()
    while recv_exactly(conn, talk.request):
        if talk.reply:
            conn.sendall(b"r" * talk.reply)


def client(talk: Talk) -> None:
    sock = socket.socket(socket.AF_INET, talk.proto)
    sock.bind((talk.client_ip, 0))
    sock.connect(talk.server)
    request = b"q" * talk.request
    began = time.monotonic()
    sent = 0
    while True:
        # paced: never more than `rate` bytes/s since the start
        ahead = sent / talk.rate - (time.monotonic() - began)
        if ahead > 0:
            time.sleep(ahead)
        sock.sendall(request)
        sent += talk.request
        if talk.reply and talk.proto == socket.SOCK_STREAM:
            recv_exactly(sock, talk.reply)
        elif talk.reply:
            sock.recv(64 * KB)


def fork(fn: Callable[[], None]) -> int:
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            fn()
        except BaseException:  # a child never returns into the parent's code
            traceback.print_exc()
            code = 1
        finally:
            os._exit(code)
    return pid


def start_talks(root: Path) -> list[int]:
    """Servers listen first (in this process, so nothing races), then each
    side runs in a child of its own, moved and renamed before it sends."""
    pids = []
    by_comm: dict[str, list[Talk]] = {}
    for talk in TALKS:
        listener = socket.socket(socket.AF_INET, talk.proto)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(talk.server)
        if talk.proto == socket.SOCK_STREAM:
            listener.listen(1)

        def server_side(t: Talk = talk, s: socket.socket = listener) -> None:
            become(t.server_comm, t.server_cg, root)
            serve(t, s)

        pids.append(fork(server_side))
        listener.close()
        by_comm.setdefault(talk.client_comm, []).append(talk)
    # one process per client name, one thread per conversation (api-worker
    # has two): its flows share a pid, as a real worker's would
    for comm, talks in by_comm.items():

        def client_side(c: str = comm, ts: list[Talk] = talks) -> None:
            import threading

            become(c, ts[0].client_cg, root)
            began = time.monotonic()
            threads = []
            for t in sorted(ts, key=lambda t: t.start):
                time.sleep(max(0.0, t.start - (time.monotonic() - began)))
                th = threading.Thread(target=client, args=(t,), daemon=True)
                th.start()
                threads.append(th)
            for th in threads:
                th.join()

        pids.append(fork(client_side))
    return pids


def wait_for_first_line(path: Path, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_WAIT_S
    while b"\n" not in path.read_bytes():
        if proc.poll() is not None:
            sys.exit(f"record_sample: netmon exited ({proc.returncode}) before its first snapshot")
        if time.monotonic() > deadline:
            proc.kill()
            sys.exit("record_sample: netmon wrote nothing in time")
        time.sleep(0.05)


def main() -> int:
    if os.geteuid() != 0:
        sys.exit("record_sample: run as root (netmon attaches BPF programs)")
    output = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "examples" / "sample.jsonl"
    root = cgroup2_mount()
    with tempfile.TemporaryDirectory() as tmp, cgroups(root):
        work = Path(tmp)
        os.chmod(work, 0o755)
        out = work / "sample.jsonl"
        services = [arg for name in SERVICES for arg in ("--service", name)]
        hosts = "127.0.0.1 localhost\n" + "".join(f"{ip} {n}\n" for ip, n in HOSTS.items())
        argv = [*private_etc(work, hosts), sys.executable, "-m", "netmon", "--json",
                "--count", str(SNAPSHOTS), "--interval", str(INTERVAL_MS), *services]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with out.open("wb") as sink:
            proc = subprocess.Popen(argv, stdout=sink, env=env)
        pids: list[int] = []
        try:
            wait_for_first_line(out, proc)
            pids = start_talks(root)
            code = proc.wait(timeout=SNAPSHOTS * INTERVAL_MS / 1000 + START_WAIT_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            for pid in pids:
                os.waitpid(pid, 0)
        if code != 0:
            sys.exit(f"record_sample: netmon exited with {code}")
        # Written beside OUTPUT, then renamed over it: created anew (never an
        # existing file or a link followed), readable like the rest of the repo.
        tmp_out = output.with_name(output.name + ".new")
        fd = os.open(tmp_out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(out.read_bytes())
        os.replace(tmp_out, output)
    lines = output.read_text().splitlines()
    print(f"record_sample: wrote {output} ({len(lines)} snapshots, {output.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
