"""Seeing the tray icon from outside the app, as a user would: in the X window tree of the tray host."""

from __future__ import annotations

import re

TRAY_CLASS = '"aidevops-local-tray")'  # WM_CLASS class of the tray's windows (QApplication's name)


def tray_icon_in_panel(desktop) -> bool:
    """True once a window of the tray's class sits inside trayer's panel (XEmbed done)."""
    px, py, pw, ph = desktop.tray_panel()
    for line in desktop.window_tree().splitlines():
        if TRAY_CLASS not in line:
            continue
        found = re.search(r"\)\s+(\d+)x(\d+)\+\S+\s+\+(-?\d+)\+(-?\d+)", line)
        if found:
            w, h, x, y = map(int, found.groups())
            if px <= x and x + w <= px + pw and py <= y and y + h <= py + ph and w > 1:
                return True
    return False
