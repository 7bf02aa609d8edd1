"""One unit system everywhere: binary multiples (1 KB = 1024 B), as top does."""

from __future__ import annotations

import math
import re

_UNITS = ("B", "KB", "MB", "GB", "TB", "PB")
_MULTIPLIERS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?(?:/s)?\s*$", re.IGNORECASE)


def format_bytes(value: float) -> str:
    """1536 -> '1.5 KB'; whole bytes below 1 KB -> '512 B'.

    Never raises: NaN shows as '? B', infinities as 'inf B', values beyond
    the largest unit in that unit with an exponent, negative ones with a
    minus sign (none of these come from netmon itself)."""
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        number = math.inf if value > 0 else -math.inf
    if math.isnan(number):
        return "? B"
    if number < 0:
        return "-" + format_bytes(-number)
    if math.isinf(number):
        return "inf B"
    if number < 1024:
        return f"{int(number)} B"
    exponent = min(int(math.log(number, 1024)), len(_UNITS) - 1)
    scaled = number / 1024**exponent
    if scaled >= 1023.95 and exponent < len(_UNITS) - 1:  # avoid "1024.0 KB"
        exponent += 1
        scaled = number / 1024**exponent
    if scaled >= 1e6:  # beyond the last unit: keep it short
        return f"{scaled:.3g} {_UNITS[exponent]}"
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
    value = float(number) * _MULTIPLIERS[prefix.upper()]
    if not math.isfinite(value):  # hundreds of digits
        raise ValueError(f"rate {text!r} is too large")
    return value
