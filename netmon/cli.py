"""Entry point: parse options and run the live view, JSON output or a replay."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import stat
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Protocol, TextIO, cast

from netmon.alerts.feed import AlertingFeed, with_alerts
from netmon.alerts.sinks import Sink
from netmon.config import Config, parse_args
from netmon.errors import BccMissing, NetmonError, OutputError
from netmon.feed import Feed, PidFilter, ServiceFilter
from netmon.json_output import SignalStop, StopRequest, run_json, stop_on_signals
from netmon.jsonl import dumps
from netmon.live_feed import LiveFeed
from netmon.metrics import MetricsEngine
from netmon.model import Snapshot
from netmon.sources import Source

log = logging.getLogger("netmon")


class OpenedSource(Source, Protocol):
    """A source as opened by the live factory."""

    mode: str  # the probes actually attached: "socket" or "syscalls"
    warnings: list[str]  # things the user should know, printed once at start


class SourceFactory(Protocol):
    def __call__(self, *, probes: str, max_flows: int) -> OpenedSource: ...


@contextlib.contextmanager
def _bcc_required() -> Iterator[None]:
    """Report a missing bcc module as BccMissing wherever it is first imported."""
    try:
        yield
    except ModuleNotFoundError as exc:
        if exc.name != "bcc":
            raise
        raise BccMissing(
            "cannot import the bcc Python module: install BCC's Python bindings "
            "(Debian/Ubuntu: apt-get install python3-bpfcc)"
        ) from None


def _open_live_source(*, probes: str, max_flows: int) -> OpenedSource:
    with _bcc_required():
        from netmon.sources.live import LiveSource

        source: OpenedSource = LiveSource.open(probes=probes, max_flows=max_flows)
    return source


def _print_bpf(config: Config) -> int:
    with _bcc_required():
        from netmon.sources.live import render_program

        program = render_program(max_flows=config.max_flows, probes=config.probes)
    print(program)
    return 0


class _OneLineFormatter(logging.Formatter):
    """`netmon: warning: ...` without tracebacks (those belong in --log-file)."""

    def format(self, record: logging.LogRecord) -> str:
        bare = {
            **record.__dict__,
            "levelname": record.levelname.lower(),
            "exc_info": None,
            "exc_text": None,
            "stack_info": None,
        }
        return super().format(logging.makeLogRecord(bare))


class _LogFileHandler(logging.Handler):
    """Appends whole records to a file opened by netmon.safefile.

    A failed write (full disk, I/O error) does not interrupt netmon where it
    happened, nor print logging's traceback over the screen: the handler
    stops writing and remembers the error, which _logging reports on exit."""

    def __init__(self, path: str) -> None:
        super().__init__()
        from netmon.safefile import SafeFileError, open_append

        try:
            self._fd: int | None = open_append(path, existing=True).fd
        except SafeFileError as exc:
            raise OutputError(f"cannot open log file {path}: {exc}") from None
        self.path = path
        self.error: OSError | None = None

    def emit(self, record: logging.LogRecord) -> None:
        from netmon.safefile import write_all

        if self._fd is None or self.error is not None:
            return
        try:
            write_all(self._fd, (self.format(record) + "\n").encode("utf-8", "backslashreplace"))
        except OSError as exc:
            self.error = exc
        except Exception:  # a bad format argument: logging's own report
            self.handleError(record)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError as exc:
                self.error = self.error or exc
        super().close()


@contextlib.contextmanager
def _logging(config: Config) -> Iterator[None]:
    """Send the "netmon" loggers to --log-file, else to stderr with --json, else
    nowhere (stderr would scribble over the UI); undone on exit."""
    log_file: _LogFileHandler | None = None
    if config.log_file is not None:
        log_file = _LogFileHandler(config.log_file)
        handler: logging.Handler = log_file
        level = logging.INFO
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    elif config.json or config.serve is not None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_OneLineFormatter("netmon: %(levelname)s: %(message)s"))
        # A service says what it does (the address, the privilege drop).
        level = logging.INFO if config.serve is not None else logging.WARNING
    else:
        handler = logging.NullHandler()
        level = logging.WARNING
    saved = (log.level, log.propagate)
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        handler.close()
        log.setLevel(saved[0])
        log.propagate = saved[1]
    # Reached only when no other error is on its way out.
    if log_file is not None and log_file.error is not None:
        raise OutputError(
            f"{log_file.path}: cannot write log file: {log_file.error.strerror or log_file.error}"
        )


class _StdoutFailed(Exception):
    def __init__(self, error: OSError) -> None:
        super().__init__(error)
        self.error = error


class _GuardedStdout(io.TextIOBase):
    """sys.stdout for run_json, telling its write errors apart from any other
    OSError raised while producing the output."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def write(self, text: str) -> int:
        try:
            return self._out.write(text)
        except OSError as exc:
            raise _StdoutFailed(exc) from None

    def flush(self) -> None:
        try:
            self._out.flush()
        except OSError as exc:
            raise _StdoutFailed(exc) from None


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's final flush of
    what could not be written does not print an error of its own."""
    with contextlib.suppress(OSError, ValueError):  # ValueError: no real fd
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)


def _run_json(
    config: Config,
    feed: Feed,
    clock: Callable[[], float],
    stop: StopRequest | None,
) -> int:
    """--json, and --serve (which writes JSON only with --json). Snapshots
    that went through the alert path carry its events under "alerts"."""
    out = cast(TextIO, _GuardedStdout(sys.stdout)) if config.json else None

    def encode(snap: Snapshot) -> str:
        if isinstance(feed, AlertingFeed):
            return with_alerts(dumps(snap), feed.events_of(snap))
        return dumps(snap)

    try:
        if stop is not None:
            return run_json(feed, out, config.count, clock, stop=stop, encode=encode)
        own = SignalStop()
        try:
            with stop_on_signals(own):
                return run_json(feed, out, config.count, clock, stop=own, encode=encode)
        finally:
            own.close()
    except _StdoutFailed as failed:
        _discard_stdout()
        if isinstance(failed.error, BrokenPipeError):
            return 0  # the reader went away (e.g. `| head`): a normal end
        reason = failed.error.strerror or str(failed.error)
        raise OutputError(f"cannot write to standard output: {reason}") from None


def _print_warnings(messages: list[str], limit: int = 10) -> None:
    lines = [f"netmon: warning: {message}" for message in messages[:limit]]
    if len(messages) > limit:
        lines.append(f"netmon: warning: ... and {len(messages) - limit} more")
    with contextlib.suppress(OSError):
        for line in lines:
            print(line, file=sys.stderr)


def _run_replay(config: Config, clock: Callable[[], float], stop: StopRequest | None) -> int:
    assert config.replay is not None
    from netmon.sources.replay import open_replay_feed

    # Said again on stderr at the end where they could not be seen as they
    # came: under the table, or in a --log-file.
    later: list[str] = []

    def warn(message: str) -> None:
        log.warning("%s", message)
        if not config.json or config.log_file is not None:
            later.append(message)

    with contextlib.suppress(OSError):
        if stat.S_ISFIFO(os.stat(config.replay).st_mode) and sys.stderr.isatty():
            print(f"netmon: waiting for a writer on {config.replay}...", file=sys.stderr)
    from netmon import service

    try:
        sinks = service.open_alert_sinks(config)
        try:
            feed = open_replay_feed(
                config.replay, config.speed, clock=clock, follow=config.follow, warn=warn
            )
        except BaseException:
            _close_all(sinks)
            raise
        shown = _shown(feed, config)
        # The detectors run again on the recorded snapshots, with this
        # command line's settings: what was flagged when recording is not
        # what is shown.
        alerting = service.alerting_feed(shown, config, sinks)
        _say_detectors(config)
        try:
            if alerting.dispatcher is not None:
                alerting.dispatcher.start()
            if config.json:
                return _run_json(config, alerting, clock, stop)
            from netmon.replay_status import ReplayStatus
            from netmon.ui.app import run_ui

            return run_ui(config, ReplayStatus(alerting, feed), alerts=alerting.footer)
        finally:
            alerting.close()
    finally:
        _print_warnings(later)


def _say_detectors(config: Config) -> None:
    """A replay says that it works out the alerts again."""
    names = ",".join(config.detectors) or "none"
    message = f"replay: running the detectors ({names}) again on the recorded snapshots"
    log.info("%s", message)
    # The table says it in its status line; --json says it where someone reads.
    if config.json and config.log_file is None:
        with contextlib.suppress(OSError, ValueError):
            if sys.stderr.isatty():
                print(f"netmon: {message}", file=sys.stderr)


def _missing_pids(pids: frozenset[int], proc: Path = Path("/proc")) -> list[str]:
    """A warning for each --pid that names no running process (yet)."""
    return [
        f"--pid {pid}: no such process now; it is shown if it appears"
        for pid in sorted(pids)
        if not (proc / str(pid)).is_dir()
    ]


def _shown(feed: Feed, config: Config) -> Feed:
    """The feed as the user asked to see it (--pid, --service)."""
    if config.services:
        feed = ServiceFilter(feed, config.services)
    return PidFilter(feed, config.pids) if config.pids else feed


def _named(feed: Feed, config: Config) -> Feed:
    """The feed with the peers' host names, unless -n (or nothing shows
    them: --serve without --json)."""
    if config.numeric or (config.serve is not None and not config.json):
        return feed
    from netmon.names import NamingFeed, Resolver

    return NamingFeed(feed, Resolver())


def _run_live(
    config: Config,
    source_factory: SourceFactory,
    clock: Callable[[], float],
    stop: StopRequest | None,
) -> int:
    """Capture, in the order netmon.service describes: files, address and
    user first, then the probes, then the privilege drop, then threads."""
    from netmon import service

    recorder = None
    sinks: list[Sink] = []
    metrics = None
    try:
        if config.record is not None and not config.json:
            from netmon.record import Recorder

            # Fail on a bad path before loading BPF.
            recorder = Recorder.open(config.record, append=config.append)
        sinks = service.open_alert_sinks(config)
        target = service.drop_target(config)
        if config.serve is not None:
            metrics = service.Metrics(config, clock)
        engine = MetricsEngine(
            config.alpha,
            config.threshold_bps,
            config.interval_s,
            show_kernel=config.show_kernel,
        )
        if not config.json and config.serve is None and sys.stderr.isatty():
            # Compiling and attaching the probes takes a few seconds.
            print("netmon: loading the probes...", file=sys.stderr, flush=True)
        source = source_factory(probes=config.probes, max_flows=config.max_flows)
        retire = getattr(source, "retire_idle_after", None)  # the live source's option
        if retire is not None:
            retire(config.idle_timeout_s)
    except BaseException:
        _close_all(sinks)
        if metrics is not None:
            metrics.close()
        if recorder is not None:
            recorder.close()
        raise
    feed = LiveFeed(source, engine, config.interval_s, clock)
    alerting = service.alerting_feed(_named(_shown(feed, config), config), config, sinks)
    try:
        for warning in source.warnings + _missing_pids(config.pids):
            print(f"netmon: warning: {warning}", file=sys.stderr)
            if config.log_file is not None:
                log.warning("%s", warning)
        log.info("capturing with %s probes", source.mode)
        service.give_up_privileges(config, target, source, sinks)
        if alerting.dispatcher is not None:
            alerting.dispatcher.start()
        if metrics is not None:
            metrics.exporter.mode = source.mode
            metrics.follow(alerting)
            metrics.server.start()
        if config.json or config.serve is not None:
            return _run_json(config, alerting, clock, stop)
        from netmon.ui.app import run_ui

        return run_ui(config, alerting, recorder=recorder, alerts=alerting.footer)
    finally:
        try:
            alerting.close()  # detaches the probes, resolves and delivers the last alerts
        finally:
            if alerting.dispatcher is None:
                _close_all(sinks)
            if metrics is not None:
                metrics.close()
            if recorder is not None:
                recorder.close()


def _close_all(sinks: Sequence[Sink]) -> None:
    for sink in sinks:
        sink.close()


def main(
    argv: Sequence[str] | None = None,
    *,
    source_factory: SourceFactory | None = None,
    clock: Callable[[], float] = time.monotonic,
    stop: StopRequest | None = None,
) -> int:
    """Run netmon; returns the exit status.

    `source_factory`, `clock` and `stop` replace the live capture, the
    monotonic clock and the SIGINT/SIGTERM handling (tests use them)."""
    try:
        config = parse_args(argv)
    except SystemExit as exc:  # --help, --version, or an invalid option
        if exc.code is None:
            return 0
        return exc.code if isinstance(exc.code, int) else 2
    try:
        if config.print_bpf:
            return _print_bpf(config)
        with _logging(config):
            try:
                if config.replay is not None:
                    return _run_replay(config, clock, stop)
                return _run_live(config, source_factory or _open_live_source, clock, stop)
            except NetmonError:
                log.info("exiting on error", exc_info=True)  # details for --log-file
                raise
    except NetmonError as exc:
        message = str(exc) or (type(exc).__doc__ or type(exc).__name__).strip()
        with contextlib.suppress(OSError):  # stderr itself may be what failed
            print(f"netmon: {message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
