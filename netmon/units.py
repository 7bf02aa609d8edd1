"""One unit system everywhere: binary multiples (1 KB = 1024 B), as top does."""

from __future__ import annotations

import math
import re

_UNITS = ("B", "KB", "MB", "GB", "TB", "PB")
_MULTIPLIERS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?(?:/s)?\s*$", re.IGNORECASE)


def format_bytes(value: float) -> str:
    """1536 -> '1.5 KB'; whole bytes below 1 KB -> '512 B'."""
    if value < 1024:
        return f"{int(value)} B"
    exponent = min(int(math.log(value, 1024)), len(_UNITS) - 1)
    scaled = value / 1024**exponent
    if scaled >= 1023.95 and exponent < len(_UNITS) - 1:  # avoid "1024.0 KB"
        exponent += 1
        scaled = value / 1024**exponent
    return f"{scaled:.1f} {_UNITS[exponent]}"


def format_rate(bytes_per_s: float) -> str:
    return format_bytes(bytes_per_s) + "/s"


def parse_rate(text: str) -> float:
    """'10M', '10MB/s', '10 MiB/s' and '10485760' -> 10485760.0.

    Raises ValueError for anything else, including negative numbers."""
    match = _RATE_RE.match(text)
    if not match:
        raise ValueError(f"cannot parse rate {text!r} (examples: 10M, 10MB/s, 10485760)")
    number, prefix = match.groups()
    return float(number) * _MULTIPLIERS[prefix.upper()]
