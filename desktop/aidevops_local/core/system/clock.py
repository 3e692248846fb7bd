"""The one source of "now" for usage, cleanup and the nudge, always timezone-aware UTC, and the text form
the database keeps moments in.

Tests move time for real with libfaketime on a subprocess (it shifts the process's clock, SQLite's
`datetime('now')` included); in-process tests may monkeypatch `now`.
"""

from __future__ import annotations

from datetime import UTC, datetime

SQLITE_FORMAT = "%Y-%m-%d %H:%M:%S"  # what SQLite's datetime('now') writes, in UTC


def now() -> datetime:
    return datetime.now(UTC)


def sqlite_text(value: datetime | None = None) -> str:
    """A moment (default: now) as the database stores it; a naive datetime is taken as UTC."""
    value = now() if value is None else value
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime(SQLITE_FORMAT)
