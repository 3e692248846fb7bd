"""Models on disk: the inventory, files dropped into models/, the old helper's folder, and other tools'
downloads (HF cache, llama.cpp cache, LM Studio) listed read-only; finding one by name; removing one."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from aidevops_local.core.database import store
from aidevops_local.core.maintenance import removal
from aidevops_local.core.models import inventory, library
from aidevops_local.core.system import config
from aidevops_local.core.system.errors import ModelNotFound, Refused


@pytest.fixture
def homes(tmp_path, monkeypatch):
    """Point every external location into the test's own folder."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("LLAMA_CACHE", str(tmp_path / "llama-cache"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    return tmp_path


def _hf_cache_model(root: Path, repo: str, filename: str, source: Path) -> Path:
    """Lay a file out the way huggingface_hub does: a blob and a snapshot symlink to it."""
    folder = root / f"models--{repo.replace('/', '--')}"
    blob = folder / "blobs" / "0123abcd"
    blob.parent.mkdir(parents=True)
    shutil.copy(source, blob)
    snap = folder / "snapshots" / "f00dfeed" / filename
    snap.parent.mkdir(parents=True)
    snap.symlink_to(os.path.relpath(blob, snap.parent))
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("f00dfeed")
    return snap


def _record(name: str, files: list[Path], *, source="pulled", repo="org/repo", last_used=None, requests=0):
    store.database()
    store.ModelInventory.insert(
        model=name,
        path=str(files[0]),
        size_bytes=sum(f.stat().st_size for f in files),
        repo=repo,
        quant="Q8_0",
        sha256="x",
        files=[str(f) for f in files],
        source=source,
        last_used=last_used,
        total_requests=requests,
    ).on_conflict_replace().execute()


def test_lists_every_kind_of_model(homes, tiny_gguf, tiny_split_gguf):
    p = config.paths()
    p.models_dir.mkdir(parents=True)
    pulled = p.models_dir / "tiny-pulled.Q8_0.gguf"
    shutil.copy(tiny_gguf, pulled)
    _record("tiny-pulled.Q8_0", [pulled], last_used="2026-01-02 03:04:05", requests=7)
    dropped = p.models_dir / "dropped-in-Q4_K_M.gguf"
    shutil.copy(tiny_gguf, dropped)
    split_dir = p.models_dir / "tiny-split"
    split_dir.mkdir()
    for part in tiny_split_gguf:
        shutil.copy(part, split_dir / part.name)
    (p.models_dir / "mmproj-model-f16.gguf").write_bytes(b"GGUF")  # a vision projector, not a model
    legacy = p.legacy_dir / "models" / "old-helper-Q5_K_M.gguf"
    legacy.parent.mkdir(parents=True)
    shutil.copy(tiny_gguf, legacy)
    _hf_cache_model(homes / "hf-cache", "ggml-org/tiny-GGUF", "tiny-hf-Q8_0.gguf", tiny_gguf)
    (homes / "llama-cache").mkdir()
    shutil.copy(tiny_gguf, homes / "llama-cache" / "ggml-org_tiny-GGUF_tiny-llamacpp-Q6_K.gguf")
    lms = homes / "home" / ".lmstudio" / "models" / "lmstudio-community" / "tiny-GGUF" / "tiny-lms-IQ4_XS.gguf"
    lms.parent.mkdir(parents=True)
    shutil.copy(tiny_gguf, lms)

    found = {m.name: m for m in library.list_models()}
    assert set(found) == {
        "tiny-pulled.Q8_0",
        "dropped-in-Q4_K_M",
        "tiny-random-llama-split",
        "old-helper-Q5_K_M",
        "tiny-hf-Q8_0",
        "ggml-org_tiny-GGUF_tiny-llamacpp-Q6_K",
        "tiny-lms-IQ4_XS",
    }
    assert found["tiny-pulled.Q8_0"].source == "pulled" and not found["tiny-pulled.Q8_0"].read_only
    assert found["tiny-pulled.Q8_0"].total_requests == 7
    assert found["tiny-pulled.Q8_0"].last_used == "2026-01-02 03:04:05"
    assert found["dropped-in-Q4_K_M"].source == "external" and found["dropped-in-Q4_K_M"].quant == "Q4_K_M"
    split = found["tiny-random-llama-split"]
    assert len(split.files) == 2 and split.size_bytes == sum(f.stat().st_size for f in tiny_split_gguf)
    assert split.quant == "F32"  # not in the name: read from the header
    assert found["old-helper-Q5_K_M"].source == "legacy" and found["old-helper-Q5_K_M"].where == "old helper"
    hf = found["tiny-hf-Q8_0"]
    assert (hf.source, hf.where, hf.repo, hf.quant) == ("external", "HF cache", "ggml-org/tiny-GGUF", "Q8_0")
    assert hf.size_bytes == tiny_gguf.stat().st_size and hf.read_only
    assert found["ggml-org_tiny-GGUF_tiny-llamacpp-Q6_K"].where == "llama.cpp cache"
    assert found["tiny-lms-IQ4_XS"].where == "LM Studio"
    assert found["tiny-lms-IQ4_XS"].repo == "lmstudio-community/tiny-GGUF"


def test_same_file_name_in_two_places_gets_two_names(homes, tiny_gguf):
    p = config.paths()
    p.models_dir.mkdir(parents=True)
    shutil.copy(tiny_gguf, p.models_dir / "tiny-Q8_0.gguf")
    _hf_cache_model(homes / "hf-cache", "org/tiny", "tiny-Q8_0.gguf", tiny_gguf)
    names = sorted(m.name for m in library.list_models())
    assert names == ["tiny-Q8_0", "tiny-Q8_0@hf"]


def test_resolve_by_name_file_substring_and_path(homes, tiny_gguf):
    p = config.paths()
    p.models_dir.mkdir(parents=True)
    for name in ("qwen-coder-7b-Q4_K_M.gguf", "qwen-chat-8b-Q4_K_M.gguf"):
        shutil.copy(tiny_gguf, p.models_dir / name)
    assert library.resolve_model("qwen-coder-7b-Q4_K_M").name == "qwen-coder-7b-Q4_K_M"
    assert library.resolve_model("qwen-chat-8b-Q4_K_M.gguf").name == "qwen-chat-8b-Q4_K_M"
    assert library.resolve_model("coder").name == "qwen-coder-7b-Q4_K_M"
    with pytest.raises(ModelNotFound, match="matches 2 models"):
        library.resolve_model("qwen")
    with pytest.raises(ModelNotFound) as info:
        library.resolve_model("qwen-coder-7b-Q5_K_M")
    assert "qwen-coder-7b-Q4_K_M" in info.value.hint
    outside = homes / "elsewhere" / "my-model.gguf"
    outside.parent.mkdir()
    shutil.copy(tiny_gguf, outside)
    model = library.resolve_model(str(outside))
    assert (model.path, model.source, model.where) == (outside, "external", "path")
    with pytest.raises(ModelNotFound):
        library.resolve_model(str(homes / "elsewhere" / "missing.gguf"))


def test_resolve_none_picks_the_default_the_only_or_the_latest(homes, tiny_gguf):
    with pytest.raises(ModelNotFound, match="no models"):
        library.resolve_model(None)
    p = config.paths()
    p.models_dir.mkdir(parents=True)
    a, b = p.models_dir / "a-Q8_0.gguf", p.models_dir / "b-Q8_0.gguf"
    shutil.copy(tiny_gguf, a)
    assert library.resolve_model(None).name == "a-Q8_0"  # the only one
    shutil.copy(tiny_gguf, b)
    _record("a-Q8_0", [a], last_used="2026-03-01 00:00:00")
    _record("b-Q8_0", [b], last_used="2026-02-01 00:00:00")
    assert library.resolve_model(None).name == "a-Q8_0"  # the most recently used
    settings = config.Settings(default_model="b-Q8_0")
    config.save_settings(settings)
    assert library.resolve_model(None).name == "b-Q8_0"


def test_inventory_rows_whose_files_are_gone_are_not_listed(homes, tiny_gguf, tmp_path):
    gone = tmp_path / "gone.gguf"
    shutil.copy(tiny_gguf, gone)
    _record("gone", [gone])
    gone.unlink()
    assert library.list_models() == []


def test_rm_deletes_a_pulled_model(homes, tiny_gguf):
    p = config.paths()
    p.models_dir.mkdir(parents=True)
    path = p.models_dir / "mine-Q8_0.gguf"
    shutil.copy(tiny_gguf, path)
    _record("mine-Q8_0", [path])
    freed = removal.remove_model(library.resolve_model("mine-Q8_0"))
    assert freed == tiny_gguf.stat().st_size and not path.exists()
    assert store.ModelInventory.get_or_none(store.ModelInventory.model == "mine-Q8_0") is None


def test_rm_of_another_tools_file_needs_confirmation(homes, tiny_gguf):
    snap = _hf_cache_model(homes / "hf-cache", "org/tiny", "tiny-Q8_0.gguf", tiny_gguf)
    blob = snap.resolve()
    model = library.resolve_model("tiny-Q8_0")
    with pytest.raises(Refused, match="not downloaded by aidevops-local"):
        removal.remove_model(model)
    assert snap.exists() and blob.exists()
    removal.remove_model(model, confirmed=True)
    assert not snap.exists() and not blob.exists()  # the blob takes the space, so it goes too


def test_rm_of_an_hf_cache_entry_keeps_a_blob_another_snapshot_still_uses(homes, tiny_gguf):
    snap = _hf_cache_model(homes / "hf-cache", "org/tiny", "tiny-Q8_0.gguf", tiny_gguf)
    blob = snap.resolve()
    other = snap.parent.parent / "beefcafe" / snap.name  # the same file at another revision: one blob, two links
    other.parent.mkdir()
    other.symlink_to(os.path.relpath(blob, other.parent))
    removal.remove_model(library.resolve_model("tiny-Q8_0"), confirmed=True)
    [left] = [link for link in (snap, other) if link.is_symlink()]  # one revision's entry went
    assert blob.exists() and left.resolve() == blob and left.stat().st_size == tiny_gguf.stat().st_size


def _cli(*args):
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "aidevops_local", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_cli_models_lists_an_hf_cache_model_read_only(homes, tiny_gguf):
    _hf_cache_model(homes / "hf-cache", "ggml-org/tiny-GGUF", "tiny-hf-Q8_0.gguf", tiny_gguf)
    done = _cli("models", "--json")
    assert done.returncode == 0, done.stderr
    (entry,) = json.loads(done.stdout)
    assert entry["name"] == "tiny-hf-Q8_0" and entry["where"] == "HF cache" and entry["source"] == "external"
    table = _cli("models")
    assert "tiny-hf-Q8_0" in table.stdout and "read-only" in table.stdout


def test_cli_models_rm_refuses_an_external_file_without_yes(homes, tiny_gguf):
    snap = _hf_cache_model(homes / "hf-cache", "org/tiny", "tiny-Q8_0.gguf", tiny_gguf)
    done = _cli("models", "rm", "tiny-Q8_0")
    assert done.returncode == 12 and "--yes" in done.stderr
    assert snap.exists()
    done = _cli("models", "rm", "tiny-Q8_0", "--yes")
    assert done.returncode == 0, done.stderr
    assert not snap.exists()


def test_listing_many_models_opens_none_of_them(homes, tiny_gguf):
    """Names, sizes and quants come from the folder: listing 40 models (or 400 GB of them) reads no file."""
    p = config.paths()
    p.models_dir.mkdir(parents=True)
    for i in range(40):
        os.link(tiny_gguf, p.models_dir / f"model-{i}-Q4_K_M.gguf")
    with files_opened() as opened:
        assert len(library.list_models()) == 40
    assert [f for f in opened if Path(f).is_relative_to(p.models_dir)] == []


_opened: list[str] | None = None


def _audit_open(event: str, args: tuple) -> None:
    if event == "open" and _opened is not None and isinstance(args[0], (str, bytes, os.PathLike)):
        _opened.append(os.fsdecode(args[0]))


@contextlib.contextmanager
def files_opened() -> Iterator[list[str]]:
    """Every file Python opens (open(), os.open(), Path.open()) inside the block. An audit hook cannot be
    removed, so one hook, installed on first use, records only while a block runs."""
    global _opened
    if not getattr(files_opened, "hooked", False):
        sys.addaudithook(_audit_open)
        files_opened.hooked = True
    _opened = []
    try:
        yield _opened
    finally:
        _opened = None


def test_a_model_served_in_place_is_remembered(homes, tiny_gguf):
    _hf_cache_model(homes / "hf-cache", "org/tiny", "tiny-Q8_0.gguf", tiny_gguf)
    model = library.resolve_model("tiny-Q8_0")
    assert store.ModelInventory.select().count() == 0  # finding it records nothing; serving it does
    inventory.remember(model)  # what serve does once the model passed its checks
    row = store.ModelInventory.get(store.ModelInventory.model == "tiny-Q8_0")
    assert (row.source, row.repo, row.path) == ("external", "org/tiny", str(model.path))
    (listed,) = library.list_models()
    assert listed.name == "tiny-Q8_0" and listed.source == "external" and listed.where == "HF cache"


# ---- never delete through a link (issue 12, item 5) -----------------------------------------------------


def test_rm_of_a_link_into_another_tools_cache_removes_only_the_link(homes, tiny_gguf):
    snap = _hf_cache_model(homes / "hf-cache", "org/tiny", "cached-Q8_0.gguf", tiny_gguf)
    blob = snap.resolve()
    models = config.paths().models_dir
    models.mkdir(parents=True)
    link = models / "linked-Q8_0.gguf"
    link.symlink_to(snap)
    done = _cli("models", "rm", "linked-Q8_0")
    assert done.returncode == 12 and str(blob) in done.stderr and "--yes" in done.stderr
    assert link.is_symlink()
    done = _cli("models", "rm", "linked-Q8_0", "--yes")
    assert done.returncode == 0, done.stderr
    assert not link.is_symlink() and not link.exists()
    assert snap.exists() and blob.exists()  # the other tool's cache is untouched


def test_a_pulled_model_replaced_by_a_link_needs_confirmation_and_keeps_its_target(homes, tiny_gguf, tmp_path):
    p = config.paths()
    p.models_dir.mkdir(parents=True)
    outside = tmp_path / "elsewhere" / "precious.gguf"
    outside.parent.mkdir()
    shutil.copy(tiny_gguf, outside)
    path = p.models_dir / "mine-Q8_0.gguf"
    shutil.copy(tiny_gguf, path)
    _record("mine-Q8_0", [path])
    path.unlink()
    path.symlink_to(outside)
    model = library.resolve_model("mine-Q8_0")
    with pytest.raises(Refused) as refused:
        removal.remove_model(model)
    assert str(outside) in refused.value.message and path.is_symlink()
    assert removal.remove_model(model, confirmed=True) == 0  # a link frees nothing
    assert not path.is_symlink() and outside.exists()
    assert store.ModelInventory.get_or_none(store.ModelInventory.model == "mine-Q8_0") is None


# ---- what enters the inventory, and how (items 16, 17, 22) ------------------------------------------------


def test_a_serve_refused_for_a_corrupt_file_records_nothing(
    homes, system_runtime, corrupt_ggufs, tiny_gguf, tmp_path, port
):
    from aidevops_local.core.maintenance import doctor
    from aidevops_local.core.serving import launch

    bad = tmp_path / "bad-Q8_0.gguf"
    shutil.copy(corrupt_ggufs["random_header"], bad)
    done = _cli("serve", str(bad), "--port", str(port))
    assert done.returncode == 6, done.stderr
    store.database()
    assert store.ModelInventory.select().count() == 0
    assert library.list_models(include_external=False) == []
    assert "no models recorded" in doctor.check_models(hashes=False).summary
    good = tmp_path / "good-Q8_0.gguf"
    shutil.copy(tiny_gguf, good)
    launch.plan_launch(str(good), port=port)  # its checks pass: now it is recorded
    assert [r.model for r in store.ModelInventory.select()] == ["good-Q8_0"]


def test_a_relative_path_is_recorded_absolute(homes, tiny_gguf, monkeypatch):
    here = homes / "work"
    here.mkdir()
    shutil.copy(tiny_gguf, here / "rel-Q8_0.gguf")
    monkeypatch.chdir(here)
    model = library.resolve_model("./rel-Q8_0.gguf")
    assert model.path == here / "rel-Q8_0.gguf" and all(f.is_absolute() for f in model.files)
    inventory.remember(model)
    row = store.ModelInventory.get_by_id("rel-Q8_0")
    assert row.path == str(here / "rel-Q8_0.gguf") and row.files == [str(here / "rel-Q8_0.gguf")]
    monkeypatch.chdir(homes)  # from another folder it is the same model
    assert [m.name for m in library.list_models(include_external=False)] == ["rel-Q8_0"]
    assert library.resolve_model("rel-Q8_0").path == here / "rel-Q8_0.gguf"


def test_serve_of_a_relative_path_plans_and_records_it_absolute(homes, system_runtime, tiny_gguf, monkeypatch, port):
    from aidevops_local.core.serving import launch

    here = homes / "work"
    here.mkdir()
    shutil.copy(tiny_gguf, here / "rel-Q8_0.gguf")
    monkeypatch.chdir(here)
    plan = launch.plan_launch("./rel-Q8_0.gguf", port=port)
    assert plan.model_path == here / "rel-Q8_0.gguf"  # what server.json, the log and cleanup see
    assert store.ModelInventory.get_by_id("rel-Q8_0").path == str(here / "rel-Q8_0.gguf")


def test_a_relative_path_stored_before_is_never_read_against_the_current_folder(homes, tiny_gguf, monkeypatch):
    """An older version stored `serve ./x.gguf` as x.gguf: where it was is unknown. It is not listed (a file of
    that name in whatever folder the command runs from is another file); serving the file again repairs it."""
    here = homes / "work"
    here.mkdir()
    shutil.copy(tiny_gguf, here / "rel-Q8_0.gguf")
    store.database()
    store.ModelInventory.insert(
        model="rel-Q8_0",
        path="rel-Q8_0.gguf",
        files=["rel-Q8_0.gguf"],
        source="external",
        total_requests=4,
        last_used="2026-11-01 00:00:00",
    ).execute()
    monkeypatch.chdir(here)
    assert library.list_models(include_external=False) == []
    from aidevops_local.core.maintenance import doctor

    assert "file missing: rel-Q8_0.gguf" in doctor.check_models(hashes=False).details[0]
    inventory.remember(library.resolve_model(str(here / "rel-Q8_0.gguf")))
    row = store.ModelInventory.get_by_id("rel-Q8_0")
    assert (row.path, row.total_requests) == (str(here / "rel-Q8_0.gguf"), 4)  # repaired, history kept
    monkeypatch.chdir(homes)
    (listed,) = library.list_models(include_external=False)
    assert listed.path == here / "rel-Q8_0.gguf" and listed.total_requests == 4


def test_a_history_row_from_the_old_helper_is_linked_to_the_file_once_it_is_served(homes, tiny_gguf):
    """The old helper's model_access rows come with no path at all: serving the model's file gives that row its
    path, so its usage and cleanup find the model, and its history stays."""
    shutil.copy(tiny_gguf, homes / "old-Q8_0.gguf")
    store.database()
    store.ModelInventory.insert(
        model="old-Q8_0", path="", files=[], source="legacy", total_requests=7, last_used="2026-10-01 00:00:00"
    ).execute()
    inventory.remember(library.resolve_model(str(homes / "old-Q8_0.gguf")))
    row = store.ModelInventory.get_by_id("old-Q8_0")
    assert (row.path, row.total_requests) == (str(homes / "old-Q8_0.gguf"), 7)


def test_rows_without_a_model_file_are_not_models(homes, tmp_path, monkeypatch):
    """The old helper kept rows for models whose file was gone (path ''), and a path may name something that is
    not a GGUF at all (its usage.db): neither is a model to list, serve or remove."""
    db_file = config.paths().legacy_dir / "usage.db"
    db_file.parent.mkdir(parents=True)
    db_file.write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)
    store.database()
    store.ModelInventory.insert(model="old", path="", source="legacy", total_requests=3).execute()
    store.ModelInventory.insert(model="usage", path=str(db_file), files=[str(db_file)], source="legacy").execute()
    monkeypatch.chdir(db_file.parent)
    assert library.list_models() == []
    with pytest.raises(ModelNotFound):
        library.resolve_model("old")
    done = _cli("models", "--json")
    assert done.returncode == 0 and json.loads(done.stdout) == []


def test_cli_models_rm_refuses_a_path_that_is_not_a_model_file(homes, tiny_gguf, tiny_split_gguf):
    """`rm PATH` deletes a model file, never anything else a path names, whatever the flags."""
    folder = homes / "elsewhere"
    folder.mkdir()
    thesis = folder / "thesis.txt"
    thesis.write_text("thesis\n")
    shutil.copy(tiny_gguf, folder / "kept-Q8_0.gguf")
    for target, words in ((thesis, "is not a model file (GGUF)"), (folder, "is a folder, not a model file")):
        done = _cli("models", "rm", str(target), "--yes")
        assert done.returncode == 12, done.stderr
        assert done.stderr.startswith(f"error: {target} {words}; nothing was removed.")
        assert "Traceback" not in done.stderr
    assert thesis.read_text() == "thesis\n" and (folder / "kept-Q8_0.gguf").exists()
    for part in tiny_split_gguf:  # any part of a split set names the set: its parts go together
        shutil.copy(part, folder / part.name)
    done = _cli("models", "rm", str(folder / tiny_split_gguf[1].name), "--yes")
    assert done.returncode == 0, done.stderr
    assert not any((folder / part.name).exists() for part in tiny_split_gguf)
    assert thesis.exists() and (folder / "kept-Q8_0.gguf").exists()


def test_remove_model_never_deletes_a_file_that_is_not_a_model(homes, tmp_path):
    thesis = tmp_path / "thesis.txt"
    thesis.write_text("thesis\n")
    model = library.LocalModel("thesis", thesis, (thesis,), 7, "", None, "external", "path")
    with pytest.raises(Refused, match="is not a model file"):
        removal.remove_model(model, confirmed=True)
    assert thesis.exists()


def test_cli_models_rm_needs_the_exact_name(homes, tiny_gguf):
    """Serve takes part of a name; a command that deletes takes the whole name or nothing."""
    p = config.paths()
    p.models_dir.mkdir(parents=True)
    long, short = p.models_dir / "model-Q4_K_M.gguf", p.models_dir / "m-Q4_K_M.gguf"
    for path in (long, short):
        shutil.copy(tiny_gguf, path)
        _record(path.name[:-5], [path])  # pulled: removed without a question
    done = _cli("models", "rm", "odel")
    assert done.returncode == 5, done.stderr
    assert done.stderr.startswith("error: No model named 'odel'.") and "model-Q4_K_M" in done.stderr  # near names
    for empty in ("", " "):
        done = _cli("models", "rm", empty)
        assert done.returncode == 5 and "the name is empty" in done.stderr, done.stderr
    assert long.exists() and short.exists()
    done = _cli("models", "rm", "m-Q4_K_M")
    assert done.returncode == 0 and "Removed m-Q4_K_M" in done.stderr, done.stderr
    assert long.exists() and not short.exists()
