"""The fault suite: what a user's machine does to the tool, done for real.

kill -9 of a real `python -m aidevops_local` process during install, pull and a usage write; the connection
cut mid-download; the disk filling up mid-download (a real tmpfs, filled by another writer while the tool
writes); llama-server SIGKILLed with several requests in flight; the database locked by another process
(plain sqlite3); the clock jumping backward and forward (libfaketime on the CLI). Every case checks what
the next run finds: nothing corrupt, the previous runtime still serving, downloads resuming by the byte
(counted by the fake servers), usage rows equal to what the clients received, and clear errors, never a
traceback.

What the other suites already prove is not repeated here (test_runtime: a kill inside install_release's own
callback and between the swap's renames; test_pull: a kill of a single-file pull, a dropped connection that
is retried within the run; test_usage: a crash injected inside ingest's transaction; test_server: a kill of
an idle server).
"""

from __future__ import annotations

import errno
import functools
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import types
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from aidevops_local.cli.main import main as cli
from aidevops_local.core.database import store
from aidevops_local.core.llamacpp import runtime
from aidevops_local.core.models import downloads, transfer
from aidevops_local.core.models.library import model_name
from aidevops_local.core.serving import server
from aidevops_local.core.serving import state as server_state
from aidevops_local.core.system import config
from aidevops_local.core.system.errors import DiskFull, ExitCode
from tests import waiting
from tests.fixtures.prepare import sha256_file
from tests.serving import serving_settings, with_model
from tests.usage_server import Answer, chat, logged_server, rows, triples, wait_logged
from tests.usage_server import client as http_client

REPO = Path(__file__).resolve().parents[1]
OLD, NEW = "b10068", "b10100"
VERSION_LINE = "version: 1 (571d0d5)"
SMOL = "SmolLM2-135M-Instruct.Q4_1.gguf"
FAKETIME = shutil.which("faketime")
needs_faketime = pytest.mark.skipif(
    FAKETIME is None, reason="faketime (libfaketime) is not installed: tests/install-deps.sh installs it"
)

wait_for = functools.partial(waiting.wait_for, interval=0.005)  # a moment mid-transfer is short: poll closely


# ---- processes ---------------------------------------------------------------------------------------------


class Procs:
    """Every process a test starts, killed (with its group) at the end whatever happened."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.started: list[subprocess.Popen] = []
        self.others: list[subprocess.Popen] = []  # helpers with their own pipes (the lock holder)

    def cli(self, *args: str, shift: str | None = None, code: str | None = None) -> subprocess.Popen:
        """`python -m aidevops_local ARGS` in its own session, output to files (read with .out/.err)."""
        argv = (
            [sys.executable, "-m", "aidevops_local", *args]
            if code is None
            else [sys.executable, "-c", textwrap.dedent(code), *args]
        )
        if shift:
            argv = [FAKETIME, shift, *argv]
        name = uuid.uuid4().hex[:8]
        # Files, not pipes: a chatty process never blocks on a full pipe; closed in kill_all.
        out = open(self.tmp / f"{name}.out", "w+")  # noqa: SIM115
        err = open(self.tmp / f"{name}.err", "w+")  # noqa: SIM115
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            cwd=REPO,
            env=os.environ.copy(),
            start_new_session=True,
        )
        proc.out_file, proc.err_file = out, err  # type: ignore[attr-defined]
        self.started.append(proc)
        return proc

    def run(
        self, *args: str, shift: str | None = None, code: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess:
        proc = self.cli(*args, shift=shift, code=code)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            raise
        return finished(proc)

    def kill_all(self) -> None:
        for proc in self.others:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=10)
        for proc in self.started:
            kill_group(proc)
            for f in (proc.out_file, proc.err_file):  # type: ignore[attr-defined]
                f.close()


def finished(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    outs = []
    for f in (proc.out_file, proc.err_file):  # type: ignore[attr-defined]
        f.flush()
        f.seek(0)
        outs.append(f.read())
    return subprocess.CompletedProcess(proc.args, proc.returncode, outs[0], outs[1])


def kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


def kill9(proc: subprocess.Popen) -> None:
    """SIGKILL the app process itself (not its group: a server it started lives on, as it would)."""
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL


@pytest.fixture
def procs(tmp_path) -> Iterator[Procs]:
    folder = tmp_path / "procs"
    folder.mkdir()
    p = Procs(folder)
    yield p
    p.kill_all()


@pytest.fixture(autouse=True)
def no_server_left():
    """Whatever a test served is stopped (the state file names it), and the database handle is closed."""
    yield
    try:
        server.stop(grace=2)
    finally:
        store.close()


def clean(done: subprocess.CompletedProcess, code: int = 0) -> subprocess.CompletedProcess:
    """The command exited with `code` and, whatever it said, no Python traceback reached the user. Its stderr
    comes back with whitespace runs made single spaces (the terminal renderer wraps long lines)."""
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == code, f"exit {done.returncode}, wanted {code}:\n{done.stderr}"
    done.stderr = " ".join(done.stderr.split())
    return done


def as_json(done: subprocess.CompletedProcess) -> dict:
    return json.loads(clean(done).stdout)


def settled(counter: Callable[[], int]) -> int:
    """A server-side byte counter once a killed or failed client's connection has wound down."""
    last, since = counter(), time.monotonic()
    deadline = since + 10
    while time.monotonic() < deadline and time.monotonic() - since < 0.5:
        time.sleep(0.05)
        now = counter()
        if now != last:
            last, since = now, time.monotonic()
    return last


def size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def tree(folder: Path) -> dict[str, str]:
    """Every file's sha256 and every link's target under folder: a build is intact if this is unchanged."""
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_symlink():
            out[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            out[rel] = sha256_file(path)
    return out


def assert_runs(server_path: Path) -> None:
    done = subprocess.run([str(server_path), "--version"], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0 and VERSION_LINE in done.stderr, done.stderr


def plain(sql: str, params=()) -> list[tuple]:
    """Read the database the way another program would: plain sqlite3, read-only."""
    conn = sqlite3.connect(f"file:{config.paths().database}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def fill_disk(folder: Path) -> Path:
    """Another program takes every free byte of the filesystem holding `folder`."""
    filler = folder / f"filler-{uuid.uuid4().hex[:6]}"
    with open(filler, "wb", buffering=0) as fh:
        st = os.statvfs(folder)
        try:
            os.posix_fallocate(fh.fileno(), 0, max(4096, st.f_bavail * st.f_frsize))
        except OSError:
            pass
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    assert shutil.disk_usage(folder).free < 64 << 10
    return filler


# ---- parts: releases, hub, runtime, tmpfs ------------------------------------------------------------------


def asset_name(tag: str) -> str:
    return f"llama-{tag}-bin-ubuntu-x64.tar.gz"


@pytest.fixture
def gh(fake_releases, monkeypatch):
    monkeypatch.setenv("AIDEVOPS_LLAMA_RELEASES_URL", fake_releases.base_url)
    monkeypatch.setenv("AIDEVOPS_BACKEND", "cpu")
    return fake_releases


def publish(gh, release_archive, tag: str) -> tuple[str, int]:
    name = asset_name(tag)
    archive = release_archive(tag)
    gh.add_release(tag, {name: archive})
    return name, archive.stat().st_size


@pytest.fixture
def hub_env(fake_hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    return fake_hub


@pytest.fixture
def tmpfs_home(tmp_path, monkeypatch) -> Iterator[Callable[[int], Path]]:
    """mount(size_mb): a real tmpfs of that size becomes AIDEVOPS_HOME (everything: bin, models, database).
    Skipped, with the reason, where mounting is not allowed."""
    mounted: list[Path] = []

    def mount(size_mb: int) -> Path:
        disk = tmp_path / "disk"
        disk.mkdir()
        if os.geteuid() != 0 or not shutil.which("mount"):
            pytest.skip("mounting a small tmpfs needs root and mount(8)")
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(disk)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(disk)
        store.close()
        monkeypatch.setenv("AIDEVOPS_HOME", str(disk / "home"))
        return disk

    yield mount
    for disk in mounted:
        try:
            server.stop(grace=2)
        finally:
            store.close()
            subprocess.run(["umount", "-l", str(disk)], check=False)


# ============================================================================================================
# kill -9 of the app
# ============================================================================================================


@pytest.mark.parametrize("phase", ["download", "unpack"])
def test_install_killed_by_sigkill_leaves_the_previous_build_serving(
    gh, release_archive, tiny_gguf, free_port, procs, phase
):
    """`install` SIGKILLed mid-download or mid-unpack: the next run finds the old build byte for byte, serves
    a model with it, and the next install finishes and sweeps the killed run's leftovers."""
    publish(gh, release_archive, OLD)
    runtime.install_release()
    bin_dir = config.paths().bin_dir
    before = tree(bin_dir)
    name, size = publish(gh, release_archive, NEW)
    if phase == "download":
        gh.throttle(8 << 20, name)  # ~3 s for the whole asset
    work = config.paths().app_dir / "install"

    def reached() -> bool:
        if phase == "download":
            return any(size_of(p) > size // 3 for p in work.glob(f"*/build/{name}"))
        return any(p.is_dir() and any(p.rglob("*")) for p in work.glob("*/build/unpacked-0"))

    install = procs.cli("install", "--tag", NEW)
    wait_for(lambda: reached() or install.poll() is not None, 60, f"the install to reach its {phase}", interval=0.002)
    assert install.poll() is None, finished(install).stderr
    kill9(install)
    leftovers = list(work.iterdir())
    assert leftovers, "the killed install left its work folder (so the kill really was mid-install)"

    # The next run: the previous build, unchanged and working.
    assert tree(bin_dir) == before
    active = runtime.installed_runtime()
    assert active.tag == OLD and runtime.find_llama_server() == bin_dir / "llama-server"
    assert_runs(bin_dir / "llama-server")
    serving_settings()
    port = free_port()
    served = as_json(procs.run("serve", str(tiny_gguf), "--port", str(port), "--json"))
    assert served["state"] == "running"
    with http_client(30) as client:
        assert chat(client, f"http://127.0.0.1:{port}", "still here?", max_tokens=4).completion_tokens == 4
    clean(procs.run("stop"))

    # The install, run again, completes and removes what the killed one left.
    gh.clear_faults()
    result = as_json(procs.run("install", "--tag", NEW, "--json"))
    assert result["tag"] == NEW
    assert not any(p.exists() for p in leftovers)
    assert runtime.previous_runtime().tag == OLD
    assert tree(config.paths().previous_bin_dir) == before
    assert_runs(bin_dir / "llama-server")


def test_pull_of_a_split_set_killed_mid_second_part_resumes_by_the_byte(hub_env, tiny_split_gguf, procs):
    """The first part is finished (kept in its partial until the whole set verifies), the second half-way in
    its partial: the next `pull` sends neither the first part nor the saved half again, and the set that lands
    verifies."""
    files = {f"Q8_0/{p.name}": p for p in tiny_split_gguf}
    repo = "org/split-GGUF"
    hub_env.add_repo(repo, files)
    first, second = sorted(files)
    size2 = files[second].stat().st_size
    hub_env.throttle(40 << 10, repo, second)  # the second part takes ~5 s
    partial = config.paths().partial_dir / f"{sha256_file(files[second])}.part"

    pull = procs.cli("pull", repo)
    wait_for(lambda: size_of(partial) > size2 // 3 or pull.poll() is not None, 60, "half of the second part")
    assert pull.poll() is None, finished(pull).stderr
    kill9(pull)
    kept = size_of(partial)
    assert size2 // 3 < kept < size2
    assert plain("SELECT COUNT(*) FROM model_inventory") == [(0,)]  # nothing recorded for an unfinished set

    hub_env.clear_faults()
    served = {f: settled(lambda f=f: hub_env.served(repo, f)) for f in files}
    assert served[first] == files[first].stat().st_size  # the first part was done, fetched once
    # The finished part waits in its partial: alone in models/ it would be listed as a model of its own.
    assert not (config.paths().models_dir / model_name(first)).exists()
    assert size_of(config.paths().partial_dir / f"{sha256_file(files[first])}.part") == served[first]
    clean(procs.run("pull", repo))
    assert hub_env.served(repo, first) == served[first]  # the finished part was not fetched again
    assert hub_env.served(repo, second) - served[second] == size2 - kept  # only the rest of the second
    assert hub_env.requests_to(repo, second, "GET")[-1].header("Range") == f"bytes={kept}-"
    (row,) = plain("SELECT files FROM model_inventory")
    landed = [Path(f) for f in json.loads(row[0])]
    assert [sha256_file(f) for f in landed] == [sha256_file(files[f]) for f in (first, second)]
    assert not list(config.paths().partial_dir.glob("*.part"))


def test_usage_ingest_killed_repeatedly_loses_and_doubles_no_row(llama_server_dir, tiny_gguf, procs):
    """`usage` SIGKILLed again and again while it writes rows (hundreds of real server logs to read): after
    the run that finishes, every request the clients were answered is one row, the inventory's count agrees,
    and the database is intact."""
    answers: list[Answer] = []
    with logged_server(llama_server_dir, tiny_gguf, model="tiny", parallel=2) as srv, http_client() as client:
        for i in range(6):
            answers.append(chat(client, srv.url, f"request {i} " + "y" * i, max_tokens=3 + i, stream=bool(i % 2)))
    text = srv.log_path.read_text()
    srv.log_path.unlink()
    copies = 300
    logs = config.paths().logs_dir
    for n in range(copies):  # 300 runs' logs: real lines, one session id each
        copy = text.replace(srv.session_id, f"run{n:04d}")
        (logs / f"llama-server-20261125-{n:06d}-1.log").write_text(copy)
    store.database()
    store.ModelInventory.create(model="tiny", path=str(tiny_gguf), source="external")
    store.close()
    expected = copies * len(answers)

    def cursors() -> int:
        try:
            return plain("SELECT COUNT(*) FROM usage_log_cursor")[0][0]
        except sqlite3.OperationalError:
            return 0

    kills = 0
    for threshold in (20, 90, 160, 230):
        ingest = procs.cli("usage", "--json")
        wait_for(
            lambda n=threshold, p=ingest: cursors() >= n or p.poll() is not None,
            60,
            "ingest to get going",
            interval=0.001,
        )
        if ingest.poll() is None:
            kill9(ingest)
            kills += 1
            done_files = cursors()
            assert done_files < copies
            count, keys = plain("SELECT COUNT(*), COUNT(DISTINCT request_key) FROM model_usage")[0]
            # Each log's rows and its cursor commit together: never rows without their cursor, nor twice.
            assert count == keys == len(answers) * done_files
            assert plain("PRAGMA integrity_check") == [("ok",)]
    assert kills >= 2, "ingest finished before it could be killed: give it more logs"

    report = as_json(procs.run("usage", "--json"))
    assert report["total"]["requests"] == expected
    found = rows()
    assert len(found) == len({r.request_key for r in found}) == expected
    assert triples(found) == Counter({k: copies * v for k, v in triples(answers).items()})
    assert plain("SELECT total_requests FROM model_inventory WHERE model = 'tiny'") == [(expected,)]
    assert plain("PRAGMA integrity_check") == [("ok",)]
    assert as_json(procs.run("usage", "--json"))["total"]["requests"] == expected  # a rerun adds nothing


# ============================================================================================================
# the connection dropped mid-download
# ============================================================================================================


def test_release_download_cut_off_is_a_clear_network_error_and_changes_nothing(gh, release_archive, procs):
    publish(gh, release_archive, OLD)
    runtime.install_release()
    bin_dir = config.paths().bin_dir
    before = tree(bin_dir)
    name, size = publish(gh, release_archive, NEW)
    work = config.paths().app_dir / "install"

    gh.truncate(name, size // 3)  # every response stops a third of the way in
    done = clean(procs.run("install", "--tag", NEW), ExitCode.NETWORK)
    assert f"The download of {name} broke off after" in done.stderr
    assert f"received {size // 3} bytes, expected {size}" in done.stderr
    assert "hint: Check the network and run the command again." in done.stderr
    assert not work.exists() or not list(work.iterdir())
    assert tree(bin_dir) == before and runtime.installed_runtime().tag == OLD

    # The server goes away altogether in the middle of the body.
    gh.clear_faults()
    gh.clear_log()
    gh.throttle(4 << 20, name)
    install = procs.cli("install", "--tag", NEW)
    wait_for(lambda: gh.bytes_served[name] > size // 4 or install.poll() is not None, 60, "a quarter of it")
    gh.stop()
    install.wait(timeout=60)
    done = clean(finished(install), ExitCode.NETWORK)
    assert f"The download of {name} broke off after" in done.stderr
    assert not work.exists() or not list(work.iterdir())
    assert tree(bin_dir) == before and runtime.installed_runtime().tag == OLD
    assert_runs(bin_dir / "llama-server")


def test_pull_when_the_hub_goes_away_is_a_clear_error_and_resumes_from_another(
    hub_env, smollm2_gguf, monkeypatch, capsys
):
    """The Hub vanishes mid-file: pull retries (with backoff, shortened here), then says so and keeps what it
    has; pulled again from a Hub that is back (another address even), only the rest travels."""
    from tests.fakes.hf_hub import FakeHub

    size = smollm2_gguf.stat().st_size
    repo = "org/smol-GGUF"
    hub_env.add_repo(repo, {SMOL: smollm2_gguf})
    hub_env.throttle(30 << 20, repo, SMOL)
    slept: list[float] = []
    monkeypatch.setattr(
        transfer,
        "time",
        types.SimpleNamespace(
            monotonic=time.monotonic, time=time.time, sleep=lambda s: (slept.append(s), time.sleep(0.01))
        ),
    )

    def pull_the_plug():
        wait_for(lambda: hub_env.served(repo, SMOL) > size // 3, 60, "a third of the file")
        hub_env.stop()

    t = threading.Thread(target=pull_the_plug)
    t.start()
    code = cli(["pull", repo])
    t.join()
    err = capsys.readouterr().err
    assert code == ExitCode.NETWORK, err
    assert f"The download of {SMOL} keeps failing" in err and "resumes" in err
    assert len(slept) >= transfer.MAX_STALLED_RETRIES - 1 and slept[-4:] == sorted(slept[-4:])  # backed off
    partial = config.paths().partial_dir / f"{sha256_file(smollm2_gguf)}.part"
    kept = size_of(partial)
    assert size // 3 <= kept < size
    assert store.ModelInventory.select().count() == 0

    with FakeHub() as back:
        monkeypatch.setenv("HF_ENDPOINT", back.endpoint)
        back.add_repo(repo, {SMOL: smollm2_gguf})
        assert cli(["pull", repo, "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert back.served(repo, SMOL) == size - kept
        assert not back.errors
    assert (result["resumed_bytes"], result["downloaded_bytes"]) == (kept, size - kept)
    assert sha256_file(Path(result["model"]["path"])) == sha256_file(smollm2_gguf)


# ============================================================================================================
# the disk filling up mid-download
# ============================================================================================================


def test_disk_filling_up_during_install_download(gh, release_archive, tmpfs_home, procs):
    """AIDEVOPS_HOME on a 200 MiB tmpfs: the free-space check passes, then another program takes the rest
    while `install` downloads. Exit 10 with a clear message; the download is gone, the old build intact."""
    disk = tmpfs_home(200)
    publish(gh, release_archive, OLD)
    runtime.install_release()
    bin_dir = config.paths().bin_dir
    before = tree(bin_dir)
    name, size = publish(gh, release_archive, NEW)
    gh.throttle(8 << 20, name)
    work = config.paths().app_dir / "install"
    filled: list[Path] = []

    def other_program():
        wait_for(lambda: any(size_of(p) > size // 3 for p in work.glob(f"*/build/{name}")), 60, "a third of it")
        filled.append(fill_disk(disk))

    t = threading.Thread(target=other_program)
    install = procs.cli("install", "--tag", NEW)
    t.start()
    install.wait(timeout=120)
    t.join()
    done = clean(finished(install), ExitCode.DISK_FULL)
    assert filled, "the disk was never filled"
    assert f"The disk filled up while downloading {name}" in done.stderr
    assert "Free some disk space" in done.stderr
    assert not work.exists() or not list(work.iterdir())
    assert tree(bin_dir) == before and runtime.installed_runtime().tag == OLD
    assert_runs(bin_dir / "llama-server")

    filled[0].unlink()
    gh.clear_faults()
    assert as_json(procs.run("install", "--tag", NEW, "--json"))["tag"] == NEW
    assert runtime.previous_runtime().tag == OLD


@pytest.mark.parametrize("phase", ["Unpacking", "Checking"])
def test_disk_filling_up_later_in_install_is_disk_full_too(gh, release_archive, tmpfs_home, phase):
    """Filled while the archive unpacks, or while the new build is checked (its manifest still to write)."""
    disk = tmpfs_home(200)
    publish(gh, release_archive, OLD)
    runtime.install_release()
    bin_dir = config.paths().bin_dir
    before = tree(bin_dir)
    publish(gh, release_archive, NEW)
    filled: list[Path] = []

    def progress(p):
        if p.task.startswith(phase) and not filled and (not p.total or p.done >= p.total // 3):
            filled.append(fill_disk(disk))

    with pytest.raises(DiskFull) as caught:
        runtime.install_release(tag=NEW, progress=progress)
    assert filled
    assert "filled up" in caught.value.message and "Free" in caught.value.hint
    work = config.paths().app_dir / "install"
    assert not work.exists() or not list(work.iterdir())
    assert tree(bin_dir) == before and runtime.installed_runtime().tag == OLD
    filled[0].unlink()
    assert runtime.install_release(tag=NEW).tag == NEW


def test_disk_filling_up_during_pull_keeps_the_partial_and_resumes(
    hub_env, smollm2_gguf, tmpfs_home, procs, monkeypatch
):
    """AIDEVOPS_HOME (models and the database) on a tmpfs that passes pull's check (file + 256 MiB margin);
    another program fills it mid-file. Exit 10, the partial kept, nothing recorded, the database intact and
    still readable; once space is freed the pull resumes from the partial."""
    disk = tmpfs_home(420)
    size = smollm2_gguf.stat().st_size
    repo = "org/smol-GGUF"
    hub_env.add_repo(repo, {SMOL: smollm2_gguf})
    hub_env.throttle(30 << 20, repo, SMOL)
    partial = config.paths().partial_dir / f"{sha256_file(smollm2_gguf)}.part"
    filled: list[Path] = []

    def other_program():
        wait_for(lambda: size_of(partial) > size // 3, 60, "a third of the file")
        filled.append(fill_disk(disk))

    t = threading.Thread(target=other_program)
    pull = procs.cli("pull", repo)
    t.start()
    pull.wait(timeout=120)
    t.join()
    done = clean(finished(pull), ExitCode.DISK_FULL)
    assert filled and f"The disk filled up while downloading {SMOL}" in done.stderr
    assert "resumes" in done.stderr
    kept = size_of(partial)
    assert size // 3 <= kept < size
    assert not (config.paths().models_dir / SMOL).exists()
    # Whether the pull's exit could fold SQLite's WAL into the file (and remove -wal and -shm) depends on when
    # the disk filled; with them left, reading needs no new byte. Close it cleanly here, so that with the disk
    # full again, opening must create -shm: the commands that need the database say the disk is full (exit 10).
    for filler in filled:
        filler.unlink()
    filled.clear()
    store.database()
    store.close()
    assert not Path(f"{config.paths().database}-shm").exists()
    filled.append(fill_disk(disk))
    for args in (["models", "--json"], ["usage", "--json"]):
        done = clean(procs.run(*args), ExitCode.DISK_FULL)
        assert "The disk holding the usage database" in done.stderr and "is full" in done.stderr
        assert "Free some disk space" in done.stderr
    assert json.loads(clean(procs.run("status", "--json"), ExitCode.NOT_RUNNING).stdout)["state"] == "stopped"

    for filler in filled:
        filler.unlink()
    assert store.check_health() == "ok"
    assert plain("SELECT COUNT(*) FROM model_inventory") == [(0,)]
    hub_env.clear_faults()
    served_before = settled(lambda: hub_env.served(repo, SMOL))
    result = as_json(procs.run("pull", repo, "--json"))
    assert hub_env.served(repo, SMOL) - served_before == size - kept
    assert (result["resumed_bytes"], result["downloaded_bytes"]) == (kept, size - kept)
    assert sha256_file(Path(result["model"]["path"])) == sha256_file(smollm2_gguf)


def test_disk_filling_up_as_a_pull_finishes_is_disk_full_and_the_next_pull_records_it(
    hub_env, tiny_gguf, tmpfs_home, capsys
):
    """The file is complete and verified when the disk fills, so recording it in the database fails: that is
    DiskFull too (not SQLite's "cannot rollback" masking it), and the next pull records the file already in
    place without fetching a byte."""
    disk = tmpfs_home(300)
    repo, name = "org/tiny-GGUF", "tiny-Q8_0.gguf"
    hub_env.add_repo(repo, {name: tiny_gguf})
    filled: list[Path] = []

    def progress(p):
        if p.total and p.done == p.total and not filled:
            filled.append(fill_disk(disk))

    with pytest.raises(DiskFull) as caught:
        downloads.pull(repo, progress=progress)
    assert filled and "is full" in caught.value.message
    target = config.paths().models_dir / name
    assert sha256_file(target) == sha256_file(tiny_gguf)  # verified and in place, only not recorded
    filled[0].unlink()
    assert store.ModelInventory.select().count() == 0

    served = hub_env.served(repo, name)
    assert cli(["pull", repo, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert hub_env.served(repo, name) == served and result["downloaded_bytes"] == 0
    assert result["model"]["path"] == str(target)
    assert [r.model for r in store.ModelInventory.select()] == ["tiny-Q8_0"]


def test_serve_from_a_process_that_has_the_database_open_on_a_full_disk(
    llama_server_dir, tiny_gguf, tmpfs_home, free_port
):
    disk = tmpfs_home(20)
    runtime.use_system(path=llama_server_dir / "llama-server")
    serving_settings()
    store.database()
    config.paths().logs_dir.mkdir(parents=True, exist_ok=True)
    fill_disk(disk)
    with pytest.raises(DiskFull):
        server.serve(str(tiny_gguf), port=free_port())
    assert server_state.read() is None


# ============================================================================================================
# llama-server crashing under load
# ============================================================================================================


@pytest.mark.real_server
def test_llama_server_killed_with_requests_in_flight(system_runtime, tiny_gguf, free_port, procs):
    """Three long generations streaming and short requests completing beside them when llama-server is
    SIGKILLed: the long ones' clients get errors, `status` says crashed, the usage rows are exactly the
    requests that completed, and `serve` works again."""
    config.save_settings(config.Settings(threads=1, ctx_size=32768, parallel=4, stop_grace_s=5.0))
    port = free_port()
    served = as_json(procs.run("serve", str(tiny_gguf), "--port", str(port), "--json"))
    url = f"http://127.0.0.1:{port}"
    completed: list[Answer] = []
    with http_client(60) as client:
        completed += [chat(client, url, f"warm {i}", max_tokens=4 + i, stream=bool(i % 2)) for i in range(3)]

    streaming = threading.Barrier(4)
    failures: list[BaseException] = []
    finished_long: list[int] = []

    def long_request(i: int) -> None:
        body = with_model(
            {"messages": [{"role": "user", "content": f"long {i}"}], "max_tokens": 4000, "stream": True}, url
        )
        chunks = 0
        try:
            with http_client(60) as c, c.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        chunks += 1
                        if chunks == 10:
                            streaming.wait(30)
            finished_long.append(i)
        except httpx.HTTPError as exc:
            failures.append(exc)

    threads = [threading.Thread(target=long_request, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    streaming.wait(30)  # all three are generating
    with http_client(60) as client:  # the fourth slot answers short requests meanwhile
        completed += [chat(client, url, f"beside {i}", max_tokens=3 + i, stream=bool(i % 2)) for i in range(4)]
    wait_logged(len(completed))
    assert server_state.owned_process(server_state.read()) is not None
    os.kill(served["pid"], signal.SIGKILL)
    for t in threads:
        t.join(30)
    assert finished_long == [] and len(failures) == 3, (finished_long, failures)

    status = procs.run("status", "--json")
    assert status.returncode == ExitCode.NOT_RUNNING and json.loads(status.stdout)["state"] == "crashed"
    report = as_json(procs.run("usage", "--json"))
    assert report["total"]["requests"] == len(completed) == 7
    assert triples(rows()) == triples(completed)

    again = as_json(procs.run("serve", str(tiny_gguf), "--port", str(port), "--json"))
    assert again["state"] == "running" and again["pid"] != served["pid"]
    with http_client(60) as client:
        completed.append(chat(client, url, "after the crash", max_tokens=5))
    clean(procs.run("stop"))
    assert triples(rows()) == triples(completed)


# ============================================================================================================
# the database locked by another process
# ============================================================================================================

HOLDER = """
    import sqlite3, sys, time
    path, mode, hold = sys.argv[1], sys.argv[2], sys.argv[3]
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    if mode == "exclusive-mode":  # readers are shut out too, not only writers
        conn.execute("PRAGMA locking_mode=EXCLUSIVE")
    conn.execute("BEGIN EXCLUSIVE")
    conn.execute("INSERT OR REPLACE INTO app_state(key, value, updated) VALUES ('holder', 'x', '2026-01-01')")
    print("held", flush=True)
    if hold == "until-told":
        sys.stdin.readline()
    else:
        time.sleep(float(hold))
    conn.execute("COMMIT")
"""


def hold_lock(procs: Procs, mode: str, seconds: float | None) -> subprocess.Popen:
    """Another program (plain sqlite3) takes the database's lock for `seconds` (None: until a line reaches its
    stdin); returns once it holds it."""
    hold = "until-told" if seconds is None else str(seconds)
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(HOLDER), str(config.paths().database), mode, hold],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    procs.others.append(holder)
    assert holder.stdout.readline().strip() == "held", holder.stderr.read()
    return holder


@pytest.mark.real_server
@pytest.mark.parametrize("mode", ["exclusive", "exclusive-mode"])
def test_stop_and_usage_wait_for_a_locked_database(system_runtime, tiny_gguf, free_port, procs, mode):
    """Another program holds the database for 2.5 s while `usage` and then `stop` (which ingests) have new
    requests to record: each waits for the lock, then succeeds, and every request is one row."""
    store.database()  # the database exists before another program locks it
    store.close()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    as_json(procs.run("serve", str(tiny_gguf), "--port", str(port), "--json"))
    answers: list[Answer] = []

    def locked_run(*args: str) -> tuple[dict, float]:
        with http_client(60) as client:
            answers.extend([chat(client, url, f"q {len(answers)} {i}", max_tokens=3 + i) for i in range(3)])
        wait_logged(len(answers))
        holder = hold_lock(procs, mode, 2.5)
        started = time.monotonic()
        result = as_json(procs.run(*args))
        waited = time.monotonic() - started
        assert holder.wait(10) == 0
        return result, waited

    report, waited = locked_run("usage", "--json")
    assert waited > 1.5, "usage did not meet the lock"
    assert report["total"]["requests"] == 3
    stopped, waited = locked_run("stop", "--json")
    assert waited > 1.5, "stop did not meet the lock"
    assert stopped["stopped"] and not stopped["warning"]
    assert triples(rows()) == triples(answers) and len(answers) == 6


PATIENCE = """
    import sys
    from aidevops_local.core.database import store
    store.BUSY_TIMEOUT_S, store.WRITE_DEADLINE_S = 0.5, 1.5  # the shipped 10 s and 60 s, shortened
    from aidevops_local.cli.main import main
    sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.real_server
@pytest.mark.parametrize("mode", ["exclusive", "exclusive-mode"])
def test_a_lock_held_past_the_deadline_is_a_clear_database_error(system_runtime, tiny_gguf, free_port, procs, mode):
    """The lock outlasts the CLI's patience: `usage` fails with exit 13 and a sentence, `stop` still stops
    the server and warns that usage waits for the next run, which then records every request once."""
    store.database()  # the database exists before another program locks it
    store.close()
    port = free_port()
    as_json(procs.run("serve", str(tiny_gguf), "--port", str(port), "--json"))
    with http_client(60) as client:
        answers = [chat(client, f"http://127.0.0.1:{port}", f"q {i}", max_tokens=3 + i) for i in range(3)]
    wait_logged(len(answers))

    holder = hold_lock(procs, mode, None)  # held until both commands have given up
    done = clean(procs.run("usage", "--json", code=PATIENCE), ExitCode.DATABASE)
    assert "stayed locked" in done.stderr and "database is locked" not in done.stderr
    stopped = as_json(procs.run("stop", "--json", code=PATIENCE))
    assert stopped["stopped"] and "Usage was not recorded this time" in stopped["warning"]
    assert server.status().state == "stopped"
    holder.communicate("go\n", timeout=20)

    report = as_json(procs.run("usage", "--json"))
    assert report["total"]["requests"] == 3
    assert triples(rows()) == triples(answers)


# ============================================================================================================
# a clock jump
# ============================================================================================================


def _pulled(source: Path, name: str, *, downloaded: datetime) -> None:
    target = config.paths().models_dir / "org" / name / source.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    store.database()
    store.ModelInventory.create(
        model=name,
        path=str(target),
        files=[str(target)],
        size_bytes=target.stat().st_size,
        source="pulled",
        downloaded=downloaded,
    )


@needs_faketime
def test_clock_jumps_cleanup_and_nudge(tiny_gguf, procs):
    """Backward: nothing becomes stale and nothing crashes. Forward: models become stale. A nudge shown
    while the clock ran ahead does not silence the nudge for the length of the jump once it is corrected."""
    now = datetime.now(UTC)
    config.save_settings(config.Settings(stale_days=30, stale_nudge_gb=0.0001))
    _pulled(tiny_gguf, "fresh", downloaded=now)
    store.close()

    for shift in ("-40 days", "-3 years"):
        assert as_json(procs.run("cleanup", "--dry-run", "--json", shift=shift))["models"] == []
        assert clean(procs.run("nudge", "--json", shift=shift)).stdout.strip() == "null"
    plan = as_json(procs.run("cleanup", "--dry-run", "--json", shift="+31 days"))
    assert [(m["model"], m["idle_days"], m["removable"]) for m in plan["models"]] == [("fresh", 31, True)]

    nudged = as_json(procs.run("nudge", "--json", shift="+1 year"))  # the clock runs a year ahead
    assert nudged["stale_models"] == 1
    assert clean(procs.run("nudge", "--json", shift="+1 year")).stdout.strip() == "null"  # once a day
    # The clock is put right; 35 days on (really) the model is stale: the nudge must speak then, not stay
    # silent until a day after the moment the wrong clock claimed.
    later = as_json(procs.run("nudge", "--json", shift="+35 days"))
    assert later is not None, "the nudge stayed silent after the clock was put back"
    assert later["stale_models"] == 1
    assert clean(procs.run("nudge", "--json", shift="+35 days")).stdout.strip() == "null"
    store.database()
    assert [m.model for m in store.ModelInventory.select()] == ["fresh"]


@needs_faketime
@pytest.mark.real_server
def test_clock_jumps_usage_timestamps_and_uptime(system_runtime, tiny_gguf, free_port, procs):
    """Rows keep the moment the server finished each request, whatever the ingesting process's clock says;
    `status` knows our server under a skewed clock and its uptime is never negative."""
    port = free_port()
    t0 = datetime.now(UTC).replace(microsecond=0)
    as_json(procs.run("serve", str(tiny_gguf), "--port", str(port), "--json"))
    with http_client(60) as client:
        answers = [chat(client, f"http://127.0.0.1:{port}", f"when {i}", max_tokens=4) for i in range(3)]
    wait_logged(len(answers))
    t1 = datetime.now(UTC) + timedelta(seconds=1)

    behind = as_json(procs.run("status", "--json", shift="-1 hour"))
    ahead = as_json(procs.run("status", "--json", shift="+1 hour"))
    assert behind["state"] == ahead["state"] == "running"
    assert behind["uptime_s"] >= 0
    assert 3600 <= ahead["uptime_s"] < 3600 + 120

    report = as_json(procs.run("usage", "--json", shift="-3 days"))  # ingested by a process 3 days behind
    assert report["total"]["requests"] == 3
    found = rows()
    assert triples(found) == triples(answers)
    assert all(t0 <= r.timestamp <= t1 for r in found), [r.timestamp for r in found]
    assert as_json(procs.run("usage", "--since", "1d", "--json", shift="+3 days"))["total"]["requests"] == 0
    assert as_json(procs.run("usage", "--since", "1d", "--json"))["total"]["requests"] == 3
    clean(procs.run("stop", shift="-1 hour"))
    assert len(rows()) == 3

    # A server started while the clock ran a day ahead, looked at with the right clock.
    as_json(procs.run("serve", str(tiny_gguf), "--port", str(port), "--json", shift="+1 day"))
    status = as_json(procs.run("status", "--json"))
    assert status["state"] == "running" and status["uptime_s"] >= 0
    clean(procs.run("stop"))


@needs_faketime
@pytest.mark.real_server
def test_uptime_of_a_server_started_while_the_clock_ran_ahead(system_runtime, tiny_gguf, free_port, procs):
    as_json(procs.run("serve", str(tiny_gguf), "--port", str(free_port()), "--json", shift="+1 day"))
    time.sleep(1.5)
    status = as_json(procs.run("status", "--json"))
    assert status["state"] == "running"
    assert 1.0 <= status["uptime_s"] < 60
