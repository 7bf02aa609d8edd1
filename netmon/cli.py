"""Entry point: parse options and run the live view, JSON output or a replay."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from netmon.config import Config, parse_args
from netmon.errors import BccMissing, NetmonError
from netmon.feed import Feed, PidFilter
from netmon.json_output import SignalStop, StopRequest, run_json, stop_on_signals
from netmon.live_feed import LiveFeed
from netmon.metrics import MetricsEngine
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


@contextlib.contextmanager
def _logging(config: Config) -> Iterator[None]:
    """Send the "netmon" loggers to --log-file, else to stderr with --json, else
    nowhere (stderr would scribble over the UI); undone on exit."""
    if config.log_file is not None:
        try:
            handler: logging.Handler = logging.FileHandler(config.log_file)
        except OSError as exc:
            raise NetmonError(f"cannot open log file {config.log_file}: {exc.strerror}") from None
        level = logging.INFO
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    elif config.json:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_OneLineFormatter("netmon: %(levelname)s: %(message)s"))
        level = logging.WARNING
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


def _run_json(
    config: Config,
    feed: Feed,
    clock: Callable[[], float],
    stop: StopRequest | None,
) -> int:
    try:
        if stop is not None:
            return run_json(feed, sys.stdout, config.count, clock, stop=stop)
        own = SignalStop()
        try:
            with stop_on_signals(own):
                return run_json(feed, sys.stdout, config.count, clock, stop=own)
        finally:
            own.close()
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): a normal end. Point stdout at
        # /dev/null so the interpreter's final flush does not complain.
        with contextlib.suppress(OSError, ValueError):  # ValueError: no real fd
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, sys.stdout.fileno())
            finally:
                os.close(devnull)
        return 0


def _run_replay(config: Config, clock: Callable[[], float], stop: StopRequest | None) -> int:
    assert config.replay is not None
    from netmon.sources.replay import open_replay_feed

    feed = open_replay_feed(config.replay, config.speed, clock=clock)
    try:
        shown = _shown(feed, config)
        if config.json:
            return _run_json(config, shown, clock, stop)
        from netmon.ui.app import run_ui

        return run_ui(config, shown)
    finally:
        feed.close()


def _shown(feed: Feed, config: Config) -> Feed:
    """The feed as the user asked to see it (--pid)."""
    return PidFilter(feed, config.pids) if config.pids else feed


def _run_live(
    config: Config,
    source_factory: SourceFactory,
    clock: Callable[[], float],
    stop: StopRequest | None,
) -> int:
    recorder = None
    if config.record is not None and not config.json:
        from netmon.record import Recorder

        recorder = Recorder.open(config.record)  # fail on a bad path before loading BPF
    try:
        engine = MetricsEngine(
            config.alpha,
            config.threshold_bps,
            config.interval_s,
            show_kernel=config.show_kernel,
        )
        if not config.json and sys.stderr.isatty():
            # Compiling and attaching the probes takes a few seconds.
            print("netmon: loading the probes...", file=sys.stderr, flush=True)
        source = source_factory(probes=config.probes, max_flows=config.max_flows)
        feed = LiveFeed(source, engine, config.interval_s, clock)
        try:
            for warning in source.warnings:
                print(f"netmon: warning: {warning}", file=sys.stderr)
                if config.log_file is not None:
                    log.warning("%s", warning)
            log.info("capturing with %s probes", source.mode)
            shown = _shown(feed, config)
            if config.json:
                return _run_json(config, shown, clock, stop)
            from netmon.ui.app import run_ui

            return run_ui(config, shown, recorder=recorder)
        finally:
            feed.close()
    finally:
        if recorder is not None:
            recorder.close()


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
        print(f"netmon: {message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
