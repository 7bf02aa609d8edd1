from __future__ import annotations

import logging

import pytest

from netmon.errors import NetmonError, ProbeError
from netmon.live_feed import LiveFeed
from netmon.metrics import MetricsEngine

from .helpers import FakeClock, FakeSource, key


def make(
    errors: list[BaseException | None] | None = None, interval: float = 1.0
) -> tuple[LiveFeed, FakeSource, FakeClock]:
    clock = FakeClock()
    source = FakeSource(clock=clock, errors=errors or [])
    engine = MetricsEngine(0.4, 1e12, interval)
    return LiveFeed(source, engine, interval, clock), source, clock


def test_first_poll_is_due_immediately() -> None:
    feed, source, clock = make()
    assert feed.next_due() == clock.now
    snap = feed.poll(clock.now)
    assert snap is not None
    assert source.reads == 1
    assert [f.key for f in snap.flows] == [key()]


def test_polls_before_due_do_not_read() -> None:
    feed, source, clock = make()
    feed.poll(clock.now)
    clock.advance(0.5)
    assert feed.poll(clock.now) is None
    assert source.reads == 1
    assert feed.next_due() == pytest.approx(clock.now + 0.5)


def test_fixed_cadence_and_skipping_missed_slots() -> None:
    feed, _, clock = make()
    start = clock.now
    feed.poll(clock.now)
    assert feed.next_due() == pytest.approx(start + 1.0)
    clock.advance(1.2)  # a little late: the cadence does not drift
    assert feed.poll(clock.now) is not None
    assert feed.next_due() == pytest.approx(start + 2.0)
    clock.advance(5.0)  # far behind: no burst of catch-up polls
    assert feed.poll(clock.now) is not None
    assert feed.next_due() == pytest.approx(clock.now + 1.0)


def test_each_poll_publishes_the_engine_rates() -> None:
    feed, source, clock = make()
    feed.poll(clock.now)
    clock.advance(1.0)
    snap = feed.poll(clock.now)
    assert snap is not None
    assert len(source.published) == 2
    # FakeSource moves 3000 bytes per read
    assert source.published[-1] == {key(): pytest.approx(3000.0)}
    assert snap.flows[0].rate_bps == pytest.approx(3000.0)


def test_a_failed_read_is_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    feed, _, clock = make(errors=[None, OSError(5, "Input/output error")])
    assert feed.poll(clock.now) is not None
    clock.advance(1.0)
    with caplog.at_level(logging.WARNING, logger="netmon"):
        assert feed.poll(clock.now) is None
    assert "Input/output error" in caplog.text
    assert feed.next_due() == pytest.approx(clock.now + 1.0)
    clock.advance(1.0)
    snap = feed.poll(clock.now)
    assert snap is not None
    assert snap.interval_s == pytest.approx(2.0)  # spans the skipped cycle


def test_repeated_read_failures_become_fatal() -> None:
    feed, _, clock = make(errors=[KeyError("gone")] * 5)
    for _ in range(4):
        assert feed.poll(clock.now) is None
        clock.advance(1.0)
    with pytest.raises(NetmonError, match="5 times in a row"):
        feed.poll(clock.now)


def test_netmon_errors_from_the_source_propagate() -> None:
    feed, _, clock = make(errors=[ProbeError("probe detached")])
    with pytest.raises(ProbeError):
        feed.poll(clock.now)


def test_failed_publish_still_returns_the_snapshot(caplog: pytest.LogCaptureFixture) -> None:
    feed, source, clock = make()

    def broken(rates: object) -> None:
        raise OSError("map full")

    source.publish_rates = broken  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="netmon"):
        assert feed.poll(clock.now) is not None
    assert "map full" in caplog.text


def test_flush_reads_off_schedule() -> None:
    feed, source, clock = make()
    feed.poll(clock.now)
    clock.advance(0.25)
    snap = feed.flush(clock.now)
    assert snap is not None
    assert source.reads == 2
    assert snap.interval_s == pytest.approx(0.25)


def test_close_closes_the_source_once_and_ends_the_feed() -> None:
    feed, source, clock = make()
    feed.close()
    feed.close()
    assert source.closed == 1
    assert feed.next_due() is None
    assert feed.poll(clock.now + 10) is None
    assert feed.flush(clock.now) is None
    assert source.reads == 0


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError):
        LiveFeed(FakeSource(), MetricsEngine(0.4, 1.0, 1.0), 0.0)


def test_a_persistent_failure_is_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    feed, source, clock = make()

    def broken(rates: object) -> None:
        raise TypeError("incompatible key type")

    source.publish_rates = broken  # type: ignore[method-assign]
    with caplog.at_level(logging.DEBUG, logger="netmon"):
        for _ in range(4):
            assert feed.poll(clock.now) is not None
            clock.advance(1.0)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "incompatible key type" in warnings[0].getMessage()
    assert sum("incompatible key type" in r.getMessage() for r in caplog.records) == 4
