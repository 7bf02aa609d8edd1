"""Make any string safe to put on a terminal, and measure it in cells.

Process names are chosen by the process itself, so they can hold escape
sequences, newlines or bidi overrides. Everything that reaches the screen
goes through `sanitize`, and columns are cut and padded by display width
(wide CJK characters take two cells, combining marks take none).
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

# Categories that must never be written raw: controls, format characters
# (bidi overrides, zero-width joiners), surrogates left by undecodable bytes,
# private use, unassigned code points, line and paragraph separators.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_ZERO_WIDTH_CATEGORIES = frozenset({"Mn", "Me"})


@lru_cache(maxsize=4096)
def _safe_char(ch: str, ascii_only: bool) -> str:
    code = ord(ch)
    if 0x20 <= code < 0x7F:
        return ch
    if code < 0x20:
        return "^" + chr(code + 0x40)  # caret notation, like `cat -v`: ESC -> ^[
    if code == 0x7F:
        return "^?"
    if ascii_only:
        return "?"
    if unicodedata.category(ch) in _UNSAFE_CATEGORIES:
        return "?"
    return ch


def sanitize(text: str, ascii_only: bool = False) -> str:
    """Replace everything a terminal could interpret or misplace.

    C0 controls become caret notation (`\\x1b` -> `^[`), other unsafe
    characters become `?`. With `ascii_only` every non-ASCII character
    becomes `?`, for terminals whose encoding cannot show them."""
    if text.isascii() and text.isprintable():
        return text
    return "".join(_safe_char(ch, ascii_only) for ch in text)


@lru_cache(maxsize=4096)
def char_width(ch: str) -> int:
    """Cells taken by one (already sanitised) character."""
    if " " <= ch < "\x7f":
        return 1
    if unicodedata.combining(ch) or unicodedata.category(ch) in _ZERO_WIDTH_CATEGORIES:
        return 0
    if unicodedata.east_asian_width(ch) in ("W", "F"):
        return 2
    return 1


def display_width(text: str) -> int:
    if text.isascii():
        return len(text)
    return sum(map(char_width, text))


def truncate(text: str, width: int, ellipsis: str = "…") -> str:
    """Cut `text` to at most `width` cells, marking the cut with `ellipsis`
    (which must be one cell wide) when there is room for it."""
    if width <= 0:
        return ""
    if display_width(text) <= width:
        return text
    budget = width - 1 if width > 1 else width
    out: list[str] = []
    used = 0
    for ch in text:
        w = char_width(ch)
        if used + w > budget:
            break
        out.append(ch)
        used += w
    if width > 1:
        out.append(ellipsis)
        used += 1
    # A wide character that did not fit leaves a gap: fill it so the next
    # column starts where it should.
    return "".join(out) + " " * (width - used)


def fit(text: str, width: int, align: str = "left", ellipsis: str = "…") -> str:
    """Exactly `width` cells: truncated, then padded on the right (or left)."""
    if text.isascii() and len(text) <= width:  # the common case, kept fast
        return text.rjust(width) if align == "right" else text.ljust(width)
    text = truncate(text, width, ellipsis)
    gap = width - display_width(text)
    if gap <= 0:
        return text
    return " " * gap + text if align == "right" else text + " " * gap
