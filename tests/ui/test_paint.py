"""The curses painter against a fake window: what ends up in the cells, and
which lines it asks curses to rewrite in full."""

from __future__ import annotations

import curses

from netmon.ui.curses_ui import CursesScreen, attribute_runs
from netmon.view import Frame, Line, Role, Segment

ATTRS = {Role.NORMAL: 0, Role.HEADER: 0, Role.TITLE: 1, Role.TITLE_SORTED: 2, Role.ANOMALY: 3}


def test_attribute_runs_join_neighbours_with_the_same_attribute() -> None:
    line = (
        Segment("PID", Role.TITLE),
        Segment(" NAME", Role.TITLE),
        Segment(" RATE▼", Role.TITLE_SORTED),
        Segment("", Role.TITLE),
        Segment(" SENT", Role.TITLE),
        Segment("  ", Role.TITLE),
    )
    assert attribute_runs(line, ATTRS) == [("PID NAME", 1), (" RATE▼", 2), (" SENT  ", 1)]


def test_attribute_runs_join_roles_that_map_to_the_same_attribute() -> None:
    line = (Segment("a", Role.NORMAL), Segment("b", Role.HEADER))
    assert attribute_runs(line, ATTRS) == [("ab", 0)]


def test_attribute_runs_of_an_empty_line() -> None:
    assert attribute_runs((), ATTRS) == []
    assert attribute_runs((Segment("", Role.NORMAL),), ATTRS) == []


class FakeWindow:
    """Cells and attributes, plus a log of the calls that matter here."""

    def __init__(self, height: int, width: int) -> None:
        self.height, self.width = height, width
        self.cells = [[(" ", 0)] * width for _ in range(height)]
        self.y = self.x = 0
        self.redrawn: list[int] = []
        self.addstr_calls = 0

    def getmaxyx(self) -> tuple[int, int]:
        return self.height, self.width

    def erase(self) -> None:
        self.cells = [[(" ", 0)] * self.width for _ in range(self.height)]

    def move(self, y: int, x: int) -> None:
        if not (0 <= y < self.height and 0 <= x < self.width):
            raise curses.error("move")
        self.y, self.x = y, x

    def clrtoeol(self) -> None:
        self.cells[self.y][self.x :] = [(" ", 0)] * (self.width - self.x)

    def addstr(self, y: int, x: int, text: str, attr: int) -> None:
        self.addstr_calls += 1
        self.move(y, x)
        for ch in text:  # ASCII only in these tests
            self.cells[y][self.x] = (ch, attr)
            self.x += 1

    def redrawln(self, y: int, n: int) -> None:
        self.redrawn.extend(range(y, y + n))

    def refresh(self) -> None:
        pass

    def text(self) -> list[str]:
        return ["".join(ch for ch, _ in row).rstrip() for row in self.cells]


def screen(window: FakeWindow) -> CursesScreen:
    s = CursesScreen(window, unicode=True, colours=False)  # type: ignore[arg-type]
    s.attrs = {role: ATTRS.get(role, 0) for role in Role}
    return s


def line(text: str, role: Role = Role.NORMAL) -> Line:
    return (Segment(text, role),)


def test_paint_draws_every_line_and_clears_what_is_left_of_the_old_one() -> None:
    win = FakeWindow(4, 20)
    s = screen(win)
    s.paint(Frame(20, 4, (line("a long first line"), line("two"), (), line("x" * 20))))
    s.paint(Frame(20, 4, (line("short"), line("two"), (), line("bar", Role.ANOMALY))))
    assert win.text() == ["short", "two", "", "bar"]
    assert win.cells[3][0] == ("b", 3)


def test_a_title_line_is_one_addstr_per_attribute() -> None:
    win = FakeWindow(2, 30)
    s = screen(win)
    title = (
        Segment("PID", Role.TITLE),
        Segment(" NAME", Role.TITLE),
        Segment(" RATE", Role.TITLE_SORTED),
    )
    s.paint(Frame(30, 2, (title, ())))
    assert win.addstr_calls == 2
    assert win.text()[0] == "PID NAME RATE"
    assert win.cells[0][9] == ("R", 2)


def test_new_lines_are_rewritten_in_full_but_scrolled_ones_are_not() -> None:
    rows = [line(f"row {i}") for i in range(6)]
    win = FakeWindow(4, 20)
    s = screen(win)
    s.paint(Frame(20, 4, tuple(rows[0:4])))
    win.redrawn.clear()
    # Scrolling by one: three lines come back as the same objects one row up;
    # only the one coming into view is new.
    s.paint(Frame(20, 4, tuple(rows[1:5])))
    assert win.text() == ["row 1", "row 2", "row 3", "row 4"]
    assert win.redrawn == [3]
    win.redrawn.clear()
    # New data: every line is a new object with new text.
    s.paint(Frame(20, 4, tuple(line(f"new {i}") for i in range(4))))
    assert win.text() == ["new 0", "new 1", "new 2", "new 3"]
    assert win.redrawn == [0, 1, 2, 3]
    win.redrawn.clear()
    # Equal lines in the same place are not painted at all.
    s.paint(Frame(20, 4, tuple(line(f"new {i}") for i in range(4))))
    assert win.redrawn == []
