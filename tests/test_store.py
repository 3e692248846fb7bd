"""The SQLite store with real SQLite files: exact schema, adoption of the databases earlier helpers left,
damaged files, and two processes writing at once."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from aidevops_local.cli.main import main as cli
from aidevops_local.core.database import migrations, store
from aidevops_local.core.system.config import paths
from aidevops_local.core.system.errors import DatabaseError

REPO = Path(__file__).resolve().parents[1]

USAGE_COLUMNS = [
    # name, type, not null, default, primary key
    ("id", "INTEGER", 0, None, 1),
    ("model", "TEXT", 1, None, 0),
    ("timestamp", "TEXT", 1, "datetime('now')", 0),
    ("tokens_in", "INTEGER", 0, "0", 0),
    ("tokens_out", "INTEGER", 0, "0", 0),
    ("duration_ms", "INTEGER", 0, "0", 0),
    ("session_id", "TEXT", 0, None, 0),
    ("request_key", "TEXT", 0, None, 0),
    ("tok_per_sec", "REAL", 0, None, 0),
    ("cache_tokens", "INTEGER", 0, "0", 0),
    ("status", "TEXT", 1, "'ok'", 0),
]
INVENTORY_COLUMNS = [
    ("model", "TEXT", 0, None, 1),
    ("path", "TEXT", 1, None, 0),
    ("size_bytes", "INTEGER", 0, None, 0),
    ("downloaded", "TEXT", 0, "datetime('now')", 0),
    ("last_used", "TEXT", 0, None, 0),
    ("repo", "TEXT", 0, None, 0),
    ("quant", "TEXT", 0, None, 0),
    ("sha256", "TEXT", 0, None, 0),
    ("files", "TEXT", 0, None, 0),
    ("source", "TEXT", 1, "'external'", 0),
    ("total_requests", "INTEGER", 0, "0", 0),
]
CURSOR_COLUMNS = [
    ("file", "TEXT", 0, None, 1),
    ("session_id", "TEXT", 0, None, 0),
    ("offset", "INTEGER", 1, "0", 0),
    ("state", "TEXT", 1, "'{}'", 0),
    ("updated", "TEXT", 1, "datetime('now')", 0),
]
APP_STATE_COLUMNS = [
    ("key", "TEXT", 0, None, 1),
    ("value", "TEXT", 0, None, 0),
    ("updated", "TEXT", 1, "datetime('now')", 0),
]


def columns(table: str, path: Path | None = None) -> list[tuple]:
    with sqlite3.connect(path or paths().database) as conn:
        return [tuple(r[1:]) for r in conn.execute(f"PRAGMA table_info({table})")]


def plain(sql: str, params=()) -> list[tuple]:
    """What the framework's other tools do: plain sqlite3, no peewee."""
    conn = sqlite3.connect(paths().database)
    try:
        with conn:
            return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def seed_database(path: Path, script: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.executescript(script)
    conn.commit()
    conn.close()


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---- schema and migrations ------------------------------------------------------------------------------


def test_empty_database_migrates_to_the_exact_columns():
    store.database()
    assert columns("model_usage") == USAGE_COLUMNS
    assert columns("model_inventory") == INVENTORY_COLUMNS
    assert columns("usage_log_cursor") == CURSOR_COLUMNS
    assert columns("app_state") == APP_STATE_COLUMNS
    assert [r[0] for r in plain("SELECT name FROM schema_migrations ORDER BY rowid")] == [
        "m001_seed_tables",
        "m002_usage_request_columns",
        "m003_usage_indexes",
        "m004_inventory_details",
        "m005_log_cursors",
        "m006_app_state",
        "m007_model_measurements",
    ]
    assert plain("PRAGMA journal_mode") == [("wal",)]


def test_migrations_run_once_and_the_database_is_cached_per_root(tmp_path, monkeypatch):
    first = store.database()
    assert store.database() is first
    conn = sqlite3.connect(paths().database)
    assert migrations.migrate(conn) == []  # everything recorded: nothing runs twice
    conn.close()
    monkeypatch.setenv("AIDEVOPS_HOME", str(tmp_path / "other-root"))
    second = store.database()
    assert second is not first and Path(second.database) == paths().database
    store.ModelUsage.create(model="only-here")
    monkeypatch.setenv("AIDEVOPS_HOME", str(Path(first.database).parents[2]))
    store.database()
    assert store.ModelUsage.select().count() == 0


def test_timestamps_are_stored_as_sqlite_utc_text():
    store.database()
    when = datetime(2026, 3, 1, 14, 30, 5, 999, tzinfo=timezone(timedelta(hours=2)))
    store.ModelUsage.create(model="m", timestamp=when)
    store.ModelInventory.create(model="m", path="/m.gguf", last_used=when, source="pulled")
    assert plain("SELECT timestamp FROM model_usage") == [("2026-03-01 12:30:05",)]
    utc = UTC
    assert store.ModelInventory.get_by_id("m").last_used == datetime(2026, 3, 1, 12, 30, 5, tzinfo=utc)
    # The framework's own plain-sqlite3 queries keep working on our rows.
    stale = "SELECT model FROM model_inventory WHERE last_used < datetime('now', '-30 days')"
    assert plain(stale) == [("m",)]
    plain("INSERT INTO model_usage (model, tokens_in, tokens_out, duration_ms) VALUES ('seed-style', 1, 2, 3)")
    row = store.ModelUsage.get(store.ModelUsage.model == "seed-style")
    assert (row.tokens_in, row.status, row.request_key) == (1, "ok", None)
    assert abs(row.timestamp - datetime.now(UTC)) < timedelta(minutes=1)


# ---- databases that already exist -------------------------------------------------------------------------

SEED_SCHEMA = """
CREATE TABLE model_usage (
    model TEXT NOT NULL,
    timestamp TEXT NOT NULL DEFAULT (datetime('now')),
    tokens_in INTEGER DEFAULT 0,
    tokens_out INTEGER DEFAULT 0,
    duration_ms INTEGER DEFAULT 0
);
CREATE TABLE model_inventory (
    model TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    size_bytes INTEGER,
    downloaded TEXT DEFAULT (datetime('now')),
    last_used TEXT
);
"""


def test_seed_schema_database_is_adopted_without_losing_a_row():
    rows = "".join(
        f"INSERT INTO model_usage VALUES ('qwen', '2026-01-0{d} 10:00:00', {d}, {2 * d}, {100 * d});"
        for d in range(1, 6)
    )
    seed_database(
        paths().database,
        SEED_SCHEMA
        + rows
        + """
        INSERT INTO model_inventory VALUES ('qwen', '/models/qwen.gguf', 4000000000, '2025-12-01 09:00:00',
                                            '2026-01-05 10:00:00');""",
    )
    store.database()
    assert columns("model_usage") == USAGE_COLUMNS and columns("model_inventory") == INVENTORY_COLUMNS
    assert plain("SELECT id, model, timestamp, tokens_in, tokens_out, duration_ms, status FROM model_usage") == [
        (d, "qwen", f"2026-01-0{d} 10:00:00", d, 2 * d, 100 * d, "ok") for d in range(1, 6)
    ]
    inv = store.ModelInventory.get_by_id("qwen")
    assert (inv.path, inv.size_bytes, inv.source, inv.total_requests) == ("/models/qwen.gguf", 4000000000, "legacy", 5)
    assert inv.downloaded == datetime(2025, 12, 1, 9, tzinfo=UTC)


def test_shell_helper_database_is_adopted_with_its_columns_mapped():
    seed_database(
        paths().database,
        """
        CREATE TABLE model_usage (id INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT, session_id TEXT,
            timestamp TEXT, tokens_in INTEGER, tokens_out INTEGER, duration_ms INTEGER, tok_per_sec REAL);
        CREATE TABLE model_inventory (model TEXT PRIMARY KEY, file_path TEXT, repo_source TEXT,
            size_bytes INTEGER, quantization TEXT, first_seen TEXT, last_used TEXT, total_requests INTEGER,
            notes TEXT);
        INSERT INTO model_usage VALUES (7, 'llama', 'sess-a', '2026-02-01T08:00:00Z', 10, 20, 300, 41.5);
        INSERT INTO model_usage VALUES (9, 'llama', 'sess-b', '2026-02-02 09:00:00', 11, 21, 310, 40.0);
        INSERT INTO model_usage VALUES (12, 'llama', NULL, 1767225600, 1, 1, 1, NULL);
        INSERT INTO model_inventory VALUES ('llama', '/old/llama.gguf', 'org/llama-GGUF', 123, 'Q4_K_M',
            '2026-01-01T00:00:00+02:00', '2026-02-02 09:00:00', 42, 'my note');
    """,
    )
    store.database()
    assert plain("SELECT id, session_id, timestamp, tokens_in, tok_per_sec FROM model_usage ORDER BY id") == [
        (7, "sess-a", "2026-02-01 08:00:00", 10, 41.5),
        (9, "sess-b", "2026-02-02 09:00:00", 11, 40.0),
        (12, None, "2026-01-01 00:00:00", 1, None),
    ]
    inv = store.ModelInventory.get_by_id("llama")
    assert (inv.path, inv.repo, inv.quant, inv.total_requests, inv.source) == (
        "/old/llama.gguf",
        "org/llama-GGUF",
        "Q4_K_M",
        42,
        "legacy",
    )
    assert inv.downloaded == datetime(2025, 12, 31, 22, tzinfo=UTC)
    # A column we do not know is somebody's data: it stays.
    assert columns("model_inventory")[: len(INVENTORY_COLUMNS)] == INVENTORY_COLUMNS
    assert plain("SELECT notes FROM model_inventory") == [("my note",)]
    # New rows continue after the old ids.
    assert store.ModelUsage.create(model="llama").id == 13


def test_older_usage_db_is_imported_once_and_left_as_it_was():
    legacy = paths().legacy_dir / "usage.db"
    seed_database(
        legacy,
        SEED_SCHEMA
        + """
        INSERT INTO model_usage VALUES ('phi', '2025-10-01 10:00:00', 5, 6, 7);
        INSERT INTO model_usage VALUES ('phi', '2025-10-02 10:00:00', 8, 9, 10);
        INSERT INTO model_inventory VALUES ('phi', '/old/phi.gguf', 99, '2025-09-01 00:00:00', NULL);""",
    )
    before = sha(legacy)
    store.database()
    assert plain("SELECT model, tokens_in, tokens_out FROM model_usage") == [("phi", 5, 6), ("phi", 8, 9)]
    assert store.ModelInventory.get_by_id("phi").source == "legacy"
    # A new process (the app restarted) opens the same database: nothing is imported again.
    done = subprocess.run(
        [sys.executable, "-c", "from aidevops_local.core.database import store; store.database()"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    assert plain("SELECT COUNT(*) FROM model_usage") == [(2,)]
    assert sha(legacy) == before


# The shell helper's oldest layout (its ~/.aidevops/local-models/usage.db): requests in `usage`, and per model
# its first and last use and request count in `model_access`.
OLDEST_USAGE_DB = """
    CREATE TABLE usage (id INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT NOT NULL, timestamp TEXT,
        tokens_in INTEGER, tokens_out INTEGER, duration_ms INTEGER, tok_per_sec REAL);
    CREATE TABLE model_access (model TEXT PRIMARY KEY, first_used TEXT, last_used TEXT, total_requests INTEGER);
    INSERT INTO usage VALUES (1, 'old', '2025-10-01 10:00:00', 5, 6, 7, 1.5);
    INSERT INTO usage VALUES (2, 'old', '2025-10-02 10:00:00', 8, 9, 10, 2.5);
    INSERT INTO model_access VALUES ('old', '2025-09-01 00:00:00', '2025-10-02 10:00:00', 2);
    INSERT INTO model_access VALUES ('gone', '2025-08-01T00:00:00Z', '2025-08-15 12:00:00', 11);"""


def test_older_usage_db_keeps_its_model_access_rows_and_lists_no_model(capsys):
    legacy = paths().legacy_dir / "usage.db"
    seed_database(legacy, OLDEST_USAGE_DB)
    store.database()
    assert plain("SELECT model, timestamp, tokens_in, tokens_out FROM model_usage ORDER BY id") == [
        ("old", "2025-10-01 10:00:00", 5, 6),
        ("old", "2025-10-02 10:00:00", 8, 9),
    ]
    rows = {r.model: r for r in store.ModelInventory.select()}
    assert set(rows) == {"old", "gone"}
    assert (rows["old"].last_used, rows["old"].downloaded, rows["old"].total_requests, rows["old"].source) == (
        datetime(2025, 10, 2, 10, tzinfo=UTC),
        datetime(2025, 9, 1, tzinfo=UTC),
        2,
        "legacy",
    )
    assert rows["gone"].downloaded == datetime(2025, 8, 1, tzinfo=UTC) and rows["gone"].total_requests == 11
    # History, not models: no file of theirs is known, and the database file is never one.
    assert cli(["models", "--json"]) == 0
    assert capsys.readouterr().out.strip() == "[]"
    from aidevops_local.core.maintenance import doctor

    assert doctor.check_models(hashes=False).summary == "no models recorded yet"


def test_older_usage_db_the_helper_already_copied_is_not_counted_twice():
    """The shell helper copied usage.db into local-models.db and kept the old file: importing it again must
    neither double its requests nor raise its request counts."""
    seed_database(paths().legacy_dir / "usage.db", OLDEST_USAGE_DB)
    seed_database(
        paths().database,
        """
        CREATE TABLE model_usage (id INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT NOT NULL, session_id TEXT
            DEFAULT '', timestamp TEXT, tokens_in INTEGER, tokens_out INTEGER, duration_ms INTEGER,
            tok_per_sec REAL);
        CREATE TABLE model_inventory (model TEXT PRIMARY KEY, file_path TEXT NOT NULL DEFAULT '', repo_source TEXT,
            size_bytes INTEGER, quantization TEXT, first_seen TEXT, last_used TEXT, total_requests INTEGER);
        INSERT INTO model_usage (model, session_id, timestamp, tokens_in, tokens_out, duration_ms, tok_per_sec)
            SELECT 'old', '', '2025-10-01 10:00:00', 5, 6, 7, 1.5;
        INSERT INTO model_usage (model, session_id, timestamp, tokens_in, tokens_out, duration_ms, tok_per_sec)
            SELECT 'old', '', '2025-10-02 10:00:00', 8, 9, 10, 2.5;
        INSERT INTO model_usage (model, session_id, timestamp, tokens_in, tokens_out, duration_ms, tok_per_sec)
            SELECT 'old', 's', '2025-11-01 10:00:00', 1, 1, 1, 1.0;
        INSERT INTO model_inventory (model, first_seen, last_used, total_requests)
            VALUES ('old', '2025-09-01 00:00:00', '2025-11-01 10:00:00', 3);""",
    )
    store.database()
    assert plain("SELECT COUNT(*) FROM model_usage") == [(3,)]
    old = store.ModelInventory.get_by_id("old")
    assert old.total_requests == 3 and old.last_used == datetime(2025, 11, 1, 10, tzinfo=UTC)
    assert store.ModelInventory.get_by_id("gone").total_requests == 11


def test_damaged_older_usage_db_does_not_keep_ours_from_opening():
    legacy = paths().legacy_dir / "usage.db"
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(os.urandom(8192))
    store.database()
    assert "error" in store.get_state(migrations.LEGACY_IMPORT_KEY)
    assert store.ModelUsage.select().count() == 0


# ---- damaged files --------------------------------------------------------------------------------------


def test_a_file_that_is_not_a_database_is_a_clear_error_and_is_never_overwritten(capsys):
    db = paths().database
    db.parent.mkdir(parents=True)
    db.write_bytes(os.urandom(3 * 4096))
    before = sha(db)
    with pytest.raises(DatabaseError) as caught:
        store.database()
    assert "damaged" in caught.value.message and "--reset-db" in caught.value.hint
    assert cli(["usage"]) == 13
    assert "--reset-db" in capsys.readouterr().err
    assert sha(db) == before

    assert cli(["usage", "--reset-db"]) == 0
    [moved] = db.parent.glob("local-models.db.corrupt-*")
    assert sha(moved) == before  # kept, not deleted
    assert cli(["usage", "--json"]) == 0  # a fresh database from here on
    capsys.readouterr()
    assert cli(["usage", "--reset-db"]) == 12  # a healthy database is never moved aside
    assert db.exists() and moved.exists()


def test_a_malformed_database_is_a_clear_error():
    store.database()
    store.write(lambda: [store.ModelUsage.create(model=f"m{i}", request_key=f"k{i}", tokens_in=i) for i in range(3000)])
    store.close()
    db = paths().database
    data = bytearray(db.read_bytes())
    page = 4096
    data[2 * page :] = os.urandom(len(data) - 2 * page)  # page 1 (the schema) survives; the tables do not
    db.write_bytes(bytes(data))
    before = sha(db)
    with pytest.raises(DatabaseError) as caught:
        store.database()
        store.ModelUsage.select().count()
    assert "damaged" in caught.value.message
    assert sha(db) == before
    assert store.check_health() != "ok"
    moved = store.move_aside_damaged()
    assert sha(moved) == before and not db.exists()
    store.database()
    assert store.ModelUsage.select().count() == 0


# ---- two writers ----------------------------------------------------------------------------------------

WRITER = """
    import sys, time
    from aidevops_local.core.database import migrations, store
    name, n = sys.argv[1], 0
    store.database()  # both processes create and migrate the same new database at once
    deadline = time.monotonic() + 10
    inv = store.ModelInventory
    while time.monotonic() < deadline:
        def one():
            store.ModelUsage.create(model=name, request_key=f"{name}:{n}", tokens_in=n)
            (inv.insert(model=name, path="/m.gguf", total_requests=1)
             .on_conflict(conflict_target=[inv.model], update={inv.total_requests: inv.total_requests + 1})
             .execute())
        store.write(one)
        n += 1
        if n % 25 == 0:
            store.ModelUsage.select().where(store.ModelUsage.model == name).count()
    print(n)
"""


def test_two_processes_writing_for_ten_seconds_lose_nothing():
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(WRITER), name],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        for name in ("cli", "tray")
    ]
    results = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0 and "locked" not in err, err
    written = {name: int(out) for name, (out, _) in zip(("cli", "tray"), results, strict=True)}
    assert min(written.values()) > 100
    for name, n in written.items():
        counted = plain("SELECT COUNT(*), MAX(tokens_in) FROM model_usage WHERE model = ?", (name,))
        assert counted == [(n, n - 1)]
        assert plain("SELECT total_requests FROM model_inventory WHERE model = ?", (name,)) == [(n,)]
