"""Server ports of sockets that existed before netmon started.

The kernel program learns about servers as they bind() and listen(); for
sockets created earlier it uses this rule, read from the kernel's socket
tables: a TCP port in LISTEN state, or a UDP port bound outside the
ephemeral range (net.ipv4.ip_local_port_range), is a server port.
"""

from __future__ import annotations

from pathlib import Path

_TCP_LISTEN = "0A"


def ephemeral_range(proc: Path = Path("/proc")) -> tuple[int, int]:
    try:
        low, high = (proc / "sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _table_ports(path: Path) -> list[tuple[int, str]]:
    """(local port, state) for every row of a /proc/net/{tcp,udp}[6] table."""
    try:
        lines = path.read_text().splitlines()[1:]
    except OSError:
        return []
    rows = []
    for line in lines:
        fields = line.split()
        if len(fields) > 3:
            rows.append((int(fields[1].rsplit(":", 1)[1], 16), fields[3]))
    return rows


def server_ports(proc: Path = Path("/proc")) -> set[tuple[str, int]]:
    """{("TCP", port), ("UDP", port), ...} that mark the server side."""
    low, high = ephemeral_range(proc)
    ports: set[tuple[str, int]] = set()
    for name in ("tcp", "tcp6"):
        for port, state in _table_ports(proc / "net" / name):
            if state == _TCP_LISTEN:
                ports.add(("TCP", port))
    for name in ("udp", "udp6"):
        for port, _state in _table_ports(proc / "net" / name):
            if port and not low <= port <= high:
                ports.add(("UDP", port))
    return ports
