"""The SQLite store: usage rows and the model inventory, through peewee.

The tables keep the seed's names and columns (`model_usage`, `model_inventory`) so the framework's other
tools read them with plain sqlite3; timestamps are TEXT 'YYYY-MM-DD HH:MM:SS' in UTC, the format of
SQLite's `datetime('now')`, so `last_used < datetime('now', '-30 days')` works there too.

Call `database()` before using a model class: it opens (and caches, per path) the database of the current
root, applies the named migrations (migrations.py) and binds the models to it. Write with `write(fn)`: one
short IMMEDIATE transaction, retried with backoff while another process holds the lock, so the CLI and the
tray can write at once without a "database is locked" reaching the user.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

import peewee

from ..system import clock
from ..system.config import paths
from ..system.errors import DatabaseError, DiskFull, NotFound, Refused
from .migrations import import_legacy_usage_db, migrate

T = TypeVar("T")

BUSY_TIMEOUT_S = 10.0
WRITE_DEADLINE_S = 60.0
_FULL_BELOW = 1 << 20  # free bytes under which SQLite's "disk I/O error" means the disk is full
SOURCES = ("pulled", "legacy", "external")  # who put a model's files on disk; cleanup removes only "pulled"


def format_timestamp(value: datetime) -> str:
    """A datetime as the database stores it (naive means UTC)."""
    return clock.sqlite_text(value)


def parse_timestamp(text: str | None) -> datetime | None:
    """A stored timestamp as an aware UTC datetime; None for empty or unreadable text (old rows)."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(str(text).strip())
    except ValueError:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class TimestampField(peewee.TextField):
    def db_value(self, value):
        return format_timestamp(value) if isinstance(value, datetime) else value

    def python_value(self, value):
        return parse_timestamp(value)


class JsonListField(peewee.TextField):
    def db_value(self, value):
        return None if value is None else json.dumps(list(value))

    def python_value(self, value):
        if not value:
            return []
        try:
            data = json.loads(value)
        except ValueError:
            return []
        return data if isinstance(data, list) else []


_proxy = peewee.DatabaseProxy()


class _Table(peewee.Model):
    class Meta:
        database = _proxy


class ModelUsage(_Table):
    """One row per request a server of ours answered (or a legacy row adopted from an older database)."""

    id = peewee.AutoField()
    model = peewee.TextField()
    timestamp = TimestampField(default=clock.now)  # when the request finished
    tokens_in = peewee.IntegerField(default=0)  # the client's usage.prompt_tokens (cached tokens included)
    tokens_out = peewee.IntegerField(default=0)  # the client's usage.completion_tokens
    duration_ms = peewee.IntegerField(default=0)
    session_id = peewee.TextField(null=True)  # one server run
    request_key = peewee.TextField(null=True, unique=True)  # "<session>:<task>": ingesting twice adds nothing
    tok_per_sec = peewee.FloatField(null=True)  # generation speed
    cache_tokens = peewee.IntegerField(default=0)  # prompt tokens served from the prompt cache
    status = peewee.TextField(default="ok")  # ok | cancelled | error

    class Meta:
        table_name = "model_usage"


class ModelInventory(_Table):
    """A model on disk that the tool knows about."""

    model = peewee.TextField(primary_key=True)
    path = peewee.TextField()  # the file llama-server loads (the first part of a split set)
    size_bytes = peewee.IntegerField(null=True)  # all parts together
    downloaded = TimestampField(null=True, default=clock.now)
    last_used = TimestampField(null=True)
    repo = peewee.TextField(null=True)
    quant = peewee.TextField(null=True)
    sha256 = peewee.TextField(null=True)
    files = JsonListField(null=True)  # every file of a split set, absolute paths
    source = peewee.TextField(default="external")  # pulled | legacy | external: see SOURCES
    total_requests = peewee.IntegerField(default=0)

    class Meta:
        table_name = "model_inventory"

    def file_paths(self) -> list[Path]:
        names = self.files or [self.path]
        return [Path(name) for name in names if name]


class LogCursor(_Table):
    """How far usage ingestion has read one llama-server log, and the requests still open at that point."""

    file = peewee.TextField(primary_key=True)  # the log's file name inside the logs folder
    session_id = peewee.TextField(null=True)  # from the log's first header: a replaced file starts over
    offset = peewee.IntegerField(default=0)  # bytes consumed, always at a line end
    state = peewee.TextField(default="{}")  # the reader's state (JSON) at `offset`
    updated = TimestampField(default=clock.now)

    class Meta:
        table_name = "usage_log_cursor"


class AppState(_Table):
    """Small named values that must survive restarts and be shared by the CLI and the tray."""

    key = peewee.TextField(primary_key=True)
    value = peewee.TextField(null=True)
    updated = TimestampField(default=clock.now)

    class Meta:
        table_name = "app_state"


# ---- opening --------------------------------------------------------------------------------------------


class _Database(peewee.SqliteDatabase):
    """Turns "this file is damaged" into the user-facing DatabaseError wherever a query meets it."""

    def execute_sql(self, sql, params=None):
        try:
            return super().execute_sql(sql, params)
        except peewee.DatabaseError as exc:
            if _is_corruption(exc):
                raise _corrupt_error(Path(self.database), exc) from exc
            if _is_disk_full(Path(self.database), exc):
                raise _disk_full_error(Path(self.database)) from exc
            raise


_databases: dict[str, _Database] = {}
_lock = threading.Lock()


def database() -> peewee.SqliteDatabase:
    """The opened, migrated database of the current root, with the model classes bound to it."""
    path = paths().database
    key = str(path)
    with _lock:
        db = _databases.get(key)
        if db is None:
            db = _open(path)
            _databases[key] = db
        _proxy.initialize(db)
    return db


def close() -> None:
    """Close and forget the current root's database (before moving its file, and in tests)."""
    key = str(paths().database)
    with _lock:
        db = _databases.pop(key, None)
    if db is not None and not db.is_closed():
        db.close()


def _open(path: Path) -> _Database:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseError(
            f"Cannot create the folder for the usage database {path}: {exc.strerror}",
            hint="Check the permissions of that folder.",
        ) from exc
    db = _Database(
        str(path),
        timeout=BUSY_TIMEOUT_S,
        uri=True,
        pragmas=[
            ("busy_timeout", int(BUSY_TIMEOUT_S * 1000)),
            ("foreign_keys", 1),
            ("journal_mode", "wal"),
            ("synchronous", "normal"),
        ],
    )
    try:
        _retry_busy(lambda: db.connect(reuse_if_open=True))
        _retry_busy(lambda: migrate(db.connection()))
        _retry_busy(lambda: import_legacy_usage_db(db.connection(), paths().legacy_dir / "usage.db"))
    except (peewee.DatabaseError, sqlite3.DatabaseError) as exc:  # migrations use the raw connection
        if not db.is_closed():
            db.close()
        if _is_corruption(exc):
            raise _corrupt_error(path, exc) from exc
        if _is_disk_full(path, exc):
            raise _disk_full_error(path) from exc
        raise DatabaseError(
            f"Cannot open the usage database {path}: {exc}",
            hint="Check that the file and its folder are readable and writable.",
        ) from exc
    except BaseException:
        if not db.is_closed():
            db.close()
        raise
    return db


def _is_corruption(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(word in text for word in ("malformed", "not a database", "file is encrypted", "corrupt"))


def _is_disk_full(path: Path, exc: BaseException) -> bool:
    """SQLITE_FULL says so; a full disk met while growing the WAL index (-shm) reads as a plain I/O error,
    told apart by the space left."""
    text = str(exc).lower()
    if "disk is full" in text:
        return True
    if "disk i/o error" not in text:
        return False
    try:
        return shutil.disk_usage(path.parent).free < _FULL_BELOW
    except OSError:
        return False


def _disk_full_error(path: Path) -> DiskFull:
    return DiskFull(
        f"The disk holding the usage database {path} is full.",
        hint="Free some disk space and run the command again; nothing recorded so far was lost.",
    )


def _corrupt_error(path: Path, exc: BaseException) -> DatabaseError:
    return DatabaseError(
        f"The usage database {path} is damaged ({exc}). It was left as it is.",
        hint="Run `aidevops-local usage --reset-db` to move it aside (kept as "
        "local-models.db.corrupt-<time>) and start a fresh one.",
    )


# ---- writing --------------------------------------------------------------------------------------------


def _is_busy(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _retry_busy(fn: Callable[[], T], deadline_s: float | None = None) -> T:
    """SQLite's own busy timeout covers most waits; this covers the rest (a lock held past it, or a
    snapshot that went stale), with jittered backoff so two writers do not retry in step. The deadline
    (WRITE_DEADLINE_S) is read at each call, like BUSY_TIMEOUT_S at each open."""
    deadline_s = WRITE_DEADLINE_S if deadline_s is None else deadline_s
    start = time.monotonic()
    delay = 0.02
    while True:
        try:
            return fn()
        except (peewee.OperationalError, sqlite3.OperationalError) as exc:
            if _is_disk_full(paths().database, exc):
                raise _disk_full_error(paths().database) from exc
            if not _is_busy(exc):
                raise
            if time.monotonic() - start > deadline_s:
                raise DatabaseError(
                    f"The usage database stayed locked for {deadline_s:.0f} s.",
                    hint="Another program holds it; try again, or close that program.",
                ) from exc
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.5)


def write(fn: Callable[..., T], /, *args, **kwargs) -> T:
    """Run fn(*args, **kwargs) in one IMMEDIATE transaction (the write lock taken up front, so it never has to
    be upgraded mid-way), retried whole while another writer holds the lock. Keep fn short, and whatever it
    does outside the database repeatable: it may run more than once."""
    db = database()

    def attempt() -> T:
        try:
            with db.atomic("IMMEDIATE"):
                return fn(*args, **kwargs)
        except peewee.OperationalError as exc:
            # SQLite ends the transaction itself on some errors (a full disk at COMMIT or mid-statement);
            # peewee's rollback then fails with "no transaction is active", which would hide the reason.
            if "no transaction is active" not in str(exc):
                raise
            cause = exc.__context__
            while cause is not None and "no transaction is active" in str(cause):
                cause = cause.__context__  # peewee re-raises the driver's error: one more link
            if cause is None:
                raise
            raise cause from cause.__cause__

    return _retry_busy(attempt)


def get_state(key: str) -> str | None:
    database()
    row = AppState.get_or_none(AppState.key == key)
    return row.value if row else None


def set_state(key: str, value: str) -> None:
    """Within a write() transaction, or alone."""
    database()
    now = clock.now()
    (
        AppState.insert(key=key, value=value, updated=now)
        .on_conflict(conflict_target=[AppState.key], update={AppState.value: value, AppState.updated: now})
        .execute()
    )


# ---- damaged files --------------------------------------------------------------------------------------


def check_health(path: Path | None = None) -> str:
    """'ok', or what SQLite says is wrong with the file. Opens it read-only; changes nothing."""
    path = path or paths().database
    if not path.exists():
        raise NotFound(f"There is no usage database at {path}.")
    try:
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
        try:
            rows = conn.execute("PRAGMA quick_check").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    result = "; ".join(str(r[0]) for r in rows)
    return "ok" if result == "ok" else result


def move_aside_damaged() -> Path:
    """The user's consent path for a damaged database: rename it (and its -wal/-shm files) to
    local-models.db.corrupt-<time>, so the next open starts a fresh one. Nothing is deleted. Refuses a
    healthy database."""
    path = paths().database
    problem = check_health(path)
    if problem == "ok":
        raise Refused(
            f"The usage database {path} is healthy; it was not moved.",
            hint="--reset-db is only for a database that reports damage.",
        )
    close()
    stamp = clock.now().strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    os.rename(path, target)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            os.rename(side, target.with_name(target.name + suffix))
    return target
