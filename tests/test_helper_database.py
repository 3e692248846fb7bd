"""The framework's helper answers from the usage database itself where SQLite suffices: the session-start
nudge (without starting Python unless a nudge is due), and usage and cleanup summaries when aidevops-local is
absent. Its answers are compared with the tool's own on the same database, and the schema it creates on first
use is the tool's, statement for statement; the seed's nine acceptance checks run literally."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from aidevops_local.core.database import migrations

REPO = Path(__file__).resolve().parent.parent
HELPER = REPO / ".agents" / "scripts" / "local-model-helper.sh"
TOOL = Path(sys.executable).parent / "aidevops-local"
GIB = 1 << 30
SYSTEM_PATH = "/usr/bin:/bin"  # sqlite3 and bash, but no aidevops-local


def run_helper(home: Path, *args: str, tool: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("AIDEVOPS_LOCAL_BIN", "PATH")}
    env.update(AIDEVOPS_HOME=str(home), PATH=SYSTEM_PATH)
    if tool is not None:
        env["AIDEVOPS_LOCAL_BIN"] = str(tool)
    return subprocess.run(
        [shutil.which("bash"), str(HELPER), *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def run_tool(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "AIDEVOPS_HOME": str(home)}
    return subprocess.run([str(TOOL), *args], capture_output=True, text=True, env=env, timeout=120, check=False)


def database(home: Path) -> Path:
    return home / ".agent-workspace" / "memory" / "local-models.db"


def make_home(root: Path, models: list[tuple[str, int, int, str]], settings: str = "") -> Path:
    """A root whose database the tool made, holding `models`: (name, size, days since last use, source),
    each with a real (sparse) file of that size in the models folder."""
    home = root / "home"
    assert run_tool(home, "usage").returncode == 0  # the tool creates and migrates its database
    conn = sqlite3.connect(database(home))
    for name, size, idle_days, source in models:
        path = home / "models" / "org" / f"{name}.gguf"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            f.truncate(size)
        conn.execute(
            "INSERT INTO model_inventory (model, path, size_bytes, downloaded, last_used, source) "
            "VALUES (?, ?, ?, datetime('now', ?), datetime('now', ?), ?)",
            (name, str(path), size, f"-{idle_days + 5} days", f"-{idle_days} days", source),
        )
    conn.commit()
    conn.close()
    if settings:
        (home / "local-models").mkdir(parents=True, exist_ok=True)
        (home / "local-models" / "config.toml").write_text(settings, encoding="utf-8")
    return home


def twin(home: Path, name: str) -> Path:
    """An identical copy of a root, so the helper and the tool each get the first nudge of the day."""
    copy = home.parent / name
    # cp keeps the model files sparse: shutil.copytree writes every zero (about 20 GB a test, kept by pytest)
    subprocess.run(["cp", "-a", "--sparse=always", str(home), str(copy)], check=True)
    assert sum(p.stat().st_blocks for p in copy.rglob("*.gguf")) == 0, "the copy's model files take disk space"
    with sqlite3.connect(database(copy)) as conn:
        conn.execute("UPDATE model_inventory SET path = replace(path, ?, ?)", (str(home), str(copy)))
    return copy


def recording_tool(tmp_path: Path) -> tuple[Path, Path]:
    """An aidevops-local that only records that it was started: the fast path must not start it."""
    record = tmp_path / "started"
    stub = tmp_path / "recording-aidevops-local"
    stub.write_text(f"#!/bin/sh\necho \"$@\" >> '{record}'\n", encoding="utf-8")
    stub.chmod(0o755)
    return stub, record


STALE = [("big-old", 3 * GIB + 123_456_789, 40, "pulled"), ("mid-old", 2 * GIB + 98_765_432, 35, "pulled")]


# ---- the schema ----------------------------------------------------------------------------------------


def helper_schema() -> str:
    text = HELPER.read_text(encoding="utf-8")
    match = re.search(r"^schema_sql\(\) \{\n\tprint_lines <<'SQL'\n(.*?)\nSQL\n", text, re.DOTALL | re.MULTILINE)
    assert match, "the helper has no schema_sql heredoc"
    return match.group(1)


def test_the_helpers_schema_is_the_tools_fresh_schema_text():
    assert helper_schema() == ";\n".join(migrations.fresh_schema()) + ";"


def shape(conn: sqlite3.Connection) -> dict:
    """Tables with their columns, and indexes with their columns and uniqueness: what a schema means."""
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    result = {}
    for table in tables:
        columns = [r[1:] for r in conn.execute(f'PRAGMA table_info("{table}")')]
        indexes = sorted(
            (unique, tuple(r[2] for r in conn.execute(f'PRAGMA index_info("{name}")')))
            for _, name, unique, *_ in conn.execute(f'PRAGMA index_list("{table}")')
        )
        result[table] = (columns, indexes)
    return result


def test_fresh_schema_is_what_the_migrations_build_step_by_step(tmp_path):
    stepwise = sqlite3.connect(tmp_path / "stepwise.db", isolation_level=None)
    stepwise.execute("CREATE TABLE placeholder (x)")  # not empty: migrate() takes the step-by-step road
    assert migrations.migrate(stepwise) == [fn.__name__ for fn in migrations.MIGRATIONS]
    stepwise.execute("DROP TABLE placeholder")
    fresh = sqlite3.connect(tmp_path / "fresh.db", isolation_level=None)
    assert migrations.migrate(fresh) == [fn.__name__ for fn in migrations.MIGRATIONS]
    assert migrations.migrate(fresh) == []
    assert shape(fresh) == shape(stepwise)


def test_the_helper_creates_the_database_on_first_use_and_the_tool_adopts_it_as_is(tmp_path):
    home = tmp_path / "home"
    done = run_helper(home, "usage", "--json")
    assert (done.returncode, done.stdout.strip(), done.stderr) == (0, "[]", "")
    conn = sqlite3.connect(database(home), isolation_level=None)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert migrations.migrate(conn) == []  # every migration recorded: the tool has nothing to do
    reference = sqlite3.connect(tmp_path / "reference.db", isolation_level=None)
    migrations.migrate(reference)
    assert shape(conn) == shape(reference)
    conn.close()
    assert run_tool(home, "usage", "--json").returncode == 0


# ---- nudge ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("as_json", [False, True])
def test_nudge_without_the_tool_says_what_the_tool_says(tmp_path, as_json):
    home = make_home(tmp_path, STALE + [("fresh", 6 * GIB, 2, "pulled"), ("theirs", 9 * GIB, 90, "external")])
    other = twin(home, "twin")
    words = ["nudge", "--json"] if as_json else ["nudge"]
    ours, theirs = run_helper(home, *words), run_tool(other, *words)
    assert ours.returncode == theirs.returncode == 0, ours.stderr + theirs.stderr
    assert ours.stdout == theirs.stdout
    assert "2 local models unused for 30+ days take 5.2 GB" in ours.stdout
    if as_json:
        assert json.loads(ours.stdout)["stale_bytes"] == STALE[0][1] + STALE[1][1]
    # Once a day, whoever said it: the helper heeds the tool's record and the tool the helper's.
    assert run_helper(home, *words).stdout == run_helper(other, *words).stdout == ("null\n" if as_json else "")
    assert run_tool(home, *words).stdout == ("null\n" if as_json else "")


def test_nudge_with_nothing_to_say_never_starts_the_tool(tmp_path):
    stub, record = recording_tool(tmp_path)
    cases = {
        "below the threshold": ([("small-old", 4 * GIB, 40, "pulled")], ""),
        "recently used": ([("big-new", 8 * GIB, 10, "pulled")], ""),
        "not ours to remove": ([("external-old", 8 * GIB, 60, "external")], ""),
        "a higher threshold": (STALE, "stale_nudge_gb = 6.5\n"),
        "a longer cutoff": (STALE, "stale_days = 60  # two months\n"),
    }
    for number, (case, (models, settings)) in enumerate(cases.items()):
        home = make_home(tmp_path / str(number), models, settings)
        done = run_helper(home, "nudge", tool=stub)
        assert (done.returncode, done.stdout, done.stderr) == (0, "", ""), case
    nobody = tmp_path / "never-set-up"
    assert run_helper(nobody, "nudge", "--json", tool=stub).stdout == "null\n"
    assert not nobody.exists(), "a nudge must not create anything for someone who never set up local models"
    assert not record.exists(), f"the tool was started: {record.read_text()}"


def test_nudge_settings_move_the_threshold_and_the_cutoff(tmp_path):
    home = make_home(tmp_path, [("old", 2 * GIB, 40, "pulled")], "stale_days = 20\nstale_nudge_gb = 1.5\n")
    other = twin(home, "twin")
    ours, theirs = run_helper(home, "nudge"), run_tool(other, "nudge")
    assert (
        ours.stdout
        == theirs.stdout
        == ("1 local model unused for 20+ days take 2.0 GB: run `aidevops-local cleanup` to review and remove them.\n")
    )


def test_a_due_nudge_is_confirmed_by_the_tool_when_it_is_installed(tmp_path):
    home = make_home(tmp_path, STALE)
    other = twin(home, "twin")
    through_helper = run_helper(home, "nudge", tool=TOOL)
    assert through_helper.stdout == run_tool(other, "nudge").stdout != ""
    assert run_helper(home, "nudge", tool=TOOL).stdout == ""


def test_a_setting_the_helper_cannot_read_goes_to_the_tool(tmp_path):
    home = make_home(tmp_path, STALE, "stale_nudge_gb = 'lots'\n")
    stub, record = recording_tool(tmp_path)
    assert run_helper(home, "nudge", tool=stub).returncode == 0
    assert record.read_text() == "nudge\n"


# ---- usage and cleanup without the tool ------------------------------------------------------------------


def test_usage_without_the_tool_counts_what_the_tool_counts(tmp_path):
    home = make_home(tmp_path, [])
    with sqlite3.connect(database(home)) as conn:
        for model, day, tokens_in, tokens_out in [("a", "2026-10-30", 5, 7), ("a", "2026-11-02", 11, 13)]:
            conn.execute(
                "INSERT INTO model_usage (model, timestamp, tokens_in, tokens_out) VALUES (?, ?, ?, ?)",
                (model, f"{day} 12:00:00", tokens_in, tokens_out),
            )
        conn.execute("INSERT INTO model_usage (model, tokens_in, tokens_out) VALUES ('b', 3, 4)")
    every = json.loads(run_helper(home, "usage", "--json").stdout)
    assert [(r["model"], r["requests"], r["tokens_in"], r["tokens_out"]) for r in every] == [
        ("a", 2, 16, 20),
        ("b", 1, 3, 4),
    ]
    tool = json.loads(run_tool(home, "usage", "--json").stdout)
    assert json.dumps(tool).count('"requests"') >= 2  # the tool reports the same models
    since = json.loads(run_helper(home, "usage", "--since", "2026-11-01", "--json").stdout)
    assert [(r["model"], r["requests"]) for r in since] == [("a", 1), ("b", 1)]
    table = run_helper(home, "usage", "--since", "7d")
    assert table.stdout.splitlines() == [
        "model\trequests\ttokens in\ttokens out\tlast used",
        table.stdout.splitlines()[1],
    ]
    assert table.stdout.splitlines()[1].startswith("b\t1\t3\t4\t")
    bad = run_helper(home, "usage", "--since", "last tuesday")
    assert bad.returncode == 2 and "--since 'last tuesday'" in bad.stderr and bad.stdout == ""


def test_cleanup_dry_run_without_the_tool_lists_what_the_tool_would(tmp_path):
    home = make_home(tmp_path, STALE + [("fresh", GIB, 1, "pulled")])
    ours = json.loads(run_helper(home, "cleanup", "--dry-run", "--json").stdout)
    assert [(m["model"], m["size_bytes"]) for m in ours] == [(n, s) for n, s, _, _ in STALE]
    theirs = json.loads(run_tool(home, "cleanup", "--dry-run", "--json").stdout)
    assert sorted(m["model"] for m in theirs["models"] if m["removable"]) == sorted(m["model"] for m in ours)
    refused = run_helper(home, "cleanup", "--yes")
    assert refused.returncode == 4 and "cleanup --dry-run" in refused.stderr and refused.stdout == ""


# ---- the seed's acceptance checks, as written -----------------------------------------------------------

SEED_PATTERNS = [
    (r"\| `local`", ".agents/tools/context/model-routing.md"),
    ("llama-server", ".agents/tools/local-models/local-models.md"),
    ("Q[456]_K_M", ".agents/tools/local-models/huggingface.md"),
    ("CREATE TABLE model_usage", ".agents/scripts/local-model-helper.sh"),
    ("-30 days", ".agents/scripts/local-model-helper.sh"),
    ("local-models", ".agents/AGENTS.md"),
]
SEED_COMMANDS = [
    "grep -c 'cmd_' .agents/scripts/local-model-helper.sh | awk '{if ($1 >= 10) exit 0; else exit 1}'",
    "shellcheck .agents/scripts/local-model-helper.sh",
    "bash tests/lint-agents.sh --markdown",
]


@pytest.mark.parametrize(("pattern", "path"), SEED_PATTERNS)
def test_seed_pattern_check(pattern, path):
    assert re.search(pattern, (REPO / path).read_text(encoding="utf-8")), f"{pattern!r} not in {path}"


@pytest.mark.parametrize("command", SEED_COMMANDS)
def test_seed_command_check(command):
    done = subprocess.run(["bash", "-c", command], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_what_sqlite_alone_cannot_answer_goes_to_the_tool(tmp_path):
    """No sqlite3 on PATH, or a database the framework's earlier helper made (other columns, no migrations
    record): the tool answers (and adopts that database); without the tool the nudge stays silent."""
    stub, record = recording_tool(tmp_path)
    home = make_home(tmp_path, [("small", GIB, 40, "pulled")])
    env = {**os.environ, "AIDEVOPS_HOME": str(home), "AIDEVOPS_LOCAL_BIN": str(stub), "PATH": str(tmp_path)}
    done = subprocess.run([shutil.which("bash"), str(HELPER), "nudge"], env=env, capture_output=True, text=True)
    assert (done.returncode, record.read_text()) == (0, "nudge\n"), done.stderr

    old = tmp_path / "old-helper"
    database(old).parent.mkdir(parents=True)
    with sqlite3.connect(database(old)) as conn:
        conn.execute(
            "CREATE TABLE model_inventory (model TEXT PRIMARY KEY, file_path TEXT NOT NULL,"
            " size_bytes INTEGER, last_used TEXT NOT NULL)"
        )
        conn.execute("INSERT INTO model_inventory VALUES ('m', '/x.gguf', 9000000000, '2020-01-01 00:00:00')")
    assert run_helper(old, "nudge", tool=stub).returncode == 0
    assert record.read_text() == "nudge\nnudge\n"
    assert run_helper(old, "nudge").stdout == ""
