"""Where alert events go: a JSON Lines file, syslog, the journal, a program.

Delivery never blocks the capture. The main loop hands each event to the
`Dispatcher`, which for every sink:

- applies the sink's rate limit (a token bucket: at most RATE_LIMIT events,
  refilled at RATE_LIMIT per RATE_WINDOW_S). Events over the limit are held
  back and counted; as soon as the sink has room again it gets one summary
  record (`"state": "suppressed"`) saying how many were held back, so a
  storm of alerts is one line, not thousands;
- puts the event on the sink's bounded queue, without waiting. A full queue
  (the sink is slow or stuck) loses the event, and it is counted;
- a thread per sink delivers from its queue. A failure (a write error, a
  program that fails or outlives its timeout) loses that event, counted,
  with one warning per distinct failure.

Process names are chosen by the process, so every sink gets them as inert
data: the file and the program's stdin get JSON; syslog, the journal and
the program's environment get text with control characters in caret
notation (ESC -> ^[); a program is run with an argument list, never a shell.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from netmon.alerts.events import FIRING, RESOLVED, AlertEvent
from netmon.errors import OutputError
from netmon.safefile import SafeFileError, open_append, write_all
from netmon.ui.text import sanitize

log = logging.getLogger(__name__)

RATE_LIMIT = 30  # events per sink, as a burst and per RATE_WINDOW_S
RATE_WINDOW_S = 60.0
QUEUE_SIZE = 256  # events waiting for a slow sink before they are lost
DRAIN_S = 3.0  # at exit, how long the sinks get to deliver what is queued
DEFAULT_EXEC_TIMEOUT_S = 10.0

SYSLOG_ADDRESS = "/dev/log"
JOURNAL_ADDRESS = "/run/systemd/journal/socket"
_LOG_DAEMON = 3
_WARNING, _NOTICE = 4, 5
_MAX_SYSLOG_TEXT = 1900  # keeps a datagram well under common limits
SUPPRESSED = "suppressed"


@dataclass(frozen=True)
class Message:
    """One record as every kind of sink needs it."""

    record: dict[str, Any]  # the JSON object
    text: str  # one line, control characters made visible

    @property
    def severity(self) -> int:
        return _WARNING if self.record.get("state") == FIRING else _NOTICE

    @classmethod
    def of_event(cls, event: AlertEvent) -> Message:
        return cls(event.to_dict(), "netmon alert " + event.text())

    @classmethod
    def summary(cls, held: Mapping[str, int], since: float, now: float) -> Message:
        total = sum(held.values())
        parts = ", ".join(f"{n} {state}" for state, n in sorted(held.items()))
        reason = (
            f"{total} alert events held back by this sink's rate limit "
            f"({RATE_LIMIT} per {RATE_WINDOW_S:g} s) since {_clock_text(since)}: {parts}"
        )
        record = {
            "state": SUPPRESSED,
            "suppressed": total,
            "firing": held.get(FIRING, 0),
            "resolved": held.get(RESOLVED, 0),
            "since": since,
            "ts": now,
            "reason": reason,
        }
        return cls(record, "netmon alerts " + reason)


def _clock_text(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(ts))


# record key -> field name, for the journal and a program's environment
_FIELDS = (
    ("state", "NETMON_ALERT_STATE"),
    ("detector", "NETMON_ALERT_DETECTOR"),
    ("alert_id", "NETMON_ALERT_ID"),
    ("kind", "NETMON_ALERT_KIND"),
    ("pid", "NETMON_PID"),
    ("comm", "NETMON_COMM"),
    ("protocol", "NETMON_PROTOCOL"),
    ("family", "NETMON_FAMILY"),
    ("port", "NETMON_PORT"),
    ("remote_ip", "NETMON_REMOTE_IP"),
    ("role", "NETMON_ROLE"),
    ("value", "NETMON_VALUE"),
    ("limit", "NETMON_LIMIT"),
    ("unit", "NETMON_UNIT"),
    ("suppressed", "NETMON_SUPPRESSED"),
)


def text_fields(message: Message) -> dict[str, str]:
    """NETMON_* fields of a message, as safe text (absent values left out)."""
    out = {}
    for key, name in _FIELDS:
        value = message.record.get(key)
        if value is not None:
            out[name] = sanitize(str(value))
    out["NETMON_ALERT_TEXT"] = message.text
    return out


class Sink(Protocol):
    @property
    def name(self) -> str: ...

    def deliver(self, message: Message) -> None:
        """Deliver one message; raise on failure. Runs in the sink's thread."""
        ...

    def close(self) -> None: ...


class DeliveryError(Exception):
    """A message a sink could not deliver (the text says why)."""


class FileSink:
    """`--alerts FILE`: one JSON object per line, appended with one write.
    Opened like every file netmon writes (netmon.safefile): created 0600,
    never through a symlink, an existing file only appended to."""

    def __init__(self, path: str) -> None:
        try:
            self._fd: int | None = open_append(path, existing=True).fd
        except SafeFileError as exc:
            raise OutputError(f"cannot write alerts to {path}: {exc}") from None
        self.name = "file"
        self.path = path

    def deliver(self, message: Message) -> None:
        if self._fd is None:
            raise DeliveryError("closed")
        line = json.dumps(message.record, separators=(",", ":"), allow_nan=False) + "\n"
        try:
            write_all(self._fd, line.encode("utf-8", "surrogateescape"))
        except OSError as exc:
            raise DeliveryError(f"{self.path}: {exc.strerror or exc}") from None

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class _DatagramSink:
    """A Unix datagram socket to a local log daemon, with a send timeout."""

    def __init__(self, name: str, address: str) -> None:
        self.name = name
        self.address = address
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._sock.settimeout(2.0)
        try:
            self._sock.connect(address)
        except OSError as exc:
            self._sock.close()
            raise OutputError(f"--alerts {name}: cannot reach {address}: {exc.strerror}") from None

    def _send(self, data: bytes) -> None:
        try:
            self._sock.send(data)
        except OSError:
            # The daemon may have restarted: connect again once.
            try:
                self._sock.close()
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.settimeout(2.0)
                self._sock.connect(self.address)
                self._sock.send(data)
            except OSError as exc:
                raise DeliveryError(f"{self.address}: {exc.strerror or exc}") from None

    def close(self) -> None:
        self._sock.close()


class SyslogSink(_DatagramSink):
    """`--alerts syslog`: one line per event to the local syslog socket
    (facility daemon; firing as warning, resolved as notice)."""

    def __init__(self, address: str = SYSLOG_ADDRESS) -> None:
        super().__init__("syslog", address)

    def deliver(self, message: Message) -> None:
        text = message.text[:_MAX_SYSLOG_TEXT]
        priority = _LOG_DAEMON * 8 + message.severity
        self._send(f"<{priority}>netmon[{os.getpid()}]: {text}".encode())


def _journal_field(name: str, value: str) -> bytes:
    data = value.encode("utf-8", "surrogateescape")
    if b"\n" in data:  # the protocol's binary-safe form
        return name.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
    return name.encode() + b"=" + data + b"\n"


class JournalSink(_DatagramSink):
    """`--alerts journal`: journald's native protocol, with the alert's
    fields as NETMON_* journal fields (`journalctl NETMON_ALERT_STATE=firing`)."""

    def __init__(self, address: str = JOURNAL_ADDRESS) -> None:
        super().__init__("journal", address)

    def deliver(self, message: Message) -> None:
        fields = {
            "MESSAGE": message.text,
            "PRIORITY": str(message.severity),
            "SYSLOG_IDENTIFIER": "netmon",
            "SYSLOG_FACILITY": str(_LOG_DAEMON),
            **text_fields(message),
        }
        self._send(b"".join(_journal_field(k, v) for k, v in fields.items()))


# A program gets this environment, not netmon's own.
_EXEC_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ExecSink:
    """`--alert-exec PROGRAM`: runs PROGRAM for each event, without a shell
    and without arguments, the event as one line of JSON on its stdin and
    NETMON_* environment variables; killed (with its process group) if it
    runs longer than `timeout_s`. A non-zero exit counts as not delivered."""

    def __init__(self, program: str, timeout_s: float = DEFAULT_EXEC_TIMEOUT_S) -> None:
        if not os.path.isabs(program):
            raise OutputError(f"--alert-exec: give the program's absolute path, not {program!r}")
        if not (os.path.isfile(program) and os.access(program, os.X_OK)):
            raise OutputError(f"--alert-exec: {program} is not an executable file")
        self.name = "exec"
        self.program = program
        self.timeout_s = timeout_s
        self._running: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._closed = False

    def check_runnable(self) -> None:
        """After privileges are dropped: can this user still run it?"""
        if not os.access(self.program, os.X_OK):
            raise OutputError(
                f"--alert-exec: {self.program} is not executable by the user netmon runs as"
            )

    def deliver(self, message: Message) -> None:
        data = (json.dumps(message.record, separators=(",", ":"), allow_nan=False) + "\n").encode(
            "utf-8", "surrogateescape"
        )
        env = {"PATH": _EXEC_PATH, "LC_ALL": "C.UTF-8", **text_fields(message)}
        with self._lock:
            if self._closed:
                raise DeliveryError("netmon is stopping")
            try:
                proc = subprocess.Popen(
                    [self.program],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    env=env,
                    cwd="/",
                    close_fds=True,
                    start_new_session=True,  # its own process group, killed as one
                )
            except OSError as exc:
                raise DeliveryError(f"cannot run {self.program}: {exc.strerror or exc}") from None
            self._running = proc
        try:
            _, err = proc.communicate(data, timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            self._kill(proc)
            raise DeliveryError(
                f"{self.program} did not finish within {self.timeout_s:g} s: killed"
            ) from None
        finally:
            with self._lock:
                self._running = None
        if proc.returncode != 0:
            detail = sanitize(err[:200].decode("utf-8", "replace").strip())
            status = (
                f"was killed by signal {-proc.returncode}"
                if proc.returncode < 0
                else f"exited with status {proc.returncode}"
            )
            raise DeliveryError(f"{self.program} {status}" + (f": {detail}" if detail else ""))

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def close(self) -> None:
        """Stop a program still running (netmon is exiting)."""
        with self._lock:
            self._closed = True
            proc = self._running
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)


class RateLimit:
    """A token bucket: `burst` events at once, refilled at `per_s` per second."""

    def __init__(self, burst: int = RATE_LIMIT, per_s: float = RATE_LIMIT / RATE_WINDOW_S) -> None:
        self.burst = burst
        self.per_s = per_s
        self._tokens = float(burst)
        self._last: float | None = None

    def allow(self, now: float) -> bool:
        if self._last is not None and now > self._last:
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.per_s)
        self._last = now if self._last is None else max(self._last, now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


_STOP = object()


@dataclass(frozen=True)
class SinkStats:
    delivered: int
    undelivered: int  # failed, timed out, or lost to a full queue
    suppressed: int  # held back by the rate limit (reported in summaries)


class _Worker:
    """One sink's queue, thread, rate limit and counts."""

    def __init__(self, sink: Sink, limit: RateLimit, queue_size: int) -> None:
        self.sink = sink
        self.limit = limit
        self.queue: queue.Queue[object] = queue.Queue(queue_size)
        self.thread: threading.Thread | None = None
        # Each count is written by one thread only: no lock needed.
        self.delivered = 0  # the sink's thread
        self.failed = 0  # the sink's thread
        self.lost = 0  # the main thread (queue full, or left at exit)
        self.suppressed = 0  # the main thread
        self.held: dict[str, int] = {}  # state -> events held back since the last summary
        self.held_since = 0.0
        self._reported: set[str] = set()

    def offer(self, message: Message) -> None:
        try:
            self.queue.put_nowait(message)
        except queue.Full:
            self.lost += 1
            self._report(f"its queue is full ({self.queue.maxsize} events): events are lost")

    def run(self) -> None:
        while True:
            item = self.queue.get()
            if item is _STOP:
                return
            assert isinstance(item, Message)
            try:
                self.sink.deliver(item)
            except Exception as exc:
                self.failed += 1
                self._report(str(exc) if isinstance(exc, DeliveryError) else repr(exc))
            else:
                self.delivered += 1

    def _report(self, what: str) -> None:
        if what not in self._reported:
            self._reported.add(what)
            log.warning("alert sink %s: %s", self.sink.name, what)

    def stats(self) -> SinkStats:
        return SinkStats(self.delivered, self.failed + self.lost, self.suppressed)


class Dispatcher:
    """Hands events to every sink without blocking the caller."""

    def __init__(
        self,
        sinks: Sequence[Sink],
        *,
        limit: Callable[[], RateLimit] = RateLimit,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        names = [s.name for s in sinks]
        if len(set(names)) != len(names):
            raise ValueError(f"one sink of each kind: {names}")
        self._workers = [_Worker(s, limit(), queue_size) for s in sinks]
        self._started = False
        self._closed = False

    @property
    def sinks(self) -> list[Sink]:
        return [w.sink for w in self._workers]

    def start(self) -> None:
        """Start the sinks' threads (after privileges are dropped)."""
        if self._started:
            return
        self._started = True
        for w in self._workers:
            w.thread = threading.Thread(
                target=w.run, name=f"netmon-alerts-{w.sink.name}", daemon=True
            )
            w.thread.start()

    def publish(self, events: Sequence[AlertEvent], now: float) -> None:
        """Queue `events` for every sink; `now` is monotonic seconds (for the
        rate limits). Call it every interval, with or without events, so
        that summaries go out once a sink has room again."""
        if self._closed:
            return
        messages = [Message.of_event(e) for e in events]
        for w in self._workers:
            if w.held and w.limit.allow(now):
                w.offer(Message.summary(w.held, w.held_since, time.time()))
                w.held = {}
            for message in messages:
                if not w.held and w.limit.allow(now):
                    w.offer(message)
                    continue
                if not w.held:
                    w.held_since = float(message.record["ts"])
                state = str(message.record["state"])
                w.held[state] = w.held.get(state, 0) + 1
                w.suppressed += 1

    def stats(self) -> dict[str, SinkStats]:
        return {w.sink.name: w.stats() for w in self._workers}

    def close(self, drain_s: float = DRAIN_S) -> None:
        """Give the sinks up to `drain_s` to deliver what is queued, then
        stop them; what is left counts as undelivered."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + drain_s
        for w in self._workers:
            if w.thread is None:
                w.lost += w.queue.qsize()
                continue
            with contextlib.suppress(queue.Full):
                w.queue.put(_STOP, timeout=max(0.0, deadline - time.monotonic()))
        for w in self._workers:
            if w.thread is not None:
                w.thread.join(max(0.0, deadline - time.monotonic()))
                if w.thread.is_alive():
                    w.lost += w.queue.qsize()
        for w in self._workers:
            try:
                w.sink.close()
            except OSError as exc:
                log.warning("alert sink %s: closing failed: %s", w.sink.name, exc)
        for w in self._workers:
            if w.thread is not None and w.thread.is_alive():
                w.thread.join(1.0)  # a killed program lets its thread finish


def open_sinks(
    targets: Sequence[str], exec_program: str | None, exec_timeout_s: float
) -> list[Sink]:
    """The sinks named on the command line, opened now (before privileges
    are dropped). `journal` falls back to syslog where journald is absent."""
    sinks: list[Sink] = []
    try:
        for target in targets:
            if target == "syslog":
                sinks.append(SyslogSink())
            elif target == "journal":
                if os.path.exists(JOURNAL_ADDRESS):
                    sinks.append(JournalSink())
                else:
                    log.warning("no journald socket at %s: alerts go to syslog", JOURNAL_ADDRESS)
                    sinks.append(SyslogSink())
            else:
                sinks.append(FileSink(target))
        if exec_program is not None:
            sinks.append(ExecSink(exec_program, exec_timeout_s))
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    names = [s.name for s in sinks]
    for name in set(names):
        if names.count(name) > 1:
            for sink in sinks:
                sink.close()
            raise OutputError(f"--alerts: {name} is given more than once")
    return sinks
