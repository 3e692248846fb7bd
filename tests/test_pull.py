"""`pull` against a local Hub serving real GGUF files: resume after a kill, a cancel and a dropped
connection (proved with the Hub's byte counter), sha256 verification, gated repos, unsafe names, a full
disk, split sets and the inventory."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from aidevops_local.core.database import store
from aidevops_local.core.models import downloads, gguf_meta, library
from aidevops_local.core.system import config
from aidevops_local.core.system.errors import (
    Cancelled,
    DiskFull,
    GatedRepo,
    ModelNotFound,
    NotFound,
    Refused,
    UnsafePath,
    VerificationFailed,
)

SMOL = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture
def hub_env(fake_hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    return fake_hub


def _gets(hub, repo, name):
    return [r for r in hub.requests_to(repo, name, "GET")]


def _partial(name_sha: str) -> Path:
    return config.paths().partial_dir / f"{name_sha}.part"


def _sha(path: Path) -> str:
    from tests.fixtures.prepare import sha256_file

    return sha256_file(path)


def test_pull_downloads_verifies_and_records(hub_env, tiny_gguf):
    hub_env.add_repo("org/tiny-GGUF", {"tiny-Q8_0.gguf": tiny_gguf, "tiny-Q2_K.gguf": b"GGUF" + b"\0" * 100})
    seen = []
    result = downloads.pull("org/tiny-GGUF", progress=seen.append)
    target = config.paths().models_dir / "tiny-Q8_0.gguf"
    assert result.model.path == target and target.read_bytes() == tiny_gguf.read_bytes()
    assert result.downloaded_bytes == tiny_gguf.stat().st_size and result.resumed_bytes == 0
    assert seen and seen[-1].done == seen[-1].total == tiny_gguf.stat().st_size
    row = store.ModelInventory.get(store.ModelInventory.model == "tiny-Q8_0")
    assert (row.repo, row.quant, row.source, row.sha256) == ("org/tiny-GGUF", "Q8_0", "pulled", _sha(tiny_gguf))
    assert row.files == [str(target)] and row.size_bytes == tiny_gguf.stat().st_size
    assert list(config.paths().partial_dir.glob("*.part")) == []
    # Pulled again: nothing is transferred.
    before = hub_env.served("org/tiny-GGUF", "tiny-Q8_0.gguf")
    again = downloads.pull("org/tiny-GGUF:Q8_0")
    assert again.already_present and hub_env.served("org/tiny-GGUF", "tiny-Q8_0.gguf") == before
    assert library.resolve_model("tiny-Q8_0").source == "pulled"


def _settled(hub, repo, name) -> int:
    """The byte counter once the killed client's connection has wound down on the server side."""
    last, stable_since = -1, time.monotonic()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        now = hub.served(repo, name)
        if now != last:
            last, stable_since = now, time.monotonic()
        elif time.monotonic() - stable_since > 0.5:
            break
        time.sleep(0.05)
    return last


def test_pull_resumes_after_kill(hub_env, smollm2_gguf):
    size = smollm2_gguf.stat().st_size
    hub_env.add_repo("org/smol-GGUF", {SMOL: smollm2_gguf})
    hub_env.throttle(25 * 2**20, "org/smol-GGUF", SMOL)  # ~4 s for the whole file
    partial = _partial(_sha(smollm2_gguf))
    env = {**os.environ, "HF_ENDPOINT": hub_env.endpoint}
    proc = subprocess.Popen(
        [sys.executable, "-m", "aidevops_local", "pull", "org/smol-GGUF"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if partial.exists() and partial.stat().st_size >= size // 2:
                break
            time.sleep(0.02)
        assert proc.poll() is None, proc.stderr.read().decode()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        proc.stderr.close()
    kept = partial.stat().st_size
    assert size // 3 < kept < size
    hub_env.clear_faults()
    served_before = _settled(hub_env, "org/smol-GGUF", SMOL)
    result = downloads.pull("org/smol-GGUF")
    assert hub_env.served("org/smol-GGUF", SMOL) - served_before == size - kept  # only the rest travelled
    assert (result.resumed_bytes, result.downloaded_bytes) == (kept, size - kept)
    last = _gets(hub_env, "org/smol-GGUF", SMOL)[-1]
    assert last.header("Range") == f"bytes={kept}-"
    assert _sha(result.model.path) == _sha(smollm2_gguf)
    assert not partial.exists()


def test_pull_resumes_after_cancel(hub_env, smollm2_gguf):
    size = smollm2_gguf.stat().st_size
    hub_env.add_repo("org/smol-GGUF", {SMOL: smollm2_gguf})
    hub_env.throttle(100 * 2**20, "org/smol-GGUF", SMOL)
    cancel = threading.Event()

    def progress(p):
        if p.done >= size // 2:
            cancel.set()

    with pytest.raises(Cancelled):
        downloads.pull("org/smol-GGUF", progress=progress, cancel=cancel)
    kept = _partial(_sha(smollm2_gguf)).stat().st_size
    assert size // 2 <= kept < size
    assert store.ModelInventory.get_or_none(store.ModelInventory.model == "SmolLM2-135M-Instruct.Q4_1") is None
    served_before = hub_env.served("org/smol-GGUF", SMOL)
    result = downloads.pull("org/smol-GGUF")
    assert hub_env.served("org/smol-GGUF", SMOL) - served_before == size - kept
    assert result.resumed_bytes == kept


def test_dropped_connection_is_resumed_within_the_run(hub_env, smollm2_gguf):
    size = smollm2_gguf.stat().st_size
    hub_env.add_repo("org/smol-GGUF", {SMOL: smollm2_gguf})
    hub_env.drop_after("org/smol-GGUF", SMOL, size // 3, times=2)
    result = downloads.pull("org/smol-GGUF")
    gets = _gets(hub_env, "org/smol-GGUF", SMOL)
    assert len(gets) == 3
    assert gets[1].header("Range") != "bytes=0-"  # each retry continued, none started over
    assert result.downloaded_bytes == size
    assert hub_env.served("org/smol-GGUF", SMOL) == size
    assert _sha(result.model.path) == _sha(smollm2_gguf)


def test_checksum_mismatch_is_refused(hub_env, tiny_gguf):
    hub_env.add_repo("org/tiny-GGUF", {"tiny-Q8_0.gguf": tiny_gguf})
    hub_env.tamper("org/tiny-GGUF", "tiny-Q8_0.gguf", times=1)
    with pytest.raises(VerificationFailed, match="does not match the Hub's checksum") as info:
        downloads.pull("org/tiny-GGUF")
    assert "Pull again" in info.value.hint
    assert not (config.paths().models_dir / "tiny-Q8_0.gguf").exists()
    assert list(config.paths().partial_dir.glob("*.part")) == []  # the bad bytes are gone
    assert store.ModelInventory.get_or_none(store.ModelInventory.model == "tiny-Q8_0") is None
    with pytest.raises(ModelNotFound):
        library.resolve_model("tiny-Q8_0")  # so serve can never pick it
    assert downloads.pull("org/tiny-GGUF").model.name == "tiny-Q8_0"  # the next try, untampered, works


def test_gated_repo_needs_an_accepted_licence_and_token(hub_env, tiny_gguf, monkeypatch):
    hub_env.add_repo("google/gated-GGUF", {"g-Q4_K_M.gguf": tiny_gguf}, gated="manual", allowed_tokens={"hf_ok"})
    with pytest.raises(GatedRepo, match="gated"):
        downloads.pull("google/gated-GGUF")
    monkeypatch.setenv("HF_TOKEN", "hf_not_accepted")
    with pytest.raises(GatedRepo):
        downloads.pull("google/gated-GGUF")
    monkeypatch.setenv("HF_TOKEN", "hf_ok")
    result = downloads.pull("google/gated-GGUF")
    assert result.model.path.read_bytes() == tiny_gguf.read_bytes()
    assert all(
        r.header("Authorization") == "Bearer hf_ok" for r in _gets(hub_env, "google/gated-GGUF", "g-Q4_K_M.gguf")[-1:]
    )


def test_token_is_not_sent_to_the_cdn(tiny_gguf, monkeypatch):
    from tests.fakes.hf_hub import FakeHub

    with FakeHub(lfs_redirect=True) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        monkeypatch.setenv("HF_TOKEN", "hf_ok")
        hub.add_repo("org/tiny-GGUF", {"tiny-Q8_0.gguf": tiny_gguf}, gated="auto", allowed_tokens={"hf_ok"})
        result = downloads.pull("org/tiny-GGUF")
        assert result.model.path.read_bytes() == tiny_gguf.read_bytes()
        assert not hub.errors


@pytest.mark.parametrize(
    "name",
    [
        "../../evil-Q4_K_M.gguf",
        "sub/../../evil-Q4_K_M.gguf",
        "..\\..\\evil-Q4_K_M.gguf",
        "evil-\u202efuug.Q4_K_M.gguf",
        "evil-\x9b2J-Q4_K_M.gguf",
    ],
)
def test_names_that_escape_the_models_folder_are_refused(hub_env, tiny_gguf, tmp_path, name):
    hub_env.add_repo("evil/repo-GGUF", {name: tiny_gguf})
    with pytest.raises(UnsafePath):
        downloads.pull("evil/repo-GGUF", file=name)
    with pytest.raises(NotFound):  # without --file the unsafe name is simply not a candidate
        downloads.pull("evil/repo-GGUF")
    assert _gets(hub_env, "evil/repo-GGUF", name.strip("/")) == []
    assert not any(p.name.startswith("evil") for p in tmp_path.rglob("*"))


@pytest.fixture
def small_disk():
    """A tmpfs mounted on the models folder (root only); skipped where mount is not allowed."""
    folder = config.paths().models_dir
    folder.mkdir(parents=True, exist_ok=True)

    def mount(size_mb: int) -> Path:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(folder)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(folder)
        return folder

    mounted: list[Path] = []
    yield mount
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_disk_full_is_caught_before_downloading(hub_env, smollm2_gguf, small_disk):
    small_disk(20)
    hub_env.add_repo("org/smol-GGUF", {SMOL: smollm2_gguf})
    with pytest.raises(DiskFull, match="needs 0.09 GiB more") as info:
        downloads.pull("org/smol-GGUF")
    assert "resumes" in info.value.hint
    assert _gets(hub_env, "org/smol-GGUF", SMOL) == []


def test_disk_filling_up_during_a_download(hub_env, smollm2_gguf, small_disk, monkeypatch):
    folder = small_disk(400)
    monkeypatch.setattr(downloads, "DISK_MARGIN", 0)
    hub_env.add_repo("org/smol-GGUF", {SMOL: smollm2_gguf})
    hub_env.throttle(50 * 2**20, "org/smol-GGUF", SMOL)
    filler = folder / "filler"

    def progress(p):  # another program fills the disk while we download
        if p.done > p.total // 4 and not filler.exists():
            subprocess.run(
                ["fallocate", "-l", str(os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize), str(filler)],
                check=False,
            )
            if not filler.exists() or filler.stat().st_size == 0:
                with open(filler, "wb") as fh:
                    try:
                        while True:
                            fh.write(b"\0" * (1 << 20))
                    except OSError:
                        pass

    with pytest.raises(DiskFull, match="filled up"):
        downloads.pull("org/smol-GGUF", progress=progress)
    filler.unlink()
    assert _partial(_sha(smollm2_gguf)).exists()  # what was saved is kept for the resume


def test_split_gguf_is_pulled_as_a_set(hub_env, tiny_split_gguf):
    files = {f"Q8_0/{p.name}": p for p in tiny_split_gguf}
    hub_env.add_repo("org/split-GGUF", files)
    result = downloads.pull("org/split-GGUF")
    folder = config.paths().models_dir / "tiny-random-llama-split"
    assert [f.name for f in result.model.files] == [p.name for p in tiny_split_gguf]
    assert all(f.parent == folder for f in result.model.files)
    assert result.downloaded_bytes == sum(p.stat().st_size for p in tiny_split_gguf)
    row = store.ModelInventory.get(store.ModelInventory.model == "tiny-random-llama-split")
    assert len(row.files) == 2 and row.path == str(folder / tiny_split_gguf[0].name)
    (model,) = library.list_models()
    assert model.name == "tiny-random-llama-split" and len(model.files) == 2
    gguf_meta.validate_gguf(model.path)


def test_a_download_in_progress_elsewhere_is_not_joined(hub_env, tiny_gguf):
    hub_env.add_repo("org/tiny-GGUF", {"tiny-Q8_0.gguf": tiny_gguf})
    lock_path = _partial(_sha(tiny_gguf)).with_suffix(".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(Refused, match="already being downloaded"):
            downloads.pull("org/tiny-GGUF")


def _cli(*args, hub):
    env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "aidevops_local", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_cli_pull_without_a_default_quant_lists_the_choices(hub_env, tiny_gguf):
    hub_env.add_repo("org/odd-GGUF", {"m-Q2_K.gguf": tiny_gguf, "m-Q6_K.gguf": tiny_gguf})
    done = _cli("pull", "org/odd-GGUF", hub=hub_env)
    assert done.returncode == 2
    assert "Q2_K" in done.stderr and "Q6_K" in done.stderr
    done = _cli("pull", "org/odd-GGUF:Q6_K", "--json", hub=hub_env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["model"]["name"] == "m-Q6_K"


def test_cli_pull_reports_bytes_and_rate(hub_env, tiny_gguf):
    hub_env.add_repo("org/tiny-GGUF", {"tiny-Q8_0.gguf": tiny_gguf})
    done = _cli("pull", "org/tiny-GGUF", hub=hub_env)
    assert done.returncode == 0, done.stderr
    assert "sha256 verified" in done.stderr and "/s" in done.stderr
    assert done.stdout.strip().endswith("tiny-Q8_0.gguf")


def test_same_file_name_from_another_repo_never_overwrites(hub_env, tiny_gguf, smollm2_gguf):
    hub_env.add_repo("alice/m-GGUF", {"m-Q8_0.gguf": tiny_gguf})
    hub_env.add_repo("bob/m-GGUF", {"m-Q8_0.gguf": smollm2_gguf})
    first = downloads.pull("alice/m-GGUF")
    second = downloads.pull("bob/m-GGUF")
    assert (first.name, second.name) == ("m-Q8_0", "m-Q8_0-bob")
    assert first.model.path.read_bytes() == tiny_gguf.read_bytes()
    assert _sha(second.model.path) == _sha(smollm2_gguf)
    assert downloads.pull("bob/m-GGUF").already_present


def test_a_file_already_in_models_is_kept(hub_env, tiny_gguf, smollm2_gguf):
    hub_env.add_repo("org/m-GGUF", {"m-Q8_0.gguf": smollm2_gguf})
    mine = config.paths().models_dir / "m-Q8_0.gguf"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(tiny_gguf.read_bytes())  # the user's own file of the same name
    result = downloads.pull("org/m-GGUF")
    assert result.name == "m-Q8_0-org" and mine.read_bytes() == tiny_gguf.read_bytes()
    # A verified file at the target (a pull stopped before it was recorded) is adopted, not fetched again.
    hub_env.add_repo("org/t-GGUF", {"t-Q8_0.gguf": tiny_gguf})
    (config.paths().models_dir / "t-Q8_0.gguf").write_bytes(tiny_gguf.read_bytes())
    adopted = downloads.pull("org/t-GGUF")
    assert adopted.name == "t-Q8_0" and adopted.downloaded_bytes == 0
    assert _gets(hub_env, "org/t-GGUF", "t-Q8_0.gguf") == []


def test_stale_partials_are_dropped_fresh_ones_kept(hub_env, tiny_gguf):
    folder = config.paths().partial_dir
    folder.mkdir(parents=True)
    old, fresh = folder / ("a" * 64 + ".part"), folder / ("b" * 64 + ".part")
    old.write_bytes(b"x" * 10)
    fresh.write_bytes(b"y" * 10)
    month_ago = time.time() - 31 * 86400
    os.utime(old, (month_ago, month_ago))
    hub_env.add_repo("org/tiny-GGUF", {"tiny-Q8_0.gguf": tiny_gguf})
    downloads.pull("org/tiny-GGUF")
    assert not old.exists() and fresh.exists()


# ---- a hostile or broken Hub --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["lfs_oid", "oid"])
def test_a_checksum_id_from_the_hub_never_names_a_path(hub_env, tiny_gguf, tmp_path, kind):
    """The partial file is named after the Hub's checksum id: one that climbs out of .partial must neither
    create a folder and file out there nor delete a larger file that is already there."""
    outside = tmp_path / "bashrc.d"
    outside.mkdir()
    victim = outside / "victim.part"
    victim.write_bytes(b"x" * (tiny_gguf.stat().st_size + 100))  # larger than the file: would be "oversized"
    hostile = "../../../bashrc.d/"  # from $AIDEVOPS_HOME/models/.partial to tmp_path/bashrc.d
    lfs = None if kind == "lfs_oid" else set()  # an LFS file names its sha256, a git file its blob id
    for name, target in (("evil-Q4_K_M.gguf", "evil"), ("victim-Q8_0.gguf", "victim")):
        hub_env.add_repo(f"evil/{target}-GGUF", {name: tiny_gguf}, lfs=lfs)
        hub_env.advertise(f"evil/{target}-GGUF", name, **{kind: hostile + target})
        with pytest.raises(UnsafePath, match="checksum"):
            downloads.pull(f"evil/{target}-GGUF", file=name)
        with pytest.raises(NotFound):  # without --file such a file is simply not a candidate
            downloads.pull(f"evil/{target}-GGUF")
        assert _gets(hub_env, f"evil/{target}-GGUF", name) == []
    assert sorted(p.name for p in outside.iterdir()) == ["victim.part"]
    assert victim.stat().st_size == tiny_gguf.stat().st_size + 100
    assert library.list_models() == []


def test_a_hub_that_lists_more_bytes_than_it_serves_fails_verification(hub_env, tiny_gguf):
    """Every Range request past the real end gets 416: start over once, then give up with exit 6 and leave
    nothing behind (not a partial that the next run would resume into the same 416)."""
    size = tiny_gguf.stat().st_size
    hub_env.add_repo("org/tiny-GGUF", {"tiny-Q8_0.gguf": tiny_gguf})
    hub_env.advertise("org/tiny-GGUF", "tiny-Q8_0.gguf", size=size + 4096)
    with pytest.raises(VerificationFailed) as info:
        downloads.pull("org/tiny-GGUF")
    assert info.value.exit_code == 6 and "fewer bytes" in info.value.message
    assert hub_env.served("org/tiny-GGUF", "tiny-Q8_0.gguf") == 2 * size  # started over exactly once
    assert [r.header("Range") for r in _gets(hub_env, "org/tiny-GGUF", "tiny-Q8_0.gguf")] == [
        "bytes=0-",
        f"bytes={size}-",
        "bytes=0-",
        f"bytes={size}-",
    ]
    assert list(config.paths().partial_dir.glob("*.part")) == []
    assert library.list_models() == []


def test_a_split_set_whose_second_part_fails_leaves_nothing_listed(hub_env, tiny_split_gguf):
    files = {f"Q8_0/{p.name}": p for p in tiny_split_gguf}
    hub_env.add_repo("org/split-GGUF", files)
    first, second = sorted(files)
    hub_env.tamper("org/split-GGUF", second, times=1)
    with pytest.raises(VerificationFailed):
        downloads.pull("org/split-GGUF")
    assert library.list_models() == []
    models = config.paths().models_dir
    assert [p for p in models.rglob("*.gguf") if config.paths().partial_dir not in p.parents] == []
    served = hub_env.served("org/split-GGUF", first)
    result = downloads.pull("org/split-GGUF")  # the verified first part is kept for the next try
    assert hub_env.served("org/split-GGUF", first) == served
    assert [f.name for f in result.model.files] == [p.name for p in tiny_split_gguf]


def test_a_file_name_over_255_bytes_is_refused(hub_env, tiny_gguf, tmp_path):
    long_name = "m" * 250 + "-Q4_K_M.gguf"
    hub_env.add_repo("org/long-GGUF", {long_name: tiny_gguf, "m-Q8_0.gguf": tiny_gguf})
    from aidevops_local.core.models import hub

    assert [f.filename for f in hub.list_files("org/long-GGUF")] == ["m-Q8_0.gguf"]
    with pytest.raises(UnsafePath, match="255"):
        downloads.pull("org/long-GGUF", file=long_name)
    assert _gets(hub_env, "org/long-GGUF", long_name) == []
    assert not any(len(p.name) > 255 for p in tmp_path.rglob("*"))


@pytest.mark.parametrize(
    "args",
    [
        ["pull", "org/" + "a" * 100],
        ["pull", "org/modèle-GGUF"],
        ["search", "--repo", "a/b/c"],
        ["search", "--repo", "org/" + "a" * 100],
        ["search", "--repo", "org/modèle-GGUF"],
    ],
)
def test_cli_bad_repo_ids_and_names_are_one_line_errors(hub_env, tiny_gguf, args):
    hub_env.add_repo("org/m-GGUF", {"m-Q8_0.gguf": tiny_gguf})
    done = _cli(*args, hub=hub_env)
    assert "Traceback" not in done.stderr
    assert done.returncode in (11, 12), done.stderr
    assert [line for line in done.stderr.splitlines() if line.startswith("error:")], done.stderr
    assert len(done.stderr.splitlines()) <= 2, done.stderr  # the error and its hint


def test_a_file_where_the_partial_folder_belongs_is_one_line(hub_env, tiny_gguf):
    hub_env.add_repo("org/tiny-GGUF", {"tiny-Q8_0.gguf": tiny_gguf})
    folder = config.paths().partial_dir
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.write_text("not a folder")
    done = _cli("pull", "org/tiny-GGUF", hub=hub_env)
    assert done.returncode == 1, done.stderr
    assert " ".join(done.stderr.split()) == (  # the terminal's wrapping aside: the error and its hint
        f"error: {folder} is not a folder, so there is nowhere to keep the unfinished download. "
        "hint: Move that file away: pull makes the folder again."
    )
    assert folder.read_text() == "not a folder" and _gets(hub_env, "org/tiny-GGUF", "tiny-Q8_0.gguf") == []
