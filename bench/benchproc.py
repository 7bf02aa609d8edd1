"""Process plumbing shared by bench/stream.py and bench/footprint.py.

Monitors under test (netmon, nethogs) run as separate processes whose output
is drained by a thread, so they never block on a full pipe or pty, and whose
readiness is an observable event (a first line, a screen showing something),
not a sleep. Their CPU time and memory come from /proc.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import termios
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
DEFAULT_NETMON = str(HERE.parent / ".venv" / "bin" / "netmon")
CLK_TCK = os.sysconf("SC_CLK_TCK")
TERM = "xterm-256color"


# ------------------------------------------------------------------- /proc
def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all its threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat


def read_chars(pid: int) -> int:
    """Bytes the process read so far (read(2) and the like: rchar of /proc/PID/io)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise RuntimeError(f"no rchar in /proc/{pid}/io")


def memory_kib(pid: int) -> dict[str, int]:
    """Pss, Rss and Private (Private_Clean + Private_Dirty: memory no other
    process shares) from /proc/PID/smaps_rollup, in KiB. PSS splits shared
    pages among the processes mapping them, so it drops when other processes
    map the same libraries (another netmon's LLVM); Private does not."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        name, _, rest = line.partition(":")
        if rest.strip().endswith("kB"):
            fields[name] = int(rest.split()[0])
    return {
        "Pss": fields["Pss"],
        "Rss": fields["Rss"],
        "Private": fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0),
    }


# kprobe, tracepoint, raw tracepoint, tracing: programs that can run on the
# workload's system calls
TRACING_PROG_TYPES = {2, 5, 17, 26}
CAPTURE_TOOLS = {"nethogs", "tcpdump", "iftop", "bandwhich", "wireshark", "tshark"}


def other_monitors(exclude: set[int]) -> dict[int, str]:
    """Processes not in `exclude` that may slow the workload down too.

    Those holding tracing BPF programs (another netmon, any BCC tool) and
    known capture tools. On a shared machine they make the baseline slower
    and the measured cost of the monitor under test look smaller.
    """
    found: dict[int, str] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) in exclude:
            continue
        pid = int(proc.name)
        try:
            comm = (proc / "comm").read_text().strip()
            entries = list((proc / "fdinfo").iterdir())
        except OSError:
            continue
        progs = 0
        for entry in entries:
            try:
                text = entry.read_text()
            except OSError:
                continue
            if "prog_type:" in text:
                for line in text.splitlines():
                    if line.startswith("prog_type:"):
                        progs += int(line.split(":", 1)[1]) in TRACING_PROG_TYPES
                        break
        if progs:
            found[pid] = f"{comm} ({progs} tracing BPF programs)"
        elif comm in CAPTURE_TOOLS:
            found[pid] = comm
    return found


def free_tcp_port() -> int:
    """A port nothing listens on right now on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# A resolver where nothing listens: a DNS query is refused at once (the
# loopback port is closed), never sent off the machine.
RESOLV_NOWHERE = "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"


def private_etc(workdir: Path, hosts: str | None = None) -> list[str]:
    """An argv prefix: the command runs in a private mount namespace where
    /etc/hosts is `hosts` (default: the machine's own) and /etc/resolv.conf
    is RESOLV_NOWHERE. netmon run so still looks names up as it does by
    default (its peers on 127.0.0.1 are named "localhost" by the hosts file),
    but the other peers it sees on a shared machine are never asked about to
    the machine's resolver. unshare and sh exec into the command: its PID is
    the one the bench started."""
    if hosts is None:
        hosts = Path("/etc/hosts").read_text()
    hosts_file, resolv_file = workdir / "hosts", workdir / "resolv.conf"
    for path, text in ((hosts_file, hosts), (resolv_file, RESOLV_NOWHERE)):
        path.write_text(text)
        path.chmod(0o644)  # readable by a monitor that gave up root (--user)
    script = (
        'mount --bind "$1" /etc/hosts && mount --bind "$2" /etc/resolv.conf && shift 2 && exec "$@"'
    )
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
            str(hosts_file), str(resolv_file)]  # fmt: skip


def require_root(prog: str) -> None:
    if os.geteuid() != 0:
        sys.exit(f"{prog}: run as root (netmon attaches BPF programs, nethogs captures packets)")


# ----------------------------------------------------------------- draining
class Drain(threading.Thread):
    """Reads a file descriptor to EOF, keeping only what the bench asks for.

    Always: the number of complete lines and the last complete line. While
    `watch` is set, it is called with every chunk read; when it returns True
    `matched` is set and watching stops (so a costly check, like feeding a
    terminal emulator, runs only until the condition is seen).
    """

    def __init__(
        self,
        fd: int,
        watch: Callable[[bytes], bool] | None = None,
        on_line: Callable[[bytes], None] | None = None,
    ) -> None:
        super().__init__(daemon=True)
        self.fd = fd
        self.watch = watch
        self.on_line = on_line  # called with every complete line, if set
        self.matched = threading.Event()
        self.first_line = threading.Event()
        self.eof = threading.Event()
        self.lines = 0
        self.nbytes = 0
        self._partial: list[bytes] = []
        self._last = b""
        self._cond = threading.Condition()

    def last_line(self) -> bytes:
        with self._cond:
            return self._last

    def wait_lines(self, count: int, timeout: float) -> bool:
        """Wait until `count` complete lines were read; False on timeout or EOF."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self.lines >= count or self.eof.is_set(), timeout
            ) and (self.lines >= count)

    def run(self) -> None:
        try:
            while True:
                try:
                    chunk = os.read(self.fd, 1 << 16)
                except OSError:  # EIO: the pty's other side closed
                    break
                if not chunk:
                    break
                self.nbytes += len(chunk)
                self._take_lines(chunk)
                watch = self.watch  # the owner may clear it at any time
                if watch is not None and watch(chunk):
                    self.watch = None
                    self.matched.set()
        finally:
            with self._cond:
                self.eof.set()
                self._cond.notify_all()

    def _take_lines(self, chunk: bytes) -> None:
        end = chunk.rfind(b"\n")
        if end < 0:
            self._partial.append(chunk)
            return
        count = chunk.count(b"\n", 0, end + 1)
        start = chunk.rfind(b"\n", 0, end) + 1  # start of the last complete line
        last = b"".join([*self._partial, chunk[start:end]]) if start == 0 else chunk[start:end]
        if self.on_line is not None:
            for line in b"".join([*self._partial, chunk[: end + 1]]).splitlines():
                self.on_line(line)
        self._partial = [chunk[end + 1 :]] if end + 1 < len(chunk) else []
        with self._cond:
            self._last = last
            self.lines += count
            self._cond.notify_all()
        self.first_line.set()


def wait_event(event: threading.Event, proc: subprocess.Popen[Any], timeout: float) -> bool:
    """Wait for `event`, giving up early if the process exits first."""
    step = 0.1
    waited = 0.0
    while waited < timeout:
        if event.wait(step):
            return True
        if proc.poll() is not None:
            return event.is_set()
        waited += step
    return False


def stop_process(proc: subprocess.Popen[Any], sig: int = signal.SIGINT, timeout: float = 30) -> int:
    """Signal the process and wait for it; kill it if it does not exit."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


# ------------------------------------------------------------------ monitors
class PipeMonitor:
    """A monitor writing to a pipe (`netmon --json`, `nethogs -t`)."""

    def __init__(
        self,
        argv: Sequence[str],
        stop_signal: int = signal.SIGINT,
        watch: Callable[[bytes], bool] | None = None,
        on_line: Callable[[bytes], None] | None = None,
    ) -> None:
        self.argv = list(argv)
        self.stop_signal = stop_signal
        self.stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=self.stderr)
        assert self.proc.stdout is not None
        self.drain = Drain(self.proc.stdout.fileno(), watch, on_line)
        self.drain.start()
        self.pid = self.proc.pid

    def wait_first_line(self, timeout: float, what: str) -> None:
        if not wait_event(self.drain.first_line, self.proc, timeout):
            self.fail(f"no {what} within {timeout:g} s")

    def fail(self, why: str) -> None:
        stop_process(self.proc, signal.SIGKILL)
        raise RuntimeError(f"{self.argv[0]}: {why}; stderr: {self.stderr_text()}")

    def stderr_text(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace").strip()[-2000:]

    def stop(self) -> int:
        rc = stop_process(self.proc, self.stop_signal)
        self.drain.eof.wait(30)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self.stderr.close()
        return rc

    def last_json(self) -> dict[str, Any] | None:
        line = self.drain.last_line()
        if not line:
            return None
        obj = json.loads(line)
        return obj if isinstance(obj, dict) else None


class PtyMonitor:
    """A monitor drawing its interactive screen into a pseudo-terminal."""

    def __init__(
        self,
        argv: Sequence[str],
        cols: int,
        rows: int,
        watch: Callable[[bytes], bool] | None = None,
    ) -> None:
        self.argv = list(argv)
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        env = dict(os.environ, TERM=TERM, LANG="C.UTF-8", LINES=str(rows), COLUMNS=str(cols))
        self.proc = subprocess.Popen(
            self.argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
            preexec_fn=_set_controlling_tty,
        )
        os.close(slave)
        self.master = master
        self.pid = self.proc.pid
        self.first_output = threading.Event()

        def see(chunk: bytes) -> bool:
            self.first_output.set()
            return watch(chunk) if watch is not None else True

        self.drain = Drain(master, see)
        self.drain.start()

    def stop(self, quit_key: bytes = b"q") -> int:
        if self.proc.poll() is None:
            os.write(self.master, quit_key)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                stop_process(self.proc, signal.SIGTERM)
        rc = self.proc.wait()
        self.drain.eof.wait(10)
        os.close(self.master)
        return rc


def _set_controlling_tty() -> None:
    # In the child after setsid(): the pty becomes its controlling terminal.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
