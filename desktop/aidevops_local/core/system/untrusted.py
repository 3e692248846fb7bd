"""Text from outside (the Hub, GitHub, a file's metadata) made safe to show: a repo name must not be able to
move the cursor, retitle the terminal, clear the screen or reorder what is shown around it."""

from __future__ import annotations

import unicodedata

# Bidirectional embeddings, overrides and isolates: they make text display in another order than it reads.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def printable(text: object, *, multiline: bool = False) -> str:
    """``text`` without control characters (C0, DEL, C1: escape sequences and the like) or bidi controls.
    A tab becomes a space; newlines stay only when ``multiline``."""
    kept = []
    for char in str(text):
        if char == "\t":
            kept.append(" ")
        elif char == "\n" and multiline:
            kept.append(char)
        elif unicodedata.category(char) != "Cc" and char not in _BIDI_CONTROLS:
            kept.append(char)
    return "".join(kept)
