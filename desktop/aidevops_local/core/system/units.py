"""Byte counts as people read them, in one shape for the CLI, the tray and core's messages.

One function so a size reads the same in a table, a menu and a notification: whole numbers up to
megabytes (a tenth of a kilobyte says nothing), one decimal from gigabytes up (12.0 GB vs 12.4 GB matters).
"""

from __future__ import annotations

_UNITS = ("B", "KB", "MB", "GB", "TB")


def human_bytes(n: int | float | None) -> str:
    """n bytes in binary units (1 KB = 1024 B); "-" for an unknown size."""
    if n is None:
        return "-"
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{value:.0f} {unit}" if unit in ("B", "KB", "MB") else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable: the last unit always returns")
