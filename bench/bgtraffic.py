"""Background loopback traffic for recording detector baselines (bench/detect.py).

A handful of named processes talk to local servers the way ordinary
services do: a steady database client, a bursty cache client, a web
worker making short requests to a few peers, a metrics agent over UDP and
a backup job that moves a few MB/s for a while every couple of minutes.
Rates wander (a random walk with noise), so the detectors see the kind of
variation a real machine has.

    python bench/bgtraffic.py --seconds 420 --seed 1

Runs until --seconds have passed, then stops every process it started.
Only 127.0.0.0/8 is used.
"""

from __future__ import annotations

import argparse
import ctypes
import math
import multiprocessing as mp
import os
import random
import socket
import threading
import time

TCP_PORTS = (18080, 15432, 16379, 19000)
UDP_PORTS = (18125, 15353)
PEERS = tuple(f"127.0.0.{i}" for i in range(2, 7))
CHUNK = 4096


# Every name the processes of this script take (bench/detect.py tells their
# alerts from those of whatever else ran on the machine while recording).
PROCESS_NAMES = frozenset({
    "bg-server", "db-client", "cache-client", "sync-agent", "web-worker", "metrics-agent",
    "resolver", "backup-job",
})  # fmt: skip


def _name(comm: str) -> None:
    """The process name netmon shows (the main thread's comm)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(15, comm.encode()[:15], 0, 0, 0)  # PR_SET_NAME


def _drain(conn: socket.socket) -> None:
    with conn:
        while conn.recv(65536):
            pass


def server(stop_at: float) -> None:
    _name("bg-server")
    socks = []
    for port in TCP_PORTS:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.listen(64)
        socks.append(s)

        def accept(s: socket.socket = s) -> None:
            while True:
                conn, _ = s.accept()
                threading.Thread(target=_drain, args=(conn,), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()
    for port in UDP_PORTS:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", port))

        def drain_udp(u: socket.socket = u) -> None:
            while True:
                u.recv(65536)

        threading.Thread(target=drain_udp, daemon=True).start()
    time.sleep(max(0.0, stop_at - time.time()))


class Pace:
    """Sends `rate` bytes/s in small bursts every 0.1 s."""

    def __init__(self) -> None:
        self.credit = 0.0
        self.last = time.monotonic()

    def due(self, rate: float) -> int:
        now = time.monotonic()
        self.credit += rate * (now - self.last)
        self.last = now
        n = int(self.credit)
        self.credit -= n
        return n


def _send(sock: socket.socket, n: int) -> None:
    data = b"x" * CHUNK
    while n > 0:
        sock.sendall(data[: min(n, CHUNK)])
        n -= CHUNK


def steady(comm: str, port: int, mean: float, wander: float, burst_p: float, seed: int,
           stop_at: float) -> None:  # fmt: skip
    """One persistent connection at a rate that wanders around `mean`,
    with occasional bursts of 2-3x for a few seconds."""
    _name(comm)
    rng = random.Random(seed)
    sock = socket.create_connection(("127.0.0.1", port))
    pace = Pace()
    level, burst_left, burst = 0.0, 0, 1.0
    while time.time() < stop_at:
        level = 0.95 * level + rng.gauss(0, wander)  # log-rate random walk
        if burst_left == 0 and rng.random() < burst_p:
            burst_left, burst = rng.randint(2, 6) * 10, rng.uniform(2.0, 3.0)
        factor = burst if burst_left else 1.0
        burst_left = max(0, burst_left - 1)
        rate = mean * math.exp(level) * factor * rng.uniform(0.7, 1.3)
        _send(sock, pace.due(rate))
        time.sleep(0.1)
    sock.close()


def web_worker(seed: int, stop_at: float) -> None:
    """Short requests to a few peers on 18080 (a new connection each time)."""
    _name("web-worker")
    rng = random.Random(seed)
    while time.time() < stop_at:
        peer = rng.choice(PEERS)
        try:
            with socket.create_connection((peer, 18080)) as s:
                _send(s, rng.randint(1, 50) * 1024)
        except OSError:
            pass
        time.sleep(rng.uniform(0.2, 2.0))


def udp_agent(comm: str, port: int, rate: float, seed: int, stop_at: float) -> None:
    _name(comm)
    rng = random.Random(seed)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    pace = Pace()
    while time.time() < stop_at:
        n = pace.due(rate * rng.uniform(0.5, 1.5))
        while n > 0:
            sock.sendto(b"m" * min(n, 1200), ("127.0.0.1", port))
            n -= 1200
        time.sleep(0.2)


def backup(seed: int, stop_at: float) -> None:
    """Every 100-160 s, 15-30 s at about 5 MB/s to port 19000."""
    _name("backup-job")
    rng = random.Random(seed)
    time.sleep(rng.uniform(20, 60))
    while time.time() < stop_at:
        sock = socket.create_connection(("127.0.0.1", 19000))
        pace = Pace()
        end = min(stop_at, time.time() + rng.uniform(15, 30))
        while time.time() < end:
            _send(sock, pace.due(5 * 1024 * 1024))
            time.sleep(0.1)
        sock.close()
        time.sleep(rng.uniform(100, 160))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=420)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    stop_at = time.time() + args.seconds
    s = args.seed * 1000
    srv = mp.Process(target=server, args=(stop_at + 2,))
    srv.start()
    time.sleep(0.5)
    jobs = [
        mp.Process(target=steady, args=("db-client", 15432, 20e3, 0.05, 0.002, s + 1, stop_at)),
        mp.Process(target=steady, args=("cache-client", 16379, 100e3, 0.08, 0.01, s + 2, stop_at)),
        mp.Process(target=steady, args=("sync-agent", 18080, 5e3, 0.1, 0.005, s + 3, stop_at)),
        mp.Process(target=web_worker, args=(s + 4, stop_at)),
        mp.Process(target=udp_agent, args=("metrics-agent", 18125, 2e3, s + 5, stop_at)),
        mp.Process(target=udp_agent, args=("resolver", 15353, 500.0, s + 6, stop_at)),
        mp.Process(target=backup, args=(s + 7, stop_at)),
    ]
    for j in jobs:
        j.start()
    try:
        for j in jobs:
            j.join(max(0.0, stop_at - time.time()) + 5)
    finally:
        for p in [*jobs, srv]:
            if p.is_alive():
                p.terminate()
            p.join(2)
    os._exit(0)


if __name__ == "__main__":
    main()
