"""A flow's peer address as people write it.

An IPv6 socket talking to an IPv4 host (a dual-stack server accepting IPv4
clients, a client connecting to `::ffff:a.b.c.d`) has an IPv4-mapped IPv6
peer. The kernel reports it in the socket's family; netmon shows and writes
it as the IPv4 address with family IPv4, the way the host is known."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

_V4_MAPPED_PREFIX = b"\0" * 10 + b"\xff\xff"


@lru_cache(maxsize=16384)  # peers shared by many flows; each flow is decoded once
def peer_address(family: str, raw: bytes) -> tuple[str, str | None]:
    """(family, address text) of a raw peer address: 4 bytes (or more, the
    rest ignored) for IPv4, 16 for IPv6; all zeros means no peer (None).
    IPv4-mapped IPv6 addresses come back as IPv4."""
    if family == "IPv4":
        raw = raw[:4]
    elif family != "IPv6":
        return family, None
    if not any(raw):
        return family, None
    if family == "IPv6" and raw[:12] == _V4_MAPPED_PREFIX:
        return "IPv4", str(ipaddress.IPv4Address(raw[12:16]))
    return family, str(ipaddress.ip_address(raw))
