"""What the kernel's socket tables say about sockets that predate netmon.

The kernel program decides a socket's side from the socket itself: bound to
a port with bind(), or a local port outside the ephemeral range
(net.ipv4.ip_local_port_range), or a local port some socket listens on. It
tracks listeners as they start and stop; the ones already listening when
netmon starts are read here from /proc/net/tcp and /proc/net/tcp6.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

_TCP_LISTEN = "0A"


def ephemeral_range(proc: Path = Path("/proc")) -> tuple[int, int]:
    try:
        low, high = (proc / "sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def listening_ports(proc: Path = Path("/proc")) -> Counter[int]:
    """TCP port -> number of listening sockets on it."""
    ports: Counter[int] = Counter()
    for name in ("tcp", "tcp6"):
        try:
            rows = (proc / "net" / name).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 3 and fields[3] == _TCP_LISTEN:
                ports[int(fields[1].rsplit(":", 1)[1], 16)] += 1
    return ports


def raw_and_icmp_sockets(proc: Path = Path("/proc")) -> int:
    """Raw and ICMP (ping) sockets open now, in every network namespace: the
    tables of one process per namespace are read."""
    seen: set[str] = set()
    total = 0
    for pid_dir in proc.iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            netns = str((pid_dir / "ns" / "net").readlink())
        except OSError:
            continue
        if netns in seen:
            continue
        seen.add(netns)
        for name in ("raw", "raw6", "icmp", "icmp6"):
            try:
                total += len((pid_dir / "net" / name).read_text().splitlines()[1:])
            except OSError:
                continue
    return total
