"""Stable names for what the detectors learn about.

The kernel records the name of the thread that moved the bytes, and
threads rename themselves ("DNS Resolver #12", "worker-3", "kworker/0:1"):
keying a baseline or a set of known peers on that would start from nothing
for every new thread. `process_name` drops such a trailing number, so
that the threads of one program share what is learned about it.
"""

from __future__ import annotations

import re
from functools import lru_cache

_TRAILING_NUMBER = re.compile(r"(?:[\s#:/_.-]*\d+)+$")


@lru_cache(maxsize=8192)
def process_name(comm: str) -> str:
    """`comm` without a trailing thread number; unchanged if nothing is left."""
    stripped = _TRAILING_NUMBER.sub("", comm)
    return stripped or comm
