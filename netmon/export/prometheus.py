"""Prometheus metrics: an exporter fed once per interval, a collector for scrapes.

The main loop folds each snapshot into the exporter, which then swaps in a
new immutable `ExportState`. Scrapes run in the HTTP server's threads: the
collector reads the state reference once and builds the metric families from
that object only, never from the BPF maps or the metrics engine, so a scrape
sees one consistent interval and never slows the capture.

What is exported follows Prometheus practice: base units, counters named
`_total` that only grow, send and receive as separate metrics, no rates (PromQL
computes them), no pid, IP or host label (the host is the scrape target), and
a bounded number of process label values (see netmon.export.traffic).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from netmon.export.snapshot_view import SnapshotView
from netmon.export.traffic import (
    DEFAULT_IDLE_S,
    DEFAULT_MAX_NAMES,
    MonotonicTotal,
    TrafficBook,
    TrafficRow,
)


@dataclass(frozen=True)
class AlertCounts:
    """What the alert path has done so far, by detector and by sink."""

    firing: Mapping[str, int] = field(default_factory=dict)  # detector -> firing now
    raised: Mapping[str, int] = field(default_factory=dict)  # detector -> alerts raised
    undelivered: Mapping[str, int] = field(default_factory=dict)  # sink -> events lost
    suppressed: Mapping[str, int] = field(default_factory=dict)  # sink -> rate limited


@dataclass(frozen=True)
class ExportState:
    """Everything one scrape shows; never changed once published."""

    snapshot_ts: float  # unix seconds of the snapshot
    published_at: float  # the exporter's clock (monotonic) when it was swapped in
    traffic: tuple[TrafficRow, ...]
    protocols: tuple[tuple[str, int], ...]
    flows: int
    processes: int
    anomalous_flows: int
    dropped: int
    alerts: AlertCounts


class Exporter:
    """Turns snapshots into the next ExportState."""

    def __init__(
        self,
        *,
        version: str,
        mode: str,
        max_names: int = DEFAULT_MAX_NAMES,
        idle_s: float = DEFAULT_IDLE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.version = version
        self.mode = mode
        self.clock = clock
        self.book = TrafficBook(max_names, idle_s)
        self._protocols: dict[str, MonotonicTotal] = {}
        self._dropped = MonotonicTotal()
        self.state: ExportState | None = None  # read by scrapes: replaced, never mutated

    def update(self, view: SnapshotView, alerts: AlertCounts | None = None) -> ExportState:
        self.book.update(view.flow_columns(), view.ts)
        for name, value in view.protocol_totals().items():
            self._protocols.setdefault(name, MonotonicTotal()).update(value)
        state = ExportState(
            snapshot_ts=view.ts,
            published_at=self.clock(),
            traffic=tuple(self.book.rows()),
            protocols=tuple((n, t.total) for n, t in sorted(self._protocols.items())),
            flows=view.flow_total,
            processes=view.process_total,
            anomalous_flows=view.anomalous_flows(),
            dropped=self._dropped.update(view.dropped),
            alerts=alerts or AlertCounts(),
        )
        self.state = state
        return state


_TRAFFIC = (
    ("netmon_process_transmit_bytes", "Bytes sent by processes of this name, by protocol", 0),
    ("netmon_process_receive_bytes", "Bytes received by processes of this name, by protocol", 1),
    ("netmon_process_transmit_packets", "Messages sent by processes of this name", 2),
    ("netmon_process_receive_packets", "Messages received by processes of this name", 3),
)
_NAMES_NOTE = ' (the busiest names; the rest as process="other")'


class NetmonCollector(Collector):
    """Builds the metric families from the exporter's current state."""

    def __init__(self, exporter: Exporter) -> None:
        self._exporter = exporter

    def collect(self) -> Iterator[Metric]:
        exporter = self._exporter
        state = exporter.state  # one read: everything below comes from this object
        info = GaugeMetricFamily(
            "netmon_build_info", "netmon's version and probe mode", labels=["version", "probes"]
        )
        info.add_metric([exporter.version, exporter.mode], 1)
        yield info
        if state is None:
            return  # before the first snapshot: only the build info
        for name, help_text, index in _TRAFFIC:
            family = CounterMetricFamily(
                name, help_text + _NAMES_NOTE, labels=["process", "protocol"]
            )
            for row in state.traffic:
                family.add_metric([row.process, row.protocol], row.counts[index])
            yield family
        protocols = CounterMetricFamily(
            "netmon_protocol_bytes",
            "Bytes sent and received per protocol by every process on the machine",
            labels=["protocol"],
        )
        for protocol, total in state.protocols:
            protocols.add_metric([protocol], total)
        yield protocols
        yield GaugeMetricFamily("netmon_flows", "Flows netmon tracks now", value=state.flows)
        yield GaugeMetricFamily(
            "netmon_processes", "Processes netmon tracks now", value=state.processes
        )
        yield GaugeMetricFamily(
            "netmon_anomalous_flows",
            "Flows whose smoothed rate is above the anomaly threshold now",
            value=state.anomalous_flows,
        )
        yield CounterMetricFamily(
            "netmon_flows_dropped",
            "Flows the kernel flow table could not keep (evicted or not inserted)",
            value=state.dropped,
        )
        yield _by_label(
            GaugeMetricFamily("netmon_alerts_firing", "Alerts firing now", labels=["detector"]),
            state.alerts.firing,
        )
        yield _by_label(
            CounterMetricFamily(
                "netmon_alerts", "Alerts raised (firing events)", labels=["detector"]
            ),
            state.alerts.raised,
        )
        yield _by_label(
            CounterMetricFamily(
                "netmon_alert_events_undelivered",
                "Alert events a sink could not deliver (failed, timed out, queue full)",
                labels=["sink"],
            ),
            state.alerts.undelivered,
        )
        yield _by_label(
            CounterMetricFamily(
                "netmon_alert_events_suppressed",
                "Alert events a sink's rate limit held back (sent as a summary)",
                labels=["sink"],
            ),
            state.alerts.suppressed,
        )
        yield GaugeMetricFamily(
            "netmon_snapshot_age_seconds",
            "Seconds since the snapshot this scrape shows was taken",
            value=max(0.0, exporter.clock() - state.published_at),
        )


def _by_label(family: CounterMetricFamily | GaugeMetricFamily, values: Mapping[str, int]) -> Metric:
    for label, value in sorted(values.items()):
        family.add_metric([label], value)
    return family


def make_registry(exporter: Exporter) -> CollectorRegistry:
    """A registry of its own (not the library's global one, whose process
    and platform collectors would describe the Python interpreter)."""
    registry = CollectorRegistry()
    registry.register(NetmonCollector(exporter))
    return registry
