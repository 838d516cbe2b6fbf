"""MEDCLS_ASCII=1: every glyph on screen becomes ASCII, whoever drew it.

Borders, scrollbars, the header's icon, select arrows, checkboxes, plotext's axes and the app's own
bars come from many places (Textual, Rich, plotext, medcls); a Textual line filter sees every line
of every widget after it is rendered, so one translation here covers them all. Each character keeps
its cell width (a box corner becomes '+', a half block '#'), so layouts are unchanged. Charts pick
letter markers themselves (widgets/curves.py) so their series stay apart without colour.
"""
from __future__ import annotations

import unicodedata

from rich.segment import Segment
from textual.color import Color
from textual.filter import LineFilter

FIXED = {
    "█": "#", "▓": "#", "▒": ":", "░": ".", "■": "#", "□": "-", "▪": "#", "▫": "-",
    "▀": "^", "▄": "_", "▌": "]", "▐": "[",  # Textual's own ▐X▌ toggles -> [X]; the picker's say [x]/[ ]
    "▲": "^", "▼": "v", "▶": ">", "◀": "<", "►": ">", "◄": "<", "▸": ">", "◂": "<", "▴": "^", "▾": "v",
    "●": "o", "○": "o", "◉": "o", "⭘": "o", "◆": "*", "◇": "*", "★": "*", "☆": "*",
    "—": "-", "–": "-", "‒": "-", "―": "-", "…": "~", "·": ".", "•": "*", "∙": ".", "×": "x",
    "→": ">", "←": "<", "↑": "^", "↓": "v", "↵": "<", "⏎": "<", "✓": "+", "✔": "+", "✗": "x", "✘": "x",
    "‘": "'", "’": "'", "“": '"', "”": '"', "≥": ">", "≤": "<", "±": "+", "°": "o", "µ": "u",
    "\u00a0": " ", "╱": "/", "╲": "\\", "╳": "X",
}


def ascii_char(char: str) -> str:
    """One character as ASCII of the same cell width."""
    if char in FIXED:
        return FIXED[char]
    code = ord(char)
    if 0x2500 <= code <= 0x257F:  # box drawing: the line's direction decides
        name = unicodedata.name(char, "")
        horizontal, vertical = "HORIZONTAL" in name, "VERTICAL" in name
        if horizontal and not vertical:
            return "-"
        if vertical and not horizontal:
            return "|"
        return "+"
    if 0x2580 <= code <= 0x259F:  # other block elements (scrollbar thumbs, plot quadrants)
        return "#"
    if 0x2800 <= code <= 0x28FF:  # braille dots
        return " " if code == 0x2800 else "*"
    if unicodedata.combining(char):
        return ""
    plain = unicodedata.normalize("NFKD", char).encode("ascii", "ignore").decode("ascii")
    if plain:
        return plain[0]
    return "??" if unicodedata.east_asian_width(char) in ("W", "F") else "?"


class _Table(dict):
    """A str.translate table filled on first use of each character."""

    def __missing__(self, code: int) -> str:
        value = ascii_char(chr(code))
        self[code] = value
        return value


TABLE = _Table()


def to_ascii(text: str) -> str:
    return text if text.isascii() else text.translate(TABLE)


class AsciiFilter(LineFilter):
    """Textual line filter: the text of every segment to ASCII, styles untouched."""

    def apply(self, segments: list[Segment], background: Color) -> list[Segment]:
        return [seg if seg.text.isascii() else Segment(to_ascii(seg.text), seg.style, seg.control)
                for seg in segments]
