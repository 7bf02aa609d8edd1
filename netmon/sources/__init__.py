"""Data sources. Only `netmon.sources.live` imports bcc."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from netmon.model import FlowKey, RawSample


class Source(Protocol):
    """Something that yields cumulative kernel-style counters."""

    def read(self) -> RawSample:
        """Read all counters now."""
        ...

    def publish_rates(self, rates: Mapping[FlowKey, float]) -> None:
        """Write smoothed rates back (the live source fills anomaly_map)."""
        ...

    def close(self) -> None:
        """Detach and release everything. Safe to call twice."""
        ...
