"""The UI on the live source: root, bcc and the real kernel.

Like the kernel tests, this fails when it cannot run, unless
NETMON_SKIP_KERNEL_TESTS=1 is set (then it is skipped).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from netmon.jsonl import read_snapshots

from .ptyterm import Terminal, netmon_argv

pytestmark = pytest.mark.root

SKIP_ENV = "NETMON_SKIP_KERNEL_TESTS"
SIZE = 1024 * 1024  # shown as "1.0 MB"

# Listens, connects to itself over loopback, sends SIZE bytes one way once
# told to, then stays alive until its stdin closes.
GENERATOR = r"""
import socket, sys
size = int(sys.argv[1])
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen()
client = socket.create_connection(srv.getsockname())
conn, _ = srv.accept()
print(srv.getsockname()[1], flush=True)
client.sendall(b"x" * size)
got = 0
while got < size:
    got += len(conn.recv(65536))
print(got, flush=True)
sys.stdin.read()
"""


def _need_live() -> None:
    reason = None
    if os.geteuid() != 0:
        reason = "must run as root (attaches BPF probes)"
    else:
        try:
            import bcc  # noqa: F401
        except ImportError as exc:
            reason = f"bcc cannot be imported ({exc})"
    if reason is None:
        return
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"live UI test skipped ({SKIP_ENV}=1): {reason}")
    pytest.fail(f"live UI test cannot run: {reason}. Set {SKIP_ENV}=1 to skip it.", pytrace=False)


def test_live_ui_shows_a_process_sending_known_bytes_then_quits(tmp_path: Path) -> None:
    _need_live()
    recording = tmp_path / "rec.jsonl"
    argv = netmon_argv("--interval", "250", "--numeric", "--record", str(recording))
    with Terminal(argv, 160, 40) as t:
        # The first frame is painted after the probes are attached.
        t.wait_for(
            lambda t: t.lines()[-1].startswith(("⚠ ALERT", "✓ No anomalies")),
            timeout=120,
            what="netmon to attach and draw",
        )
        gen = subprocess.Popen(
            [sys.executable, "-c", GENERATOR, str(SIZE)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert gen.stdout is not None and gen.stdin is not None
            port = int(gen.stdout.readline())
            assert int(gen.stdout.readline()) == SIZE
            with open(f"/proc/{gen.pid}/comm") as f:
                comm = f.read().strip()

            t.send("c")  # no SERVICE column: the columns below are counted by word
            t.send(f"/{gen.pid}\r")

            def rows_of_generator(t: Terminal) -> list[list[str]]:
                return [
                    line.split() for line in t.lines()[3:-1] if line.split()[:1] == [str(gen.pid)]
                ]

            def shows_both_ends(t: Terminal) -> bool:
                rows = {tuple(r[:5]): r for r in rows_of_generator(t)}
                client = rows.get((str(gen.pid), comm, "TCP", f"{port}/c", "127.0.0.1"))
                server = rows.get((str(gen.pid), comm, "TCP", f"{port}/s", "127.0.0.1"))
                # Columns after REMOTE: SENT (2 words), RECV (2 words), RATE.
                return (
                    client is not None
                    and server is not None
                    and client[5:7] == ["1.0", "MB"]
                    and server[7:9] == ["1.0", "MB"]
                )

            t.wait_for(shows_both_ends, timeout=30, what=f"pid {gen.pid} sending {SIZE} bytes")
        finally:
            if gen.stdin is not None:
                gen.stdin.close()
            gen.wait(10)
        t.send("q")
        assert t.wait_exit(timeout=30) == 0
        flags = t.termios_flags()
        assert flags & termios.ECHO and flags & termios.ICANON
    # What was shown was recorded, privately, in the --json format.
    assert stat.S_IMODE(recording.stat().st_mode) == 0o600
    with recording.open(encoding="utf-8") as f:
        snapshots = list(read_snapshots(f))
    sent = [
        fl.bytes_sent
        for fl in snapshots[-1].flows
        if fl.key.pid == gen.pid and fl.key.role == "client" and fl.key.port == port
    ]
    assert sent == [SIZE]
