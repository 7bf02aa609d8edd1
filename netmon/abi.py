"""Constants shared with the kernel program, read from bpf/netmon.h.

The header is the single source of truth; this module parses its
`#define NETMON_<GROUP>_<NAME> <value>  /* name: <shown name> */` lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

_DEFINE_RE = re.compile(
    r"^#define\s+NETMON_(?P<macro>[A-Z0-9_]+)\s+(?P<value>\d+)\s*(?:/\*\s*name:\s*(?P<name>\S+)\s*\*/)?"
)


def bpf_dir() -> Path:
    """The directory holding netmon.bpf.c and netmon.h (packaged as netmon.bpf)."""
    try:
        files = resources.files("netmon.bpf")
    except ModuleNotFoundError:  # running from a source tree without installing
        return Path(__file__).resolve().parent.parent / "bpf"
    if not isinstance(files, Path):  # BCC needs a real directory to compile from
        raise FileNotFoundError(f"netmon.bpf is not a directory on disk: {files}")
    return files


@dataclass(frozen=True)
class Abi:
    values: dict[str, int]  # e.g. "MAX_FLOWS" -> 10240, "PROTO_TCP" -> 1
    names: dict[str, dict[int, str]]  # group -> id -> shown name, e.g. "PROTO" -> {1: "TCP"}

    def name(self, group: str, value: int) -> str:
        return self.names[group].get(value, f"{group.lower()}-{value}")


def parse_header(text: str) -> Abi:
    values: dict[str, int] = {}
    names: dict[str, dict[int, str]] = {}
    for line in text.splitlines():
        match = _DEFINE_RE.match(line.strip())
        if not match:
            continue
        macro, value = match["macro"], int(match["value"])
        values.setdefault(macro, value)  # the first (default) definition wins
        if match["name"]:
            group = macro.split("_", 1)[0]
            names.setdefault(group, {})[value] = match["name"]
    return Abi(values, names)


@cache
def load_abi() -> Abi:
    return parse_header((bpf_dir() / "netmon.h").read_text())
