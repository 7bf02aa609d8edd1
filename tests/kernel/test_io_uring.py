"""io_uring: a C program moves data with io_uring requests only.

Socket mode must count it exactly. Syscalls mode cannot see io_uring at all:
there, the source must warn about it, and the peer (plain syscalls) must still
be exact.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from .flows import assert_no_problems, flow_mismatches
from .test_paths import server_endpoint
from .traffic import Ledger, tcp_server, udp_server

CASES = [
    ("tcp", "send", "recv", "lo4"),
    ("tcp", "write", "read", "lo4"),
    ("tcp", "sendmsg", "recvmsg", "lo4"),
    ("tcp", "send", "recv", "veth6"),
    ("udp", "send", "recv", "lo4"),
    ("udp", "write", "read", "lo6"),
    ("udp", "sendmsg", "recvmsg", "lo4"),
    ("udp", "send", "recv", "veth4"),
]


def _chunks(total: int, chunk: int) -> tuple[int, ...]:
    return tuple(min(chunk, total - i) for i in range(0, total, chunk))


@pytest.mark.parametrize(("proto", "send_op", "recv_op", "net"), CASES)
def test_io_uring(
    live: Any,
    spawn: Any,
    uring_io: Path,
    request: pytest.FixtureRequest,
    proto: str,
    send_op: str,
    recv_op: str,
    net: str,
) -> None:
    host, ns = server_endpoint(request, net)
    total, chunk = (200_003, 16384) if proto == "tcp" else (40_000, 3000)
    before = live.read()
    if proto == "tcp":
        server = spawn("nm-uring-peer", tcp_server, host, "send", "recv", total, total, netns=ns)
    else:
        server = spawn("nm-uring-peer", udp_server, host, "sendto", _chunks(total, chunk), netns=ns)
    port = server.recv()
    prog = subprocess.Popen(
        [str(uring_io), proto, host, str(port), send_op, recv_op, str(total), str(chunk)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert prog.stdout is not None and prog.stdin is not None
        assert prog.stdout.readline().strip() == "connected", (
            prog.stderr.read() if prog.stderr else ""
        )
        prog.stdin.write("go\n")
        prog.stdin.flush()
        out, err = prog.communicate(timeout=60)
    finally:
        if prog.poll() is None:
            prog.kill()
            prog.wait()
    assert prog.returncode == 0, f"uring_io failed ({prog.returncode}): {err}"
    sent, psent, recvd, precv = map(int, out.split())
    if proto == "tcp":
        server.send("close")
    server_ledger = server.result()
    after = live.read()

    problems = flow_mismatches(before, after, server.pid, server_ledger, server.comm, "peer")
    if live.mode == "syscalls":
        assert any("io_uring" in w for w in live.warnings), (
            f"syscalls mode does not see io_uring but does not warn about it: {live.warnings}"
        )
    else:
        ledger = Ledger()
        family = "IPv6" if ":" in host else "IPv4"
        t = ledger.at(proto.upper(), family, port, host, "client")
        t.bytes_sent, t.packets_sent, t.bytes_recv, t.packets_recv = sent, psent, recvd, precv
        # io_uring may run a request on one of the process's io-wq worker threads
        comms = {"uring_io", f"iou-wrk-{prog.pid}"[:15]}
        problems += flow_mismatches(before, after, prog.pid, ledger, comms, "io_uring program")
    assert_no_problems(problems, live)
