"""A Feed over a live source: read, compute metrics, publish rates back."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from netmon.errors import NetmonError
from netmon.metrics import MetricsEngine
from netmon.model import Snapshot
from netmon.sources import Source

log = logging.getLogger(__name__)

# Failed reads in a row before giving up; a transient failure only skips a cycle.
MAX_CONSECUTIVE_FAILURES = 5


class LiveFeed:
    """The first poll is due at once (capture is live from attach), then one
    per interval on a fixed cadence; missed slots are skipped, not bunched."""

    def __init__(
        self,
        source: Source,
        engine: MetricsEngine,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_failures: int = MAX_CONSECUTIVE_FAILURES,
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval must be > 0, got {interval_s}")
        self._source = source
        self._engine = engine
        self._interval = interval_s
        self._due = clock()
        self._closed = False
        self._failures = 0
        self._max_failures = max_failures
        self._reported: set[str] = set()

    def next_due(self) -> float | None:
        return None if self._closed else self._due

    def poll(self, now: float) -> Snapshot | None:
        if self._closed or now < self._due:
            return None
        self._due += self._interval
        if self._due <= now:  # fell behind: resume the cadence from now
            self._due = now + self._interval
        return self._sample()

    def flush(self, now: float) -> Snapshot | None:
        """Read now regardless of the schedule: a last snapshot on shutdown."""
        if self._closed:
            return None
        return self._sample()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._source.close()

    def _sample(self) -> Snapshot | None:
        try:
            sample = self._source.read()
        except NetmonError:
            raise
        except Exception as exc:  # the kernel maps can fail one read; keep going
            self._failures += 1
            self._report("reading the kernel counters failed", exc)
            if self._failures >= self._max_failures:
                raise NetmonError(
                    f"reading the kernel counters failed {self._failures} times in a row: {exc}"
                ) from exc
            return None
        self._failures = 0
        snap = self._engine.update(sample)
        try:
            self._source.publish_rates(self._engine.rates())
        except NetmonError:
            raise
        except Exception as exc:
            self._report("publishing rates to the kernel failed", exc)
        return snap

    def _report(self, what: str, exc: Exception) -> None:
        """Warn once per distinct failure; repeats go to debug so that a
        persistent problem does not flood stderr every interval."""
        message = f"{what}: {type(exc).__name__}: {exc}"
        if message in self._reported:
            log.debug("%s (again)", message)
        else:
            self._reported.add(message)
            log.warning("%s", message, exc_info=exc)
