"""The address of `--serve [ADDR:]PORT` (no dependencies: parsed with the options)."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_HOST = "127.0.0.1"


@dataclass(frozen=True)
class ServeAddress:
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_address(text: str) -> ServeAddress:
    """`PORT`, `HOST:PORT` or `[IPV6]:PORT`; loopback when no host is given.
    Raises ValueError."""
    host, port_text = DEFAULT_HOST, text
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            raise ValueError("expected [ADDRESS]:PORT")
        host, port_text = text[1:end], text[end + 2 :]
    elif ":" in text:
        host, _, port_text = text.rpartition(":")
        if ":" in host:
            raise ValueError("put an IPv6 address in brackets: [::1]:PORT")
    if not host:
        raise ValueError("empty address")
    if not (port_text.isascii() and port_text.isdigit()) or int(port_text) > 65535:
        raise ValueError(f"expected a port from 0 to 65535, got {port_text!r}")
    return ServeAddress(host, int(port_text))
