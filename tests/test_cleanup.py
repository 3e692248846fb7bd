"""cleanup and the nudge with real files, real SQLite, a real served llama-server and a real clock jump
(libfaketime on a subprocess of the CLI)."""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aidevops_local.cli.main import main as cli
from aidevops_local.core.database import store
from aidevops_local.core.maintenance import cleanup
from aidevops_local.core.serving import server
from aidevops_local.core.system import config
from aidevops_local.core.system.config import paths

REPO = Path(__file__).resolve().parents[1]
GIB = 1024**3
FAKETIME = shutil.which("faketime")
needs_faketime = pytest.mark.skipif(
    FAKETIME is None, reason="faketime (libfaketime) is not installed: tests/install-deps.sh installs it"
)


def now() -> datetime:
    return datetime.now(UTC)


def add_model(
    name: str,
    files: list[Path],
    *,
    source: str = "pulled",
    downloaded: datetime | None = None,
    last_used: datetime | None = None,
) -> store.ModelInventory:
    store.database()
    return store.ModelInventory.create(
        model=name,
        path=str(files[0]),
        files=[str(f) for f in files],
        size_bytes=sum(f.stat().st_size for f in files),
        source=source,
        downloaded=downloaded or now(),
        last_used=last_used,
    )


def pulled_copy(source: Path, name: str) -> Path:
    """A model as `pull` leaves it: under models/<org>/<repo>/."""
    target = paths().models_dir / "org" / name / source.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def sparse(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def run_cli(*args: str, shift: str | None = None, stdin=subprocess.DEVNULL) -> subprocess.CompletedProcess:
    """The CLI in its own process; `shift` ("+31 days") moves its clock, SQLite's too, with libfaketime."""
    argv = [sys.executable, "-m", "aidevops_local", *args]
    if shift:
        argv = [FAKETIME, shift, *argv]
    return subprocess.run(argv, capture_output=True, text=True, stdin=stdin, cwd=REPO, timeout=120)


def as_json(done: subprocess.CompletedProcess) -> dict:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


# ---- cleanup ---------------------------------------------------------------------------------------------


@needs_faketime
def test_cleanup_after_31_days_on_a_real_clock_jump(tiny_gguf, tiny_split_gguf):
    single = pulled_copy(tiny_gguf, "tiny")
    parts = [pulled_copy(p, "tiny-split") for p in tiny_split_gguf]
    add_model("tiny", [single])
    add_model("tiny-split", parts)
    sizes = {"tiny": single.stat().st_size, "tiny-split": sum(p.stat().st_size for p in parts)}

    assert as_json(run_cli("cleanup", "--dry-run", "--json"))["models"] == []
    assert as_json(run_cli("cleanup", "--dry-run", "--json", shift="+29 days"))["models"] == []

    plan = as_json(run_cli("cleanup", "--dry-run", "--json", shift="+31 days"))
    assert {m["model"]: m["size_bytes"] for m in plan["models"]} == sizes
    assert plan["removable_bytes"] == sum(sizes.values())
    assert all(m["idle_days"] == 31 and m["removable"] for m in plan["models"])

    no_terminal = run_cli("cleanup", shift="+31 days")  # stdin is not a terminal and no --yes: ask, don't act
    assert no_terminal.returncode == 0 and "--yes" in no_terminal.stderr
    assert single.exists() and all(p.exists() for p in parts)

    done = as_json(run_cli("cleanup", "--yes", "--json", shift="+31 days"))
    assert sorted(done["removed"]) == ["tiny", "tiny-split"] and done["freed_bytes"] == sum(sizes.values())
    assert not single.exists() and not any(p.exists() for p in parts)
    assert not (paths().models_dir / "org").exists() and paths().models_dir.is_dir()
    assert store.ModelInventory.select().count() == 0


def test_last_use_counts_before_the_download_date(tiny_gguf):
    add_model(
        "used-lately",
        [pulled_copy(tiny_gguf, "used-lately")],
        downloaded=now() - timedelta(days=90),
        last_used=now() - timedelta(days=5),
    )
    add_model("never-used", [pulled_copy(tiny_gguf, "never-used")], downloaded=now() - timedelta(days=40))
    assert [m.model for m in cleanup.find_stale(days=30).models] == ["never-used"]
    assert [m.model for m in cleanup.find_stale(days=3).models] == ["never-used", "used-lately"]


def test_cleanup_never_removes_the_served_model(system_runtime, tiny_gguf, free_port, capsys):
    served = pulled_copy(tiny_gguf, "served")
    idle = pulled_copy(tiny_gguf, "idle")
    long_ago = now() - timedelta(days=60)
    add_model("served", [served], downloaded=long_ago)
    add_model("idle", [idle], downloaded=long_ago)
    server.serve(str(served), port=free_port())
    try:
        assert cli(["cleanup", "--yes", "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["removed"] == ["idle"]
        [kept] = [m for m in result["models"] if m["model"] == "served"]
        assert not kept["removable"] and "served" in kept["reason"]
        assert cli(["cleanup", "served", "--yes"]) == 12  # named: refused, and said why
        assert "served" in capsys.readouterr().err
        assert served.exists() and not idle.exists()
        assert store.ModelInventory.get_or_none(store.ModelInventory.model == "served") is not None
    finally:
        server.stop(grace=2)
    assert cli(["cleanup", "served", "--yes", "--json"]) == 0  # no longer served: named, it goes
    assert not served.exists()


def test_files_not_downloaded_here_are_kept_unless_named(tmp_path, tiny_gguf, capsys):
    hf_cache = tmp_path / "hf-cache" / "models--org--ext" / "snapshots" / "abc"
    hf_cache.mkdir(parents=True)
    external = hf_cache / "ext.gguf"
    shutil.copyfile(tiny_gguf, external)
    legacy = paths().legacy_dir / "models" / "old.gguf"
    legacy.parent.mkdir(parents=True)
    shutil.copyfile(tiny_gguf, legacy)
    stray = tmp_path / "stray.gguf"
    shutil.copyfile(tiny_gguf, stray)
    long_ago = now() - timedelta(days=100)
    add_model("ext", [external], source="external", downloaded=long_ago)
    add_model("old", [legacy], source="legacy", downloaded=long_ago)
    add_model("stray", [stray], source="pulled", downloaded=long_ago)  # says pulled, lies outside models/

    assert cli(["cleanup", "--yes", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["removed"] == [] and {m["model"] for m in result["models"]} == {"ext", "old", "stray"}
    assert all(not m["removable"] and "name it" in m["reason"] for m in result["models"])
    assert external.exists() and legacy.exists() and stray.exists()

    assert cli(["cleanup", "ext", "old", "--yes", "--json"]) == 0
    assert sorted(json.loads(capsys.readouterr().out)["removed"]) == ["ext", "old"]
    assert not external.exists() and not legacy.exists() and hf_cache.is_dir()  # only the file goes
    assert cli(["cleanup", "nope", "--yes"]) == 5


def test_cleanup_asks_on_a_terminal(tiny_gguf):
    model = pulled_copy(tiny_gguf, "asked")
    add_model("asked", [model], downloaded=now() - timedelta(days=45))
    for answer, kept in ((b"n\n", True), (b"y\n", False)):
        leader, follower = pty.openpty()
        proc = subprocess.Popen(
            [sys.executable, "-m", "aidevops_local", "cleanup"],
            stdin=follower,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=REPO,
        )
        os.close(follower)
        os.write(leader, answer)
        _, err = proc.communicate(timeout=60)
        os.close(leader)
        assert proc.returncode == 0 and b"[y/N]" in err, err
        assert model.exists() is kept


# ---- the nudge -------------------------------------------------------------------------------------------


def stale_bytes(*sizes: int) -> None:
    """Pulled models of these sizes (sparse files), unused for 45 days."""
    long_ago = now() - timedelta(days=45)
    store.database()
    for n, size in enumerate(sizes, start=store.ModelInventory.select().count()):
        add_model(f"big{n}", [sparse(paths().models_dir / "org" / f"big{n}" / "model.gguf", size)], downloaded=long_ago)


def test_nudge_is_silent_at_the_threshold_and_speaks_just_over_it(capsys):
    stale_bytes(5 * GIB - 1, 1)  # exactly 5 GiB: not more than the threshold
    assert cli(["nudge"]) == 0 and capsys.readouterr().out == ""
    stale_bytes(0, 0, 1)  # one byte more (sparse files: the size on disk is not what counts)
    assert cli(["nudge"]) == 0
    line = capsys.readouterr().out
    assert line.count("\n") == 1 and "5 local models" in line and "5.0 GB" in line and "cleanup" in line


def test_nudge_threshold_and_age_come_from_settings(capsys):
    config.save_settings(config.Settings(stale_nudge_gb=0.5, stale_days=60))
    stale_bytes(GIB)  # 45 days unused: not stale for a 60-day setting
    assert cleanup.nudge() is None
    config.save_settings(config.Settings(stale_nudge_gb=0.5, stale_days=40))
    result = cleanup.nudge()
    assert result is not None and result.stale_bytes == GIB and result.threshold_bytes == GIB // 2


def test_nudge_ignores_models_cleanup_would_keep(tmp_path):
    add_model("ext", [sparse(tmp_path / "ext.gguf", 6 * GIB)], source="external", downloaded=now() - timedelta(days=90))
    assert cleanup.nudge() is None


@needs_faketime
def test_nudge_at_most_once_a_day():
    stale_bytes(6 * GIB)
    first = run_cli("nudge")
    assert first.returncode == 0 and "6.0 GB" in first.stdout, first.stderr
    assert run_cli("nudge").stdout == ""
    assert run_cli("nudge", shift="+23 hours").stdout == ""
    assert "6.0 GB" in run_cli("nudge", shift="+25 hours").stdout
    assert run_cli("nudge", shift="+26 hours").stdout == ""
    assert as_json(run_cli("nudge", "--json", shift="+26 hours")) is None


# ---- links and paths that are not plainly ours (issue 12, items 5 and 17) --------------------------------


def test_a_link_out_of_the_models_folder_is_kept_and_named_only_its_link_goes(tmp_path, tiny_gguf, capsys):
    precious = tmp_path / "elsewhere" / "precious.gguf"
    precious.parent.mkdir()
    shutil.copyfile(tiny_gguf, precious)
    link = pulled_copy(tiny_gguf, "linked")
    add_model("linked", [link], downloaded=now() - timedelta(days=100))
    link.unlink()
    link.symlink_to(precious)  # a pulled model replaced by a link to someone else's file

    assert cli(["cleanup", "--yes", "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)["models"]
    assert not listed["removable"] and str(precious) in listed["reason"]
    assert link.is_symlink() and precious.exists()

    assert cli(["cleanup", "linked", "--yes", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["removed"] == ["linked"]
    assert not link.is_symlink() and precious.exists()


def test_a_relative_stored_path_never_reaches_a_file_in_the_current_folder(tmp_path, tiny_gguf, monkeypatch, capsys):
    """An older version stored `serve ./rel.gguf` as rel.gguf; run from a folder holding another rel.gguf,
    cleanup must not take that file for the model's."""
    store.database()
    store.ModelInventory.create(
        model="rel",
        path="rel.gguf",
        files=["rel.gguf"],
        size_bytes=10,
        source="pulled",
        downloaded=now() - timedelta(days=100),
    )
    here = tmp_path / "somewhere"
    here.mkdir()
    unrelated = here / "rel.gguf"
    shutil.copyfile(tiny_gguf, unrelated)
    monkeypatch.chdir(here)

    assert cli(["cleanup", "--dry-run", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["models"] == []  # no file of it is on disk: nothing to free

    assert cli(["cleanup", "rel", "--yes", "--json"]) == 0  # named: its row goes, no file does
    assert json.loads(capsys.readouterr().out)["removed"] == ["rel"]
    assert unrelated.exists()
    assert store.ModelInventory.get_or_none(store.ModelInventory.model == "rel") is None


def test_a_row_naming_a_file_that_is_not_a_model_never_deletes_it(tmp_path, capsys):
    """The old helper's database is imported as it was: a row whose path is its usage.db (or any other file
    that is not a GGUF) is history only. Stale or named, cleanup removes the row and never that file."""
    not_a_model = tmp_path / "usage.db"
    not_a_model.write_bytes(b"SQLite format 3\0" + bytes(4080))
    add_model("helper-db", [not_a_model], source="legacy", downloaded=now() - timedelta(days=100))

    assert cli(["cleanup", "--dry-run", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["models"] == []  # no model file of it on disk: nothing to free
    assert cli(["cleanup", "helper-db", "--yes", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["removed"] == ["helper-db"]
    assert not_a_model.read_bytes().startswith(b"SQLite format 3")
    assert store.ModelInventory.get_or_none(store.ModelInventory.model == "helper-db") is None
