"""Ask the kernel program to flush its per-CPU flow slots before a read.

In socket mode each CPU adds the events of its latest flows to slots of its
own and moves them into traffic_map, pid_stats and protocol_totals only now
and then (bpf/netmon.bpf.c, "per-CPU flow slots"). A zero-byte send by
netmon itself is the kernel program's cue to flush the slots of the CPU it
runs on, so netmon sends one from each CPU in turn before it reads the maps.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

ONLINE = Path("/sys/devices/system/cpu/online")


def parse_cpu_list(text: str) -> set[int]:
    """The kernel's CPU list format: "0-3,8,10-11"."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def online_cpus(path: Path = ONLINE) -> set[int]:
    try:
        return parse_cpu_list(path.read_text())
    except (OSError, ValueError):
        return set(range(os.cpu_count() or 1))


class SlotFlusher:
    """Tells the kernel program which process may ask for flushes, and asks."""

    def __init__(self, flusher_table: Any) -> None:
        # The kernel program flushes only for zero-byte sends of this process.
        flusher_table[flusher_table.Key(0)] = flusher_table.Leaf(os.getpid())
        self._cue, self._other_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.warnings: list[str] = []
        allowed = os.sched_getaffinity(0)
        online = online_cpus()
        if not online <= allowed:
            self.warnings.append(
                "netmon may not run on CPU(s) "
                + ",".join(str(cpu) for cpu in sorted(online - allowed))
                + ": what is counted there reaches its tables only with that CPU's later "
                "sends and receives"
            )

    def flush(self) -> None:
        """Flush the slots of every CPU this thread may run on."""
        allowed = os.sched_getaffinity(0)
        try:
            for cpu in sorted(allowed):
                os.sched_setaffinity(0, {cpu})  # returns once this thread runs there
                self._cue.send(b"")
        finally:
            os.sched_setaffinity(0, allowed)

    def close(self) -> None:
        self._cue.close()
        self._other_end.close()
