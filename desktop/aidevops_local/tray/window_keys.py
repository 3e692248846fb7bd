"""Keyboard habits every window shares: Escape closes it, and a shortcut per main action that works
wherever the focus is in the window. Kept apart so that each window states only its own keys."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import QWidget


def close_on_escape(window: QWidget) -> QShortcut:
    return shortcut(window, QKeySequence(Qt.Key.Key_Escape), window.close)


def shortcut(window: QWidget, keys: QKeySequence | str, slot: Callable[[], object]) -> QShortcut:
    """``keys`` run ``slot`` while the focus is anywhere in ``window`` (not only on one control)."""
    sequence = keys if isinstance(keys, QKeySequence) else QKeySequence(keys)
    found = QShortcut(sequence, window)
    found.setContext(Qt.ShortcutContext.WindowShortcut)
    found.activated.connect(slot)
    return found
