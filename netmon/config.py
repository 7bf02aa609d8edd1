"""Command-line options -> an immutable Config."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import NoReturn

from netmon import __version__
from netmon.abi import load_abi
from netmon.alerts.baseline import BaselineSettings
from netmon.alerts.choice import DEFAULT_DETECTORS, DETECTORS, parse_detectors
from netmon.alerts.fanout import FanoutSettings
from netmon.alerts.newpeer import NewPeerSettings
from netmon.export.address import ServeAddress, parse_address
from netmon.units import format_rate, parse_rate

DEFAULT_INTERVAL_MS = 1000.0
MIN_INTERVAL_MS = 100.0  # faster polling costs a core on a busy machine
MAX_INTERVAL_MS = 3_600_000.0  # one hour
MIN_SPEED = 0.001
MAX_SPEED = 1_000_000.0
DEFAULT_ALPHA = 0.4
DEFAULT_THRESHOLD_BPS = 10.0 * 1024 * 1024
DEFAULT_MAX_FLOWS = load_abi().values["MAX_FLOWS"]  # the kernel program's default
MAX_MAX_FLOWS = 4 * 1024 * 1024
DEFAULT_IDLE_TIMEOUT_MIN = 10.0
MAX_IDLE_TIMEOUT_MIN = 7 * 24 * 60.0  # a week
PROBE_MODES = ("auto", "syscalls", "socket")
DEFAULT_METRICS_PROCESSES = 50
MAX_METRICS_PROCESSES = 10_000
DEFAULT_SERVICE_USER = "nobody"
DEFAULT_EXEC_TIMEOUT_S = 10.0
MAX_EXEC_TIMEOUT_S = 3600.0


@dataclass(frozen=True)
class Config:
    interval_s: float = DEFAULT_INTERVAL_MS / 1000.0
    alpha: float = DEFAULT_ALPHA
    threshold_bps: float = DEFAULT_THRESHOLD_BPS
    count: int | None = None
    json: bool = False
    probes: str = "auto"
    show_kernel: bool = False
    max_flows: int = DEFAULT_MAX_FLOWS
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_MIN * 60.0  # 0: keep idle flows
    record: str | None = None
    append: bool = False
    replay: str | None = None
    follow: bool = False
    speed: float = 1.0
    print_bpf: bool = False
    log_file: str | None = None
    pids: frozenset[int] = frozenset()  # empty: every process
    services: frozenset[str] = frozenset()  # --service: empty, every service
    serve: ServeAddress | None = None  # --serve: the metrics endpoint
    metrics_processes: int = DEFAULT_METRICS_PROCESSES
    user: str | None = None  # whom to become after attach; None: stay as started
    alerts: tuple[str, ...] = ()  # --alerts: FILE, "syslog" or "journal"
    alert_exec: str | None = None
    alert_exec_timeout_s: float = DEFAULT_EXEC_TIMEOUT_S
    numeric: bool = False  # -n: no reverse lookups of the peers' names
    detectors: tuple[str, ...] = DEFAULT_DETECTORS
    baseline: BaselineSettings = field(default_factory=BaselineSettings)
    fanout: FanoutSettings = field(default_factory=FanoutSettings)
    new_peer: NewPeerSettings = field(default_factory=NewPeerSettings)


class _Parser(argparse.ArgumentParser):
    """Reports a bad option as a single line on stderr, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def _interval_ms(text: str) -> float:
    value = _number(text, "a number of milliseconds")
    if not MIN_INTERVAL_MS <= value <= MAX_INTERVAL_MS:
        raise argparse.ArgumentTypeError(
            f"must be from {MIN_INTERVAL_MS:.0f} to {MAX_INTERVAL_MS:.0f} milliseconds "
            f"(1 hour), got {text!r}"
        )
    return value


def _alpha(text: str) -> float:
    value = _number(text, "a number in (0, 1]")
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text!r}")
    return value


def _threshold(text: str) -> float:
    try:
        return parse_rate(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a rate >= 0 such as 10M, 10MB/s or 10485760, got {text!r}"
        ) from None


def _speed(text: str) -> float:
    value = _number(text, "a number")
    if not MIN_SPEED <= value <= MAX_SPEED:
        raise argparse.ArgumentTypeError(
            f"must be from {MIN_SPEED:g} to {MAX_SPEED:.0f}, got {text!r}"
        )
    return value


def _idle_timeout_min(text: str) -> float:
    value = _number(text, "a number of minutes")
    if not 0 <= value <= MAX_IDLE_TIMEOUT_MIN:
        raise argparse.ArgumentTypeError(
            f"idle timeout must be from 0 to {MAX_IDLE_TIMEOUT_MIN:g} minutes, got {text!r}"
        )
    return value


def _positive_int(limit: int | None = None) -> Callable[[str], int]:
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number > 0, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
        if limit is not None and value > limit:
            raise argparse.ArgumentTypeError(f"must be at most {limit}, got {text!r}")
        return value

    return convert


def _serve_address(text: str) -> ServeAddress:
    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc} in {text!r}") from None


def _detectors(text: str) -> tuple[str, ...]:
    try:
        return parse_detectors(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(what: str) -> Callable[[str], float]:
    def convert(text: str) -> float:
        value = _number(text, what)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
        return value

    return convert


def _exec_timeout(text: str) -> float:
    value = _number(text, "a number of seconds")
    if not 0 < value <= MAX_EXEC_TIMEOUT_S:
        raise argparse.ArgumentTypeError(
            f"must be more than 0 and at most {MAX_EXEC_TIMEOUT_S:.0f} seconds, got {text!r}"
        )
    return value


def _pid_list(text: str) -> list[int]:
    """'123' or '123,456' -> [123, 456]."""
    convert = _positive_int()
    return [convert(part.strip()) for part in text.split(",")]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="netmon",
        description=(
            "Per-process network monitor: live bytes and smoothed bandwidth per "
            "process, protocol, service port and peer, captured with eBPF. "
            "Live capture needs root (or CAP_BPF + CAP_PERFMON); --replay does not."
        ),
        epilog=(
            "Sizes and rates use binary units (1 KB = 1024 B), as top does. "
            "Exit status: 0 ok, 1 other error, 2 bad options, 3 permission denied, "
            "4 bcc missing, 5 kernel headers missing, 6 tracefs unavailable, "
            "7 probe failure, 8 bad recording, 9 cannot write output (stdout, "
            "--record, --log-file, --alerts, --alert-exec) or serve --serve's "
            "address, 130 interrupted."
        ),
    )
    timing = parser.add_argument_group("sampling")
    timing.add_argument(
        "-i",
        "--interval",
        metavar="MS",
        type=_interval_ms,
        default=DEFAULT_INTERVAL_MS,
        help=(
            f"refresh every MS milliseconds, {MIN_INTERVAL_MS:.0f} to {MAX_INTERVAL_MS:.0f} "
            "(1 hour) (default: %(default).0f)"
        ),
    )
    timing.add_argument(
        "-a",
        "--alpha",
        metavar="A",
        type=_alpha,
        default=DEFAULT_ALPHA,
        help=(
            "smoothing weight of the newest interval in the bandwidth average, "
            "0 < A <= 1; 1 shows raw per-interval rates, smaller is smoother "
            "(default: %(default)s)"
        ),
    )
    timing.add_argument(
        "-t",
        "--threshold",
        metavar="RATE",
        type=_threshold,
        default=DEFAULT_THRESHOLD_BPS,
        help=(
            "flag a flow as an anomaly when its smoothed send+receive rate exceeds "
            f"RATE, e.g. 500K, 10M, 10MB/s or plain bytes/s (default: "
            f"{format_rate(DEFAULT_THRESHOLD_BPS)})"
        ),
    )

    capture = parser.add_argument_group("capture")
    capture.add_argument(
        "--probes",
        choices=PROBE_MODES,
        default="auto",
        help=(
            "where to count traffic: 'socket' hooks the kernel socket layer, "
            "'syscalls' hooks the send/recv family of syscall tracepoints, 'auto' "
            "picks the best one this kernel supports and says so if it has to "
            "fall back (default: %(default)s)"
        ),
    )
    capture.add_argument(
        "-p",
        "--pid",
        metavar="PID[,PID...]",
        type=_pid_list,
        action="extend",
        help="show only these processes (repeatable); protocol totals stay machine-wide",
    )
    capture.add_argument(
        "--service",
        metavar="NAME",
        action="append",
        help="show only the processes of this service or container, by its SERVICE name "
        "(nginx.service, docker:3f2a1b0c9d8e, pod:8d9e2f41) or its cgroup path (repeatable); "
        "protocol totals stay machine-wide",
    )
    capture.add_argument(
        "-k",
        "--show-kernel",
        action="store_true",
        help="also show traffic moved by kernel threads (hidden by default)",
    )
    capture.add_argument(
        "--max-flows",
        metavar="N",
        type=_positive_int(MAX_MAX_FLOWS),
        default=DEFAULT_MAX_FLOWS,
        help=(
            "size of the kernel flow table; when full, the least recently used "
            "flows are evicted and counted as dropped (default: %(default)s)"
        ),
    )
    capture.add_argument(
        "--idle-timeout",
        metavar="MIN",
        type=_idle_timeout_min,
        default=DEFAULT_IDLE_TIMEOUT_MIN,
        help=(
            "remove a flow that moved nothing for MIN minutes (fractions allowed) from the "
            "kernel's table and the list; its bytes stay in the totals and in 'closed'; "
            "0 keeps idle flows (default: %(default)g)"
        ),
    )

    output = parser.add_argument_group("output")
    output.add_argument(
        "-j",
        "--json",
        action="store_true",
        help=(
            "instead of the interactive view, write one JSON object per refresh to "
            "stdout (JSON Lines), with that refresh's alert events under 'alerts'. "
            "On Ctrl-C or SIGTERM, live capture writes one last object with "
            "everything counted so far; exit status 0. Works with --replay too"
        ),
    )
    output.add_argument(
        "-n",
        "--numeric",
        action="store_true",
        help=(
            "do not look up the peers' host names (reverse DNS through the configured "
            "resolver and /etc/hosts): show and write addresses only (default: names "
            "where known, in the table and as remote_name in JSON)"
        ),
    )
    output.add_argument(
        "--count",
        metavar="N",
        type=_positive_int(),
        help="with --json: exit after writing N objects (default: run until stopped)",
    )
    output.add_argument(
        "--record",
        metavar="FILE",
        help=(
            "while showing the interactive view, also save every refresh to FILE "
            "(JSON Lines). FILE is created with mode 0600; an existing FILE is "
            "refused unless --append is given; symlinks, devices and FIFOs are "
            "always refused"
        ),
    )
    output.add_argument(
        "--append",
        action="store_true",
        help=(
            "with --record: if FILE exists, add the new session after what it "
            "holds (its mode is left as it is)"
        ),
    )
    output.add_argument(
        "--log-file",
        metavar="FILE",
        help=(
            "append diagnostics to FILE, created with mode 0600 if missing; "
            "symlinks, devices and FIFOs are refused (by default diagnostics go "
            "to stderr with --json and are discarded in the interactive view)"
        ),
    )

    service = parser.add_argument_group("service")
    service.add_argument(
        "--serve",
        metavar="[ADDR:]PORT",
        type=_serve_address,
        help=(
            "run without the table: serve Prometheus metrics at http://ADDR:PORT/metrics "
            "(ADDR defaults to 127.0.0.1; [::1]:PORT for IPv6; port 0 picks a free one) "
            "and send alerts to the --alerts sinks, until SIGTERM or SIGINT (exit 0). "
            "Combines with --json. Drops privileges after attaching (see --user)"
        ),
    )
    service.add_argument(
        "--metrics-processes",
        metavar="N",
        type=_positive_int(MAX_METRICS_PROCESSES),
        default=DEFAULT_METRICS_PROCESSES,
        help=(
            "with --serve: the N busiest process names get their own metric label, the "
            'rest are summed as process="other"; a name keeps its label until idle '
            "for 15 minutes (default: %(default)s)"
        ),
    )
    service.add_argument(
        "--user",
        metavar="NAME",
        help=(
            "once the probes are attached and the files named here are open, switch to "
            "user NAME and drop every capability (default: nobody with --serve; "
            "otherwise stay as started). 'root' keeps root"
        ),
    )
    service.add_argument(
        "--alerts",
        metavar="FILE|syslog|journal",
        action="append",
        help=(
            "send alert events (firing, resolved) to FILE as JSON Lines (created 0600, "
            "appended to; write ./syslog for a file of that name), to syslog, or to "
            "the journal (syslog where journald is absent). Repeatable"
        ),
    )
    service.add_argument(
        "--alert-exec",
        metavar="PROGRAM",
        help=(
            "run PROGRAM (an absolute path; no shell, no arguments) for each alert "
            "event, with the event as JSON on stdin and NETMON_* environment "
            "variables; it never holds up the capture"
        ),
    )
    service.add_argument(
        "--alert-exec-timeout",
        metavar="S",
        type=_exec_timeout,
        default=None,
        help=(
            f"with --alert-exec: kill PROGRAM after S seconds (default: {DEFAULT_EXEC_TIMEOUT_S:g})"
        ),
    )

    detect = parser.add_argument_group("detectors")
    detect.add_argument(
        "--detectors",
        metavar="LIST",
        type=_detectors,
        default=DEFAULT_DETECTORS,
        help=(
            "comma-separated detectors to run, 'all' or 'none': "
            + "; ".join(f"{name}: {what}" for name, what in DETECTORS.items())
            + f" (default: {','.join(DEFAULT_DETECTORS)})"
        ),
    )
    b, f, n = BaselineSettings(), FanoutSettings(), NewPeerSettings()
    detect.add_argument(
        "--baseline-z",
        metavar="Z",
        type=_positive("a number > 0"),
        default=b.z,
        help="baseline: how many standard deviations above its normal a rate must be "
        "(default: %(default)s)",
    )
    detect.add_argument(
        "--baseline-floor",
        metavar="RATE",
        type=_threshold,
        default=b.floor_bps,
        help=f"baseline: never flag a rate below RATE (default: {format_rate(b.floor_bps)})",
    )
    detect.add_argument(
        "--fanout-ports",
        metavar="N",
        type=_positive_int(f.cap),
        default=f.ports,
        help=f"fanout: distinct ports of one host within {f.window_s:g} s that make a "
        "port scan (default: %(default)s)",
    )
    detect.add_argument(
        "--fanout-hosts",
        metavar="N",
        type=_positive_int(f.cap),
        default=f.hosts,
        help=f"fanout: distinct hosts on one port within {f.window_s:g} s that make a "
        "host sweep (default: %(default)s)",
    )
    detect.add_argument(
        "--new-peer-learn",
        metavar="S",
        type=_positive("a number of seconds"),
        default=n.learn_s,
        help="new-peer: seconds during which a process's peers are learned, not flagged "
        "(default: %(default)g)",
    )

    replay = parser.add_argument_group("replay")
    replay.add_argument(
        "--replay",
        metavar="FILE",
        help=(
            "play back a file saved with --record instead of capturing; needs no "
            "root and no bcc; combine with --json to print it as JSON Lines. The "
            "file is read as it plays, so a FIFO plays as it is written. A bad "
            "line stops the replay with its line number (exit 8); an incomplete "
            "last line is dropped with a warning; a jump in time longer than "
            "twice the snapshot's interval (1 s to 1 hour) is shortened to that"
        ),
    )
    replay.add_argument(
        "--follow",
        action="store_true",
        help="with --replay: at the end of FILE, wait for more lines (like tail -f)",
    )
    replay.add_argument(
        "--speed",
        metavar="X",
        type=_speed,
        default=None,
        help=(
            f"with --replay: play back X times faster, e.g. 0.5 or 10, from {MIN_SPEED:g} "
            f"to {MAX_SPEED:.0f} (default: 1)"
        ),
    )

    parser.add_argument("--print-bpf", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "-V",
        "--version",
        action="version",
        version=f"%(prog)s {__version__}",
    )
    return parser


def parse_args(argv: Sequence[str] | None = None) -> Config:
    """Parse options; on invalid input print one line to stderr and exit 2."""
    parser = build_parser()
    ns = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    if ns.count is not None and not ns.json:
        parser.error("--count only applies to --json output")
    if ns.speed is not None and ns.replay is None:
        parser.error("--speed only applies to --replay")
    if ns.follow and ns.replay is None:
        parser.error("--follow only applies to --replay")
    if ns.append and ns.record is None:
        parser.error("--append only applies to --record")
    if ns.record is not None and ns.replay is not None:
        parser.error("--record cannot be combined with --replay")
    if ns.record is not None and ns.json:
        parser.error("--record cannot be combined with --json (--json already writes JSON Lines)")
    if ns.serve is not None and ns.replay is not None:
        parser.error("--serve cannot be combined with --replay")
    if ns.serve is not None and ns.record is not None:
        parser.error("--record applies to the table; with --serve, use --json to keep snapshots")
    if ns.metrics_processes != DEFAULT_METRICS_PROCESSES and ns.serve is None:
        parser.error("--metrics-processes only applies to --serve")
    if ns.user is not None and ns.replay is not None:
        parser.error("--user only applies to live capture (--replay needs no privileges)")
    if ns.user is not None and not ns.user:
        parser.error("--user needs a user name")
    if ns.alert_exec_timeout is not None and ns.alert_exec is None:
        parser.error("--alert-exec-timeout only applies to --alert-exec")
    user = ns.user
    if user is None and ns.serve is not None:
        user = DEFAULT_SERVICE_USER
    return Config(
        interval_s=ns.interval / 1000.0,
        alpha=ns.alpha,
        threshold_bps=ns.threshold,
        count=ns.count,
        json=ns.json,
        probes=ns.probes,
        show_kernel=ns.show_kernel,
        max_flows=ns.max_flows,
        idle_timeout_s=ns.idle_timeout * 60.0,
        record=ns.record,
        append=ns.append,
        replay=ns.replay,
        follow=ns.follow,
        speed=1.0 if ns.speed is None else ns.speed,
        print_bpf=ns.print_bpf,
        log_file=ns.log_file,
        pids=frozenset(ns.pid or ()),
        services=frozenset(ns.service or ()),
        serve=ns.serve,
        metrics_processes=ns.metrics_processes,
        user=user,
        alerts=tuple(ns.alerts or ()),
        alert_exec=ns.alert_exec,
        numeric=ns.numeric,
        alert_exec_timeout_s=(
            DEFAULT_EXEC_TIMEOUT_S if ns.alert_exec_timeout is None else ns.alert_exec_timeout
        ),
        detectors=ns.detectors,
        baseline=replace(BaselineSettings(), z=ns.baseline_z, floor_bps=ns.baseline_floor),
        fanout=replace(FanoutSettings(), ports=ns.fanout_ports, hosts=ns.fanout_hosts),
        new_peer=replace(NewPeerSettings(), learn_s=ns.new_peer_learn),
    )
