"""Sanitising and measuring text for the terminal."""

from __future__ import annotations

import pytest

from netmon.ui.text import char_width, display_width, fit, sanitize, truncate


def test_plain_text_is_unchanged() -> None:
    assert sanitize("nginx: worker") == "nginx: worker"


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b[2J", "^[[2J"),
        ("a\nb\rc\td", "a^Jb^Mc^Id"),
        ("bell\x07", "bell^G"),
        ("del\x7f", "del^?"),
        ("\x00nul", "^@nul"),
    ],
)
def test_c0_controls_become_caret_notation(raw: str, shown: str) -> None:
    assert sanitize(raw) == shown


@pytest.mark.parametrize(
    "char",
    [
        "\x9b",  # C1 CSI: some terminals start an escape sequence on it
        "\x85",  # C1 NEL
        "\u202e",  # right-to-left override
        "\u200b",  # zero width space
        "\u2028",  # line separator
        "\udcff",  # surrogate left by an undecodable byte
        "\ue000",  # private use
        "\U000e0001",  # language tag (format character)
    ],
)
def test_other_unsafe_characters_are_replaced(char: str) -> None:
    assert sanitize(f"a{char}b") == "a?b"


def test_no_escape_or_control_survives_any_code_point_below_0xa0() -> None:
    raw = "".join(chr(c) for c in range(0xA0))
    out = sanitize(raw)
    assert "\x1b" not in out
    assert all(0x20 <= ord(ch) < 0x7F for ch in out)


def test_printable_unicode_is_kept() -> None:
    assert sanitize("café 中文 ✓") == "café 中文 ✓"


def test_ascii_only_replaces_every_non_ascii_character() -> None:
    assert sanitize("café 中\x1b", ascii_only=True) == "caf? ?^["


def test_widths() -> None:
    assert char_width("a") == 1
    assert char_width("中") == 2
    assert char_width("\u0301") == 0  # combining acute accent
    assert char_width("\ufe0f") == 0  # variation selector
    assert display_width("e\u0301té") == 3
    assert display_width("中文ab") == 6


def test_truncate_marks_the_cut_and_never_exceeds_width() -> None:
    assert truncate("abcdef", 4) == "abc…"
    assert truncate("abc", 4) == "abc"
    assert truncate("abcdef", 4, "~") == "abc~"
    assert truncate("abcdef", 1) == "a"
    assert truncate("abcdef", 0) == ""


def test_truncate_pads_when_a_wide_character_does_not_fit() -> None:
    # "中文字" is 6 cells; in 4 cells: one wide char (2) + ellipsis (1) + pad (1).
    out = truncate("中文字", 4)
    assert out == "中… "
    assert display_width(out) == 4


@pytest.mark.parametrize("text", ["中文字中文字", "e\u0301" * 10, "abc", "", "a中b文c"])
@pytest.mark.parametrize("width", [1, 2, 3, 5, 8])
def test_fit_is_exactly_width_cells(text: str, width: int) -> None:
    assert display_width(fit(text, width)) == width
    assert display_width(fit(text, width, "right")) == width


def test_fit_alignment() -> None:
    assert fit("ab", 4) == "ab  "
    assert fit("ab", 4, "right") == "  ab"
