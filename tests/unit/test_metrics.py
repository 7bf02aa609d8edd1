from __future__ import annotations

import math

import pytest

from netmon.metrics import MetricsEngine
from netmon.model import FlowKey, FlowStat, ProcessStat, Snapshot

from .helpers import WALL0, fc, key, pc, sample

ALPHA = 0.4
K = key()


def engine(
    threshold_bps: float = 1e12, show_kernel: bool = False, forget_after_s: float | None = 300.0
) -> MetricsEngine:
    return MetricsEngine(
        ALPHA, threshold_bps, 1.0, show_kernel=show_kernel, forget_after_s=forget_after_s
    )


def flow(snap: Snapshot, k: FlowKey = K) -> FlowStat:
    matches = [f for f in snap.flows if f.key == k]
    assert len(matches) == 1, snap.flows
    return matches[0]


def proc(snap: Snapshot, pid: int) -> ProcessStat:
    matches = [p for p in snap.processes if p.pid == pid]
    assert len(matches) == 1, snap.processes
    return matches[0]


def weight(dt: float, nominal: float = 1.0, alpha: float = ALPHA) -> float:
    return 1 - float((1 - alpha) ** (dt / nominal))


def test_first_sample_seeds_totals_with_zero_rate() -> None:
    e = engine()
    snap = e.update(sample(5.0, {K: fc(sent=700, recv=300, comm="wget")}))
    f = flow(snap)
    assert (f.bytes_sent, f.bytes_recv, f.comm) == (700, 300, "wget")
    assert f.rate_bps == 0.0
    assert snap.interval_s == 0.0
    assert snap.ts == WALL0 + 5.0


def test_first_measured_interval_is_the_instantaneous_rate() -> None:
    e = engine()
    e.update(sample(0.0, {K: fc(sent=1000)}))
    # 3000 more bytes over 1.5 s real time (nominal is 1 s)
    snap = e.update(sample(1.5, {K: fc(sent=4000)}))
    assert flow(snap).rate_bps == pytest.approx(3000 / 1.5)
    assert snap.interval_s == pytest.approx(1.5)


def test_flow_first_seen_later_reports_its_bytes_over_the_elapsed_time() -> None:
    e = engine()
    e.update(sample(0.0, {}))
    snap = e.update(sample(0.5, {K: fc(sent=600, recv=400)}))
    assert flow(snap).rate_bps == pytest.approx(1000 / 0.5)
    assert flow(snap).bytes_sent == 600


@pytest.mark.parametrize("dt", [1.0, 0.25, 2.7])
def test_ema_step_matches_time_aware_formula(dt: float) -> None:
    e = engine()
    e.update(sample(0.0, {K: fc(sent=0)}))
    e.update(sample(1.0, {K: fc(sent=2000)}))  # seeds the average at 2000 B/s
    snap = e.update(sample(1.0 + dt, {K: fc(sent=2000 + round(8000 * dt))}))
    w = weight(dt)
    assert flow(snap).rate_bps == pytest.approx(w * 8000 + (1 - w) * 2000)


def test_alpha_is_the_weight_of_one_nominal_interval() -> None:
    e = MetricsEngine(0.25, 1e12, 0.5)
    assert e.weight(0.5) == pytest.approx(0.25)
    assert e.weight(1.0) == pytest.approx(1 - 0.75**2)
    assert e.weight(0.0) == 0.0
    assert e.weight(-1.0) == 0.0


def _rate_after(steps: list[float], rate: float) -> float:
    """Flow idle (rate seeded at 0) then moving `rate` B/s for sum(steps) s."""
    e = engine()
    e.update(sample(0.0, {K: fc()}))
    e.update(sample(1.0, {K: fc()}))  # first interval: 0 B/s
    t, total = 1.0, 0.0
    snap = None
    for dt in steps:
        t += dt
        total += rate * dt
        snap = e.update(sample(t, {K: fc(sent=round(total))}))
    assert snap is not None
    return flow(snap).rate_bps


def test_uneven_polling_gives_the_same_average_as_even_polling() -> None:
    even = _rate_after([1.0, 1.0], 10_000)
    uneven = _rate_after([0.3, 0.7, 0.2, 0.8], 10_000)
    assert even > 0
    assert uneven == pytest.approx(even, rel=1e-6)
    assert even == pytest.approx(10_000 * weight(2.0))


def test_constant_rate_stays_constant_whatever_the_spacing() -> None:
    e = engine()
    t, total = 0.0, 0
    e.update(sample(t, {K: fc(sent=total)}))
    for dt in (1.0, 0.1, 3.0, 0.55, 1.0):
        t += dt
        total += round(5000 * dt)
        snap = e.update(sample(t, {K: fc(sent=total)}))
        assert flow(snap).rate_bps == pytest.approx(5000, rel=1e-3)


def test_idle_flow_decays_toward_zero_and_keeps_its_totals() -> None:
    e = engine()
    e.update(sample(0.0, {K: fc(sent=0)}))
    snap = e.update(sample(1.0, {K: fc(sent=10_000, recv=5000)}))
    rate = flow(snap).rate_bps
    assert rate == pytest.approx(15_000)
    t = 1.0
    for dt in (1.0, 0.5, 2.0):
        t += dt
        snap = e.update(sample(t, {}))  # gone from the kernel map
        f = flow(snap)
        assert f.rate_bps == pytest.approx(rate * (1 - ALPHA) ** dt)
        assert (f.bytes_sent, f.bytes_recv) == (10_000, 5000)
        rate = f.rate_bps
    for _ in range(60):
        t += 1.0
        snap = e.update(sample(t, {K: fc(sent=10_000, recv=5000)}))  # present, no traffic
    assert 0 <= flow(snap).rate_bps < 1e-6 * 15_000


def test_an_exited_process_shows_its_final_totals_once_then_goes() -> None:
    dead, alive = key(pid=7), key(pid=8, port=80)
    e = engine()
    e.update(sample(0.0, {dead: fc(sent=100), alive: fc(sent=1)}, {7: pc(7, 100), 8: pc(8, 1)}))
    final = e.update(
        sample(1.0, {dead: fc(sent=900), alive: fc(sent=2)}, {7: pc(7, 900), 8: pc(8, 2)},
               exited=frozenset({7}))
    )  # fmt: skip
    assert flow(final, dead).bytes_sent == 900 and proc(final, 7).bytes_sent == 900
    after = e.update(sample(2.0, {alive: fc(sent=3)}, {8: pc(8, 3)}))
    assert [f.key for f in after.flows] == [alive]
    assert [p.pid for p in after.processes] == [8]
    assert e.flows_held == 1
    # The pid used again later is a new process, counted from its own start.
    again = e.update(sample(3.0, {dead: fc(sent=5), alive: fc(sent=3)}, {7: pc(7, 5)}))
    assert flow(again, dead).bytes_sent == 5


def test_counter_reset_never_goes_negative_and_totals_keep_counting() -> None:
    e = engine()
    e.update(sample(0.0, {K: fc(sent=5000, recv=1000)}, {100: pc(100, 5000, 1000)}))
    e.update(sample(1.0, {K: fc(sent=9000, recv=3000)}, {100: pc(100, 9000, 3000)}))
    # PID reuse / eviction: the kernel restarted the counters
    snap = e.update(sample(2.0, {K: fc(sent=300, recv=100)}, {100: pc(100, 300, 100)}))
    f = flow(snap)
    assert (f.bytes_sent, f.bytes_recv) == (9300, 3100)
    assert f.rate_bps >= 0
    w = weight(1.0)
    assert f.rate_bps == pytest.approx(w * 400 + (1 - w) * 6000)
    p = proc(snap, 100)
    assert (p.bytes_sent, p.bytes_recv) == (9300, 3100)
    snap = e.update(sample(3.0, {K: fc(sent=500, recv=100)}, {100: pc(100, 500, 100)}))
    assert flow(snap).bytes_sent == 9500
    assert proc(snap, 100).bytes_sent == 9500


def test_reset_of_any_field_restarts_the_whole_counter() -> None:
    e = engine()
    e.update(sample(0.0, {K: fc(sent=5000, recv=1000)}))
    # sent restarted, recv happens to be larger than before: both are new values
    snap = e.update(sample(1.0, {K: fc(sent=10, recv=1500)}))
    assert (flow(snap).bytes_sent, flow(snap).bytes_recv) == (5010, 2500)


def test_flow_that_returns_after_eviction_is_counted_from_its_new_value() -> None:
    e = engine()
    e.update(sample(0.0, {K: fc(sent=8000)}))
    e.update(sample(1.0, {}))
    snap = e.update(sample(2.0, {K: fc(sent=200)}))
    assert flow(snap).bytes_sent == 8200


@pytest.mark.parametrize(("rate", "expected"), [(999.0, False), (1000.0, False), (1001.0, True)])
def test_anomaly_is_smoothed_rate_strictly_above_threshold(rate: float, expected: bool) -> None:
    e = engine(threshold_bps=1000.0)
    e.update(sample(0.0, {K: fc()}))
    snap = e.update(sample(2.0, {K: fc(sent=round(rate * 2))}))
    assert flow(snap).anomaly is expected


def test_anomaly_turns_off_as_the_rate_decays() -> None:
    e = engine(threshold_bps=10_000.0)
    e.update(sample(0.0, {K: fc()}))
    snap = e.update(sample(1.0, {K: fc(sent=40_000)}))
    assert flow(snap).anomaly
    flags = []
    for t in range(2, 8):
        snap = e.update(sample(float(t), {K: fc(sent=40_000)}))
        flags.append(flow(snap).anomaly)
        assert flow(snap).anomaly == (flow(snap).rate_bps > 10_000)
    # 40000 * 0.6**n drops below 10000 after three idle seconds
    assert flags == [True, True, False, False, False, False]


def test_anomaly_uses_sent_plus_received() -> None:
    e = engine(threshold_bps=1500.0)
    e.update(sample(0.0, {K: fc()}))
    snap = e.update(sample(1.0, {K: fc(sent=1000, recv=1000)}))
    assert flow(snap).anomaly


def test_zero_elapsed_time_does_not_crash_and_carries_bytes_forward() -> None:
    e = engine()
    e.update(sample(0.0, {K: fc(sent=0)}))
    first = e.update(sample(1.0, {K: fc(sent=1000)}))
    dup = e.update(sample(1.0, {K: fc(sent=3000)}))  # same timestamp
    f = flow(dup)
    assert math.isfinite(f.rate_bps)
    assert f.rate_bps == flow(first).rate_bps
    assert f.bytes_sent == 3000
    assert dup.interval_s == 0.0
    nxt = e.update(sample(2.0, {K: fc(sent=4000)}))
    w = weight(1.0)
    # the 2000 bytes seen at the duplicate belong to the interval (1, 2]
    assert flow(nxt).rate_bps == pytest.approx(w * 3000 + (1 - w) * 1000)


def test_time_going_backwards_keeps_everything_finite() -> None:
    e = engine()
    e.update(sample(10.0, {K: fc(sent=0)}))
    e.update(sample(11.0, {K: fc(sent=1000)}))
    back = e.update(sample(5.0, {K: fc(sent=2000)}))
    assert flow(back).rate_bps == pytest.approx(1000)
    assert flow(back).bytes_sent == 2000
    assert back.interval_s == 0.0
    fwd = e.update(sample(6.0, {K: fc(sent=2500)}))
    w = weight(1.0)
    assert flow(fwd).rate_bps == pytest.approx(w * 500 + (1 - w) * 1000)


def test_kernel_threads_hidden_by_default() -> None:
    kk = key(pid=7, protocol="UDP", port=53)
    s = sample(
        0.0,
        {K: fc(sent=10), kk: fc(sent=20, comm="kworker/0:1", kernel=True)},
        {100: pc(100, 10), 7: pc(7, 20, comm="kworker/0:1", kernel=True)},
    )
    hidden = engine().update(s)
    assert [f.key for f in hidden.flows] == [K]
    assert [p.pid for p in hidden.processes] == [100]

    shown = engine(show_kernel=True).update(s)
    assert {f.key for f in shown.flows} == {K, kk}
    assert flow(shown, kk).kernel is True
    assert flow(shown, K).kernel is False
    assert proc(shown, 7).kernel is True


def test_rates_cover_present_flows_including_kernel_threads() -> None:
    kk = key(pid=7)
    gone = key(pid=8)
    e = engine()
    e.update(sample(0.0, {K: fc(), kk: fc(kernel=True), gone: fc()}))
    e.update(sample(1.0, {K: fc(sent=100), kk: fc(sent=50, kernel=True)}))
    rates = e.rates()
    assert set(rates) == {K, kk}
    assert rates[K] == pytest.approx(100)
    assert rates[kk] == pytest.approx(50)


def test_process_rate_is_the_sum_of_its_flow_rates() -> None:
    k2 = key(port=80)
    other = key(pid=200)
    e = engine()
    e.update(sample(0.0, {K: fc(), k2: fc(), other: fc()}, {100: pc(100), 200: pc(200)}))
    snap = e.update(
        sample(
            1.0,
            {K: fc(sent=100), k2: fc(recv=250), other: fc(sent=7)},
            {100: pc(100, 100, 250), 200: pc(200, 7)},
        )
    )
    assert proc(snap, 100).rate_bps == pytest.approx(350)
    assert proc(snap, 200).rate_bps == pytest.approx(7)
    assert proc(snap, 100).bytes_recv == 250


def test_process_without_pid_stats_entry_still_appears() -> None:
    k2 = key(port=80)
    e = engine()
    e.update(sample(0.0, {K: fc(), k2: fc()}))
    snap = e.update(sample(1.0, {K: fc(sent=100), k2: fc(sent=30, recv=5)}))
    p = proc(snap, 100)
    assert (p.bytes_sent, p.bytes_recv) == (130, 5)
    assert p.rate_bps == pytest.approx(135)


def test_protocols_and_dropped_pass_through() -> None:
    snap = engine().update(sample(0.0, {}, protocols={"TCP": 10, "UDP": 3}, dropped=4))
    assert snap.protocols == {"TCP": 10, "UDP": 3}
    assert snap.dropped == 4


def test_flows_are_ordered_by_rate_and_tolerate_missing_remote_ip() -> None:
    a, b, c = key(port=1, remote_ip=None), key(port=2), key(port=3, remote_ip=None)
    e = engine()
    e.update(sample(0.0, {a: fc(), b: fc(), c: fc()}))
    snap = e.update(sample(1.0, {a: fc(sent=5), b: fc(sent=50), c: fc(sent=5)}))
    assert [f.key for f in snap.flows] == [b, a, c]


def test_long_gone_flows_are_forgotten() -> None:
    e = engine(forget_after_s=10.0)
    e.update(sample(0.0, {K: fc(sent=1)}, {100: pc(100, 1)}))
    assert flow(e.update(sample(10.0, {}))).bytes_sent == 1
    snap = e.update(sample(10.5, {}))
    assert snap.flows == ()
    assert snap.processes == ()


def test_invalid_parameters_are_rejected() -> None:
    with pytest.raises(ValueError):
        MetricsEngine(0.0, 1.0, 1.0)
    with pytest.raises(ValueError):
        MetricsEngine(1.5, 1.0, 1.0)
    with pytest.raises(ValueError):
        MetricsEngine(0.5, 1.0, 0.0)
