"""Run a program in a pseudo-terminal and read its screen through pyte.

Synchronisation is by observation: `wait_for` reads the terminal until a
predicate on the screen holds, with a timeout; nothing sleeps.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import time
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Self

import pyte
from wcwidth import wcwidth

REPO = Path(__file__).resolve().parents[2]
TERM = "xterm-256color"


class _Screen(pyte.Screen):
    """pyte 0.8 with two gaps filled, so that it shows what xterm shows:

    - REP (CSI n b, repeat the last character) and SU/SD (CSI n S / T,
      scroll the region), which ncurses uses to update the screen when
      terminfo has them (xterm-256color does);
    - the rendering of a half-overwritten wide character (see `display`);
    - a zero-width character that is not a combining mark (the emoji
      variation selector U+FE0F) stops pyte's drawing of the rest of the
      chunk; a real terminal attaches it to the previous cell, so drop it.
    """

    _last_char = " "

    @property
    def display(self) -> list[str]:
        # pyte's own version fails on the empty stub a wide character leaves
        # when a narrow one overwrites its first half; a terminal shows a blank.
        out = []
        for y in range(self.lines):
            row = self.buffer[y]
            chars: list[str] = []
            x = 0
            while x < self.columns:
                data = row[x].data
                chars.append(data or " ")
                x += 2 if data and wcwidth(data[0]) == 2 else 1
            out.append("".join(chars))
        return out

    def draw(self, data: str) -> None:
        if not data.isascii():
            data = "".join(
                ch for ch in data if not (wcwidth(ch) == 0 and not unicodedata.combining(ch))
            )
        if data:
            self._last_char = data[-1]
        super().draw(data)

    def repeat_last(self, count: int = 1, *args: object, **kwargs: object) -> None:
        self.draw(self._last_char * max(count, 1))

    def _scroll(self, count: int, up: bool) -> None:
        top, bottom = self.margins or pyte.screens.Margins(0, self.lines - 1)
        saved = self.cursor.y
        for _ in range(max(count, 1)):
            if up:
                self.cursor.y = bottom
                self.index()
            else:
                self.cursor.y = top
                self.reverse_index()
        self.cursor.y = saved

    def scroll_up(self, count: int = 1, *args: object, **kwargs: object) -> None:
        self._scroll(count, up=True)

    def scroll_down(self, count: int = 1, *args: object, **kwargs: object) -> None:
        self._scroll(count, up=False)


class _Stream(pyte.ByteStream):
    def __init__(self, screen: _Screen) -> None:
        self.csi = {
            **pyte.ByteStream.csi,
            "b": "repeat_last",
            "S": "scroll_up",
            "T": "scroll_down",
        }
        super().__init__(screen)


def _set_controlling_tty() -> None:
    # Runs in the child after setsid(): make the pty its controlling
    # terminal, so Ctrl-C and window size changes reach it as signals.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def netmon_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "netmon", *args]


class Terminal:
    def __init__(
        self,
        argv: Sequence[str],
        cols: int = 100,
        rows: int = 30,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.master, self.slave = os.openpty()
        self._set_size(cols, rows)
        full_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            "TERM": TERM,
            "LANG": "C.UTF-8",
            "PYTHONPATH": str(REPO),
        }
        full_env.update(env or {})
        self.env = full_env
        self.proc = subprocess.Popen(
            list(argv),
            stdin=self.slave,
            stdout=self.slave,
            stderr=self.slave,
            cwd=REPO,
            env=full_env,
            start_new_session=True,
            preexec_fn=_set_controlling_tty,
        )
        self.screen = _Screen(cols, rows)
        self.stream = _Stream(self.screen)
        self.raw = bytearray()

    # -- terminal side ---------------------------------------------------

    def _set_size(self, cols: int, rows: int) -> None:
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def resize(self, cols: int, rows: int) -> None:
        """Like a terminal window being resized: the kernel sends SIGWINCH."""
        self.screen.resize(rows, cols)
        self._set_size(cols, rows)

    def send(self, data: bytes | str) -> None:
        os.write(self.master, data.encode() if isinstance(data, str) else data)

    def termios_flags(self) -> int:
        """The pty's local mode flags (ECHO, ICANON, ...)."""
        return int(termios.tcgetattr(self.slave)[3])

    # -- reading ---------------------------------------------------------

    def _pump(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return False
        try:
            data = os.read(self.master, 65536)
        except OSError:
            return False
        self.raw += data
        self.stream.feed(data)
        return bool(data)

    def wait_for(
        self, predicate: Callable[[Terminal], bool], timeout: float = 10.0, what: str = ""
    ) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"timed out waiting for {what or predicate}; screen:\n{self.dump()}"
                )
            self._pump(min(left, 0.05))

    def wait_text(self, text: str, timeout: float = 10.0) -> None:
        self.wait_for(lambda t: text in t.text(), timeout, repr(text))

    def wait_exit(self, timeout: float = 10.0) -> int:
        """Drain the output until the program exits; its exit status."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"program did not exit; screen:\n{self.dump()}")
            self._pump(0.05)
        while self._pump(0.05):
            pass
        return self.proc.returncode

    # -- screen ----------------------------------------------------------

    def lines(self) -> list[str]:
        return list(self.screen.display)

    def line(self, y: int) -> str:
        return self.screen.display[y]

    def text(self) -> str:
        return "\n".join(self.screen.display)

    def row_reverse(self, y: int) -> bool:
        """True when every non-blank cell of row y is in reverse video."""
        row = self.screen.buffer[y]
        cells = [row[x] for x in range(self.screen.columns) if row[x].data.strip()]
        return bool(cells) and all(c.reverse for c in cells)

    def row_any_reverse(self, y: int) -> bool:
        row = self.screen.buffer[y]
        return any(row[x].reverse for x in range(self.screen.columns))

    def row_fg(self, y: int) -> set[str]:
        row = self.screen.buffer[y]
        return {row[x].fg for x in range(self.screen.columns) if row[x].data.strip()}

    def find_row(self, needle: str) -> int:
        for y, line in enumerate(self.lines()):
            if needle in line:
                return y
        raise AssertionError(f"{needle!r} not on screen:\n{self.dump()}")

    def dump(self) -> str:
        return "\n".join(f"{y:2}|{line}|" for y, line in enumerate(self.lines()))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
