"""The database's schema, built by named migrations, and the adoption of databases earlier helpers left.

Migrations are small functions applied in order, each recorded by name in schema_migrations once it has run
(simonw/llm style); never edit one that has shipped, add another. They adopt, without losing a row, the seed
schema and the earlier shell helper's columns, and the rows of its older usage.db are imported once.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from ..system import clock

_USAGE_DDL = """CREATE TABLE {name} (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model TEXT NOT NULL,
    timestamp TEXT NOT NULL DEFAULT (datetime('now')),
    tokens_in INTEGER DEFAULT 0,
    tokens_out INTEGER DEFAULT 0,
    duration_ms INTEGER DEFAULT 0,
    session_id TEXT,
    request_key TEXT UNIQUE,
    tok_per_sec REAL,
    cache_tokens INTEGER DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'ok'{extra}
)"""

_INVENTORY_DDL = """CREATE TABLE {name} (
    model TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    size_bytes INTEGER,
    downloaded TEXT DEFAULT (datetime('now')),
    last_used TEXT,
    repo TEXT,
    quant TEXT,
    sha256 TEXT,
    files TEXT,
    source TEXT NOT NULL DEFAULT 'external',
    total_requests INTEGER DEFAULT 0{extra}
)"""


def _ts(column: str) -> str:
    """SQL that normalises an old timestamp (ISO with T/Z/offset, fractions, unix seconds) to ours; text it
    cannot read is kept as it was rather than lost."""
    c = f'"{column}"'
    return (
        f"CASE WHEN {c} IS NULL THEN NULL "
        f"WHEN typeof({c}) IN ('integer', 'real') THEN datetime({c}, 'unixepoch') "
        f"WHEN {c} NOT GLOB '*[^0-9.]*' AND CAST({c} AS REAL) > 100000000 "
        f"THEN datetime(CAST({c} AS REAL), 'unixepoch') "
        f"ELSE COALESCE(datetime({c}), {c}) END"
    )


# target column -> (source columns to try in order, SQL template for the value or None to copy as is)
_USAGE_MAP: dict[str, tuple[tuple[str, ...], str | None]] = {
    "model": (("model",), "COALESCE({c}, 'unknown')"),
    "timestamp": (("timestamp",), "COALESCE({ts}, datetime('now'))"),
    "tokens_in": (("tokens_in",), None),
    "tokens_out": (("tokens_out",), None),
    "duration_ms": (("duration_ms",), None),
    "session_id": (("session_id",), None),
    "request_key": (("request_key",), None),
    "tok_per_sec": (("tok_per_sec",), None),
    "cache_tokens": (("cache_tokens",), None),
    "status": (("status",), "COALESCE({c}, 'ok')"),
}
_INVENTORY_MAP: dict[str, tuple[tuple[str, ...], str | None]] = {
    "model": (("model",), None),
    "path": (("path", "file_path"), "COALESCE({c}, '')"),
    "size_bytes": (("size_bytes",), None),
    "downloaded": (("downloaded", "first_seen"), "{ts}"),
    "last_used": (("last_used",), "{ts}"),
    "repo": (("repo", "repo_source"), None),
    "quant": (("quant", "quantization"), None),
    "sha256": (("sha256",), None),
    "files": (("files",), None),
    "source": (("source",), "COALESCE({c}, 'legacy')"),
    "total_requests": (("total_requests",), "COALESCE({c}, 0)"),
}
_INVENTORY_DEFAULTS = {"source": "'legacy'", "total_requests": "0"}  # rows that existed before us
# The older usage.db's model_access: per model its first and last use and a request count, but no file.
_ACCESS_MAP = {**_INVENTORY_MAP, "downloaded": (("first_used", "first_seen", "downloaded"), "{ts}")}
_ACCESS_DEFAULTS = {**_INVENTORY_DEFAULTS, "path": "''"}  # no file known: history, never listed as a model
_SAME_REQUEST = ("model", "timestamp", "tokens_in", "tokens_out", "duration_ms")


def _columns(conn: sqlite3.Connection, table: str, schema: str = "main") -> list[tuple[str, str, int]]:
    """(name, declared type, pk position) of each column; [] if the table does not exist."""
    return [(r[1], r[2], r[5]) for r in conn.execute(f'PRAGMA "{schema}".table_info("{table}")')]


def _select_list(old: list[tuple[str, str, int]], mapping: dict, defaults: dict[str, str]) -> tuple[list, list]:
    """The target columns we can fill from an old table, and the SQL expressions that fill them."""
    have = {name for name, _, _ in old}
    targets, exprs = [], []
    for target, (sources, template) in mapping.items():
        source = next((s for s in sources if s in have), None)
        if source is None:
            if target in defaults:
                targets.append(target)
                exprs.append(defaults[target])
            continue
        expr = f'"{source}"' if template is None else template.format(c=f'"{source}"', ts=_ts(source))
        targets.append(target)
        exprs.append(expr)
    return targets, exprs


def _rebuild(
    conn: sqlite3.Connection,
    table: str,
    ddl: str,
    mapping: dict,
    defaults: dict[str, str],
    keep_rowid_column: str | None = None,
) -> None:
    """Replace `table` by the target schema, copying every row. Columns we do not know are carried over
    unchanged (their data is someone's), appended after ours."""
    old = _columns(conn, table)
    known_sources = {s for sources, _ in mapping.values() for s in sources} | {"id"}
    extra = [(name, decl) for name, decl, _ in old if name not in known_sources]
    extra_sql = "".join(f',\n    "{name}" {decl}' for name, decl in extra)
    conn.execute(ddl.format(name=f"{table}__new", extra=extra_sql))
    targets, exprs = _select_list(old, mapping, defaults)
    targets += [name for name, _ in extra]
    exprs += [f'"{name}"' for name, _ in extra]
    # Keep an old integer primary key (the shell helper's id); other tables get fresh ids in rowid order.
    if keep_rowid_column and any(name == keep_rowid_column and pk for name, _, pk in old):
        targets.insert(0, keep_rowid_column)
        exprs.insert(0, f'"{keep_rowid_column}"')
    cols = ", ".join(f'"{t}"' for t in targets)
    conn.execute(f'INSERT INTO "{table}__new" ({cols}) SELECT {", ".join(exprs)} FROM "{table}" ORDER BY rowid')
    conn.execute(f'DROP TABLE "{table}"')
    conn.execute(f'ALTER TABLE "{table}__new" RENAME TO "{table}"')


def m001_seed_tables(conn: sqlite3.Connection) -> None:
    """The seed's schema, exactly; a database that already has the tables keeps them as they are."""
    conn.execute("""CREATE TABLE IF NOT EXISTS model_usage (
        model TEXT NOT NULL,
        timestamp TEXT NOT NULL DEFAULT (datetime('now')),
        tokens_in INTEGER DEFAULT 0,
        tokens_out INTEGER DEFAULT 0,
        duration_ms INTEGER DEFAULT 0)""")
    conn.execute("""CREATE TABLE IF NOT EXISTS model_inventory (
        model TEXT PRIMARY KEY,
        path TEXT NOT NULL,
        size_bytes INTEGER,
        downloaded TEXT DEFAULT (datetime('now')),
        last_used TEXT)""")


def m002_usage_request_columns(conn: sqlite3.Connection) -> None:
    """model_usage gains an id, the session and a unique request key (dedup), tokens/s, cached tokens and a
    status. Seed rows get ids in their order; the shell helper's rows keep theirs."""
    _rebuild(conn, "model_usage", _USAGE_DDL, _USAGE_MAP, {}, keep_rowid_column="id")


_USAGE_INDEXES = (
    "CREATE INDEX IF NOT EXISTS model_usage_model_timestamp ON model_usage (model, timestamp)",
    "CREATE INDEX IF NOT EXISTS model_usage_timestamp ON model_usage (timestamp)",
)
_CURSOR_DDL = """CREATE TABLE IF NOT EXISTS usage_log_cursor (
        file TEXT PRIMARY KEY,
        session_id TEXT,
        offset INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL DEFAULT '{}',
        updated TEXT NOT NULL DEFAULT (datetime('now')))"""
_APP_STATE_DDL = """CREATE TABLE IF NOT EXISTS app_state (
        key TEXT PRIMARY KEY,
        value TEXT,
        updated TEXT NOT NULL DEFAULT (datetime('now')))"""
# Speeds and memory measured per model file, machine, backend and plan (models/measured.py): token and time
# sums over a rolling window, the rates they give, and the peak memory seen.
_MEASUREMENTS_DDL = """CREATE TABLE IF NOT EXISTS model_measurements (
        file TEXT NOT NULL, size_bytes INTEGER NOT NULL DEFAULT 0, machine TEXT NOT NULL, backend TEXT NOT NULL,
        ctx_size INTEGER NOT NULL DEFAULT 0, parallel INTEGER NOT NULL DEFAULT 0,
        gpu_layers INTEGER NOT NULL DEFAULT -1, threads INTEGER NOT NULL DEFAULT 0,
        model TEXT NOT NULL, sha256 TEXT, architecture TEXT, active_bytes INTEGER, machine_desc TEXT,
        gen_tokens REAL NOT NULL DEFAULT 0, gen_ms REAL NOT NULL DEFAULT 0,
        prompt_tokens REAL NOT NULL DEFAULT 0, prompt_ms REAL NOT NULL DEFAULT 0,
        tok_per_sec REAL, prompt_tok_per_sec REAL, estimated_tok_per_sec REAL, estimated_prompt_tok_per_sec REAL,
        peak_rss_bytes INTEGER, peak_vram_bytes INTEGER, requests INTEGER NOT NULL DEFAULT 0,
        updated TEXT NOT NULL DEFAULT (datetime('now')),
        PRIMARY KEY (file, size_bytes, machine, backend, ctx_size, parallel, gpu_layers, threads))"""
_MIGRATIONS_DDL = "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied TEXT NOT NULL)"


def m003_usage_indexes(conn: sqlite3.Connection) -> None:
    for statement in _USAGE_INDEXES:
        conn.execute(statement)


def m004_inventory_details(conn: sqlite3.Connection) -> None:
    """model_inventory gains repo, quant, sha256, the files of a split set, where the files came from and a
    request count. The shell helper's file_path/repo_source/quantization/first_seen map onto
    path/repo/quant/downloaded. Rows that existed before are 'legacy': cleanup leaves their files alone
    unless the user names them."""
    had_count = any(name == "total_requests" for name, _, _ in _columns(conn, "model_inventory"))
    _rebuild(conn, "model_inventory", _INVENTORY_DDL, _INVENTORY_MAP, _INVENTORY_DEFAULTS)
    if not had_count:
        conn.execute("""UPDATE model_inventory SET total_requests =
                        (SELECT COUNT(*) FROM model_usage WHERE model_usage.model = model_inventory.model)""")


def m005_log_cursors(conn: sqlite3.Connection) -> None:
    conn.execute(_CURSOR_DDL)


def m006_app_state(conn: sqlite3.Connection) -> None:
    conn.execute(_APP_STATE_DDL)


def m007_model_measurements(conn: sqlite3.Connection) -> None:
    conn.execute(_MEASUREMENTS_DDL)


MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    m001_seed_tables,
    m002_usage_request_columns,
    m003_usage_indexes,
    m004_inventory_details,
    m005_log_cursors,
    m006_app_state,
    m007_model_measurements,
)


def fresh_schema() -> tuple[str, ...]:
    """The statements that make an empty database the current schema in one step, every migration recorded
    as applied. The framework's shell helper (.agents/scripts/local-model-helper.sh) runs this very text
    when it is first to open the database, and a test compares the two, and this with the step-by-step
    result, so neither can drift."""
    names = ",\n    ".join(f"('{fn.__name__}', datetime('now'))" for fn in MIGRATIONS)
    return (
        _MIGRATIONS_DDL,
        _USAGE_DDL.format(name="model_usage", extra=""),
        *_USAGE_INDEXES,
        _INVENTORY_DDL.format(name="model_inventory", extra=""),
        _CURSOR_DDL,
        _APP_STATE_DDL,
        _MEASUREMENTS_DDL,
        f"INSERT INTO schema_migrations (name, applied) VALUES\n    {names}",
    )


def _create_fresh(conn: sqlite3.Connection) -> list[str]:
    """An empty database (no table at all) gets the current schema at once; [] when another process got
    there first, or the database is not empty."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table'").fetchone():
            conn.execute("COMMIT")
            return []
        for statement in fresh_schema():
            conn.execute(statement)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return [fn.__name__ for fn in MIGRATIONS]


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Apply the migrations this database has not recorded; returns their names. An empty database is made
    at once (fresh_schema). Each migration runs in its own IMMEDIATE transaction and re-checks the record
    inside it, so two processes opening a new database at once apply each migration exactly once."""
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table'").fetchone():
        created = _create_fresh(conn)
        if created:
            return created
    conn.execute(_MIGRATIONS_DDL)
    done = {r[0] for r in conn.execute("SELECT name FROM schema_migrations")}
    applied = []
    for fn in MIGRATIONS:
        if fn.__name__ in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("SELECT 1 FROM schema_migrations WHERE name = ?", (fn.__name__,)).fetchone():
                conn.execute("COMMIT")
                continue
            fn(conn)
            conn.execute(
                "INSERT INTO schema_migrations (name, applied) VALUES (?, ?)", (fn.__name__, clock.sqlite_text())
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        applied.append(fn.__name__)
    return applied


# ---- the older usage.db ---------------------------------------------------------------------------------

LEGACY_IMPORT_KEY = "legacy_usage_db_imported"


def import_legacy_usage_db(conn: sqlite3.Connection, legacy: Path) -> int:
    """Copy the rows of the shell helper's older usage.db into ours, once: the import is recorded in
    app_state in the same transaction, so it never runs twice. The old file is only read."""
    if not legacy.is_file():
        return 0
    if conn.execute("SELECT 1 FROM app_state WHERE key = ?", (LEGACY_IMPORT_KEY,)).fetchone():
        return 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        if conn.execute("SELECT 1 FROM app_state WHERE key = ?", (LEGACY_IMPORT_KEY,)).fetchone():
            conn.execute("COMMIT")
            return 0
        try:
            conn.execute("ATTACH DATABASE ? AS legacy", (f"file:{quote(str(legacy))}?mode=ro",))
            copied = _copy_legacy_tables(conn)
            note = {"path": str(legacy), "usage_rows": copied[0], "inventory_rows": copied[1]}
        except sqlite3.DatabaseError as exc:
            # A damaged old file must not keep ours from opening; say what happened in the record.
            note = {"path": str(legacy), "error": str(exc)}
        conn.execute(
            "INSERT INTO app_state (key, value, updated) VALUES (?, ?, ?)",
            (LEGACY_IMPORT_KEY, json.dumps(note), clock.sqlite_text()),
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    finally:
        if any(r[1] == "legacy" for r in conn.execute("PRAGMA database_list")):
            conn.execute("DETACH DATABASE legacy")
    return note.get("usage_rows", 0)


def _copy_legacy_tables(conn: sqlite3.Connection) -> tuple[int, int]:
    tables = [r[0] for r in conn.execute("SELECT name FROM legacy.sqlite_master WHERE type = 'table'")]
    usage_rows = inventory_rows = 0
    for table in tables:
        cols = _columns(conn, table, schema="legacy")
        names = {name for name, _, _ in cols}
        if "model" not in names:
            continue
        if names & {"tokens_in", "tokens_out"}:
            usage_rows += _copy_legacy_usage(conn, table, cols)
        elif names & {"path", "file_path"}:
            targets, exprs = _select_list(cols, _INVENTORY_MAP, _INVENTORY_DEFAULTS)
            cur = conn.execute(
                f"INSERT OR IGNORE INTO main.model_inventory ({', '.join(targets)}) "
                f'SELECT {", ".join(exprs)} FROM legacy."{table}"'
            )
            inventory_rows += cur.rowcount
        elif names & {"first_used", "last_used", "total_requests"}:
            inventory_rows += _copy_legacy_access(conn, table, cols)
    return usage_rows, inventory_rows


def _copy_legacy_usage(conn: sqlite3.Connection, table: str, cols: list) -> int:
    """Request rows, with fresh ids and no request keys (those are only unique within the database that made
    them). The shell helper copied this file into ours once already and kept it: a request ours holds (same
    model, time, tokens and duration) is not copied again."""
    pairs = [(t, e) for t, e in zip(*_select_list(cols, _USAGE_MAP, {}), strict=True) if t != "request_key"]
    targets = [t for t, _ in pairs]
    same = " AND ".join(f"u.{c} IS n.{c}" for c in _SAME_REQUEST if c in targets)
    cur = conn.execute(
        f"INSERT INTO main.model_usage ({', '.join(targets)}) SELECT {', '.join(f'n.{t}' for t in targets)} "
        f"FROM (SELECT {', '.join(f'{e} AS {t}' for t, e in pairs)}, rowid AS old_rowid "
        f'FROM legacy."{table}") AS n '
        f"WHERE NOT EXISTS (SELECT 1 FROM main.model_usage AS u WHERE {same}) ORDER BY n.old_rowid"
    )
    return cur.rowcount


def _copy_legacy_access(conn: sqlite3.Connection, table: str, cols: list) -> int:
    """model_access rows become inventory rows without a file (their history: first and last use, requests).
    A model ours knows keeps its row, with the later last use and the larger count (the shell helper may have
    copied these very counts into ours already)."""
    targets, exprs = _select_list(cols, _ACCESS_MAP, _ACCESS_DEFAULTS)
    cur = conn.execute(
        f"INSERT INTO main.model_inventory ({', '.join(targets)}) "
        f'SELECT {", ".join(exprs)} FROM legacy."{table}" WHERE model IS NOT NULL '
        f"ON CONFLICT (model) DO UPDATE SET "
        f"last_used = CASE WHEN excluded.last_used > COALESCE(model_inventory.last_used, '') "
        f"THEN excluded.last_used ELSE model_inventory.last_used END, "
        f"total_requests = MAX(COALESCE(model_inventory.total_requests, 0), COALESCE(excluded.total_requests, 0))"
    )
    return cur.rowcount
