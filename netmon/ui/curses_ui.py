"""The only module that imports curses: paints frames, reads keys, and puts
the terminal back the way it was."""

from __future__ import annotations

import contextlib
import curses
import locale
import math
import os
from collections.abc import Iterator

from netmon.ui.text import display_width
from netmon.view import Frame, Line, Role

_SPECIAL_KEYS = {
    curses.KEY_UP: "UP",
    curses.KEY_DOWN: "DOWN",
    curses.KEY_PPAGE: "PGUP",
    curses.KEY_NPAGE: "PGDN",
    curses.KEY_HOME: "HOME",
    curses.KEY_END: "END",
    curses.KEY_ENTER: "ENTER",
    curses.KEY_BACKSPACE: "BACKSPACE",
    curses.KEY_RESIZE: "RESIZE",
}
_CHAR_KEYS = {"\n": "ENTER", "\r": "ENTER", "\x1b": "ESC", "\x7f": "BACKSPACE", "\x08": "BACKSPACE"}

# Colour pair numbers.
_RED, _GREEN, _YELLOW, _CYAN = 1, 2, 3, 4


def colour_wanted(env: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    """https://no-color.org: a non-empty NO_COLOR disables colour."""
    return not env.get("NO_COLOR")


def role_attributes(colours: bool) -> dict[Role, int]:
    """Attributes per role. Reverse video marks anomalies with or without
    colour, so the alert never depends on colour alone."""

    def pair(n: int) -> int:
        return curses.color_pair(n) if colours else 0

    return {
        Role.HEADER: curses.A_NORMAL,
        Role.BADGE: curses.A_BOLD | pair(_YELLOW),
        Role.TITLE: curses.A_BOLD | curses.A_UNDERLINE,
        Role.TITLE_SORTED: curses.A_BOLD | curses.A_UNDERLINE | pair(_CYAN),
        Role.NORMAL: curses.A_NORMAL,
        Role.KERNEL: curses.A_DIM,
        Role.ANOMALY: curses.A_REVERSE | curses.A_BOLD | pair(_RED),
        Role.FOOTER: curses.A_NORMAL,
        Role.ALERT: curses.A_BOLD | pair(_RED),
        Role.OK: pair(_GREEN),
        Role.INPUT: curses.A_BOLD,
        Role.HELP: curses.A_NORMAL,
    }


def attribute_runs(line: Line, attrs: dict[Role, int]) -> list[tuple[str, int]]:
    """The line's text in runs of the same attribute: one addstr per run
    instead of one per segment. Empty segments are dropped."""
    runs: list[tuple[str, int]] = []
    for seg in line:
        if not seg.text:
            continue
        attr = attrs[seg.role]
        if runs and runs[-1][1] == attr:
            runs[-1] = (runs[-1][0] + seg.text, attr)
        else:
            runs.append((seg.text, attr))
    return runs


class CursesScreen:
    """Paints frames into a curses window and translates key codes."""

    def __init__(self, window: curses.window, unicode: bool, colours: bool) -> None:
        self.window = window
        self.unicode = unicode
        self.attrs = role_attributes(colours)
        self._cursor_visible: bool | None = None
        self._painted: tuple[Line, ...] = ()
        self._painted_size: tuple[int, int] | None = None

    def size(self) -> tuple[int, int]:
        """(height, width)."""
        height, width = self.window.getmaxyx()
        return height, width

    def read_key(self, timeout_s: float) -> str | None:
        """Wait up to timeout_s (at least 1 ms) for a key; None if there was none."""
        self.window.timeout(max(1, math.ceil(timeout_s * 1000)))
        try:
            key = self.window.get_wch()
        except curses.error:
            return None
        if isinstance(key, int):
            if key == curses.KEY_RESIZE and hasattr(curses, "update_lines_cols"):
                curses.update_lines_cols()
            return _SPECIAL_KEYS.get(key)
        if key in _CHAR_KEYS:
            return _CHAR_KEYS[key]
        return key if key.isprintable() else None

    def paint(self, frame: Frame) -> None:
        """Draw the lines that differ from the previous frame, then refresh;
        curses sends the terminal only the cells that changed."""
        win = self.window
        previous = self._painted
        if (frame.width, frame.height) != self._painted_size:
            win.erase()
            previous = ()
        # Lines of the previous frame, by identity: after scrolling they are
        # the same objects, drawn one row up or down.
        shown = {id(line) for line in previous}
        attrs = self.attrs
        # try/except rather than contextlib.suppress in this loop: it runs
        # for every line of a frame, and suppress costs far more.
        for y, line in enumerate(frame.lines):
            if y < len(previous) and (line is previous[y] or line == previous[y]):
                continue
            try:
                if id(line) not in shown:
                    # New text (new data, not a scroll): let curses rewrite the
                    # whole line rather than skip the cells that happen to
                    # match. Each skip is a cursor move, and ncurses 6 flushes
                    # its output (one write to the terminal) at every move.
                    win.redrawln(y, 1)
                win.move(y, 0)
                win.clrtoeol()
            except curses.error:
                pass
            x = 0
            for text, attr in attribute_runs(line, attrs):
                try:  # noqa: SIM105
                    win.addstr(y, x, text, attr)
                except curses.error:  # writing the last cell of the screen raises after writing
                    pass
                x += display_width(text)
        for y in range(len(frame.lines), len(previous)):
            with contextlib.suppress(curses.error):
                win.move(y, 0)
                win.clrtoeol()
        self._painted = frame.lines
        self._painted_size = (frame.width, frame.height)
        self._show_cursor(frame.cursor is not None)
        if frame.cursor is not None:
            with contextlib.suppress(curses.error):
                win.move(*frame.cursor)
        win.refresh()

    def _show_cursor(self, visible: bool) -> None:
        if visible != self._cursor_visible:
            with contextlib.suppress(curses.error):
                curses.curs_set(1 if visible else 0)
            self._cursor_visible = visible


def _terminal_is_unicode() -> bool:
    if not hasattr(locale, "nl_langinfo"):  # Windows: PDCurses draws Unicode
        return True
    codeset = locale.nl_langinfo(locale.CODESET).upper().replace("-", "")
    return codeset == "UTF8"


@contextlib.contextmanager
def curses_session() -> Iterator[CursesScreen]:
    """Set the terminal up for the UI and restore it on any exit, exception
    included, before the exception goes further."""
    locale.setlocale(locale.LC_ALL, "")
    os.environ.setdefault("ESCDELAY", "25")  # Esc must not wait a second
    window = curses.initscr()
    try:
        curses.noecho()
        curses.cbreak()
        window.keypad(True)
        with contextlib.suppress(curses.error, AttributeError):
            curses.set_escdelay(25)
        colours = False
        if colour_wanted() and curses.has_colors():
            try:
                curses.start_color()
                with contextlib.suppress(curses.error):
                    curses.use_default_colors()
                background = -1
                for pair, fg in (
                    (_RED, curses.COLOR_RED),
                    (_GREEN, curses.COLOR_GREEN),
                    (_YELLOW, curses.COLOR_YELLOW),
                    (_CYAN, curses.COLOR_CYAN),
                ):
                    try:
                        curses.init_pair(pair, fg, background)
                    except curses.error:  # no default colours: use black
                        curses.init_pair(pair, fg, curses.COLOR_BLACK)
                colours = True
            except curses.error:
                colours = False
        yield CursesScreen(window, _terminal_is_unicode(), colours)
    finally:
        _restore(window)


def _restore(window: curses.window) -> None:
    # Each step on its own: one failing (the terminal may be gone after
    # SIGHUP) must not skip endwin.
    for step in (
        lambda: window.keypad(False),
        lambda: curses.curs_set(1),
        curses.echo,
        curses.nocbreak,
        curses.endwin,
    ):
        with contextlib.suppress(curses.error):
            step()
