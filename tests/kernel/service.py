"""A `netmon` process for the service tests: its output lines collected as
they come, waited on by condition, its metrics scraped over HTTP."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 90  # compiling the probes takes a few seconds on a busy machine
WAIT_S = 60


def wait_until(cond: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    """Poll an observable condition until it is truthy; return its value."""
    deadline = time.monotonic() + timeout
    step = 0.01
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(step)
        step = min(step * 2, 0.2)


class Netmon:
    """`python -m netmon ARGS` with stdout and stderr read by threads."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            # Addresses only: tests never send lookups to the machine's resolver.
            [sys.executable, "-m", "netmon", "--numeric", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._lock = threading.Lock()
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: IO[str] | None, into: list[str]) -> None:
        assert stream is not None
        for line in stream:
            with self._lock:
                into.append(line)

    def lines(self, which: str = "out") -> list[str]:
        with self._lock:
            return list(self.out if which == "out" else self.err)

    def wait_for_err(self, pattern: str, timeout: float = START_TIMEOUT_S) -> re.Match[str]:
        regex = re.compile(pattern)

        def found() -> re.Match[str] | None:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"netmon exited ({self.proc.returncode}): {''.join(self.lines('err'))}"
                )
            return next((m for m in map(regex.search, self.lines("err")) if m), None)

        match: re.Match[str] = wait_until(found, f"{pattern!r} on netmon's stderr", timeout)
        return match

    def metrics_url(self) -> str:
        return self.wait_for_err(r"serving metrics on (http://\S+/metrics)").group(1)

    def status(self) -> dict[str, str]:
        fields = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            fields[name] = value.strip()
        return fields

    def stop(self, timeout: float = WAIT_S) -> int:
        """SIGTERM, then the exit status (readers drained)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(timeout)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def scrape(url: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Sample name -> {sorted labels: value}."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def process_counter(url: str, name: str, process: str) -> float:
    """A process's counter summed over protocols (0 when absent)."""
    series = scrape(url).get(name, {})
    return sum(v for labels, v in series.items() if dict(labels).get("process") == process)


def alive(pid: int) -> bool:
    """Running (not a zombie, not gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def free_port() -> int:
    """A loopback TCP port nothing listens on right now (for a server that
    cannot pick its own, like Prometheus)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def private_dir(owner: int) -> Path:
    """A directory under /tmp that `owner` (uid) can enter and write."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="netmon-svc-"))
    path.chmod(0o755)
    os.chown(path, owner, owner)
    return path
