"""The optional parts around the capture: alerts, metrics, giving up root.

cli.py puts them together in this order, so that everything that needs
privilege or can fail early happens before capture starts:

1. open the alert sinks and look up --user (files are opened as root);
2. with --serve, bind the metrics address (a port below 1024 needs root);
3. load and attach the probes;
4. drop privileges (--user; nobody by default with --serve);
5. start the threads: the metrics server and one per alert sink.
"""

from __future__ import annotations

import logging
import os
import pwd
import time
from collections.abc import Callable, Sequence
from typing import Any

from netmon import __version__
from netmon.alerts.choice import make_detectors
from netmon.alerts.events import AlertEvent
from netmon.alerts.feed import AlertingFeed
from netmon.alerts.manager import AlertManager
from netmon.alerts.sinks import Dispatcher, Sink, open_sinks
from netmon.config import Config
from netmon.export.snapshot_view import SnapshotView
from netmon.feed import Feed
from netmon.privileges import (
    CAP_BPF,
    Target,
    describe,
    drop_privileges,
    lookup_user,
    map_access_needs_cap_bpf,
)

log = logging.getLogger("netmon")


def open_alert_sinks(config: Config) -> list[Sink]:
    return open_sinks(config.alerts, config.alert_exec, config.alert_exec_timeout_s)


def alerting_feed(feed: Feed, config: Config, sinks: Sequence[Sink]) -> AlertingFeed:
    """The feed with the detectors of --detectors, sending events to `sinks`."""
    detectors = make_detectors(
        config.detectors, config.threshold_bps, config.baseline, config.fanout, config.new_peer
    )
    manager = AlertManager(detectors)
    return AlertingFeed(feed, manager, Dispatcher(sinks) if sinks else None)


def drop_target(config: Config) -> Target | None:
    """Whom to become after attach, looked up now (before the probes load):
    None to stay as started."""
    if config.user is None:
        return None
    if config.user == "root":
        return None
    if os.geteuid() != 0:
        # Only root can become another user; a user started with
        # capabilities stays itself and gives them up.
        me = pwd.getpwuid(os.geteuid())
        return Target(me.pw_name, me.pw_uid, os.getegid())
    return lookup_user(config.user)


def give_up_privileges(
    config: Config, target: Target | None, source: Any, sinks: Sequence[Sink]
) -> None:
    """Step 4: become `target` with no capability, once the probes are on."""
    if target is None:
        if config.user == "root":
            log.warning("--user root: netmon keeps running as root, with every capability")
        return
    # Attaching later would need CAP_BPF, CAP_PERFMON and CAP_DAC_READ_SEARCH
    # (bench/privileges.py); the source stops trying.
    stop_attaching = getattr(source, "stop_attaching", None)
    if stop_attaching is not None:
        stop_attaching()
    keep = []
    if map_access_needs_cap_bpf(target):
        # Before Linux 6.5, kernel.unprivileged_bpf_disabled refuses every
        # bpf() call without CAP_BPF, map lookups included.
        keep = [CAP_BPF]
        log.warning(
            "this kernel refuses map reads without CAP_BPF (kernel.unprivileged_bpf_disabled "
            "on Linux before 6.5): keeping CAP_BPF alone"
        )
    creds = drop_privileges(target, keep)
    log.info("%s", describe(creds, target))
    for sink in sinks:
        check = getattr(sink, "check_runnable", None)
        if check is not None:
            check()


class Metrics:
    """--serve: the exporter, its registry and the bound HTTP server."""

    def __init__(self, config: Config, clock: Callable[[], float] = time.monotonic) -> None:
        from netmon.export.prometheus import Exporter, make_registry
        from netmon.export.server import MetricsServer

        assert config.serve is not None
        self.exporter = Exporter(
            version=__version__,
            mode="unknown",
            max_names=config.metrics_processes,
            clock=clock,
        )
        self.server = MetricsServer(config.serve, make_registry(self.exporter))

    def follow(self, alerting: AlertingFeed) -> None:
        """Update the metrics after each snapshot the alerting feed passes on."""
        from netmon.export.prometheus import AlertCounts

        def observe(view: SnapshotView, events: Sequence[AlertEvent]) -> None:
            stats = alerting.dispatcher.stats() if alerting.dispatcher is not None else {}
            raised = {d.name: alerting.manager.raised[d.name] for d in alerting.manager.detectors}
            counts = AlertCounts(
                firing=alerting.manager.firing(),
                raised=raised,
                undelivered={name: s.undelivered for name, s in stats.items()},
                suppressed={name: s.suppressed for name, s in stats.items()},
            )
            self.exporter.update(view, counts)

        alerting.add_observer(observe)

    def close(self) -> None:
        self.server.close()
