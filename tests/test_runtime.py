"""Installing llama.cpp from (local, GitHub-shaped) releases: the real llama-server, real archives, real sockets."""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

from aidevops_local.cli.main import main
from aidevops_local.core.llamacpp import releases, runtime
from aidevops_local.core.system import config
from aidevops_local.core.system.errors import (
    AssetNotFound,
    Cancelled,
    DiskFull,
    ExitCode,
    NetworkError,
    NotFound,
    Refused,
    RuntimeNotInstalled,
    UnsafePath,
    VerificationFailed,
)
from tests.fixtures.prepare import llama_server, make_malicious_archive

VERSION_LINE = "version: 1 (571d0d5)"
OLD, NEW = "b10068", "b10100"


def asset_name(tag: str, platform: str = "ubuntu-x64", ext: str = "tar.gz") -> str:
    return f"llama-{tag}-bin-{platform}.{ext}"


@pytest.fixture
def gh(fake_releases, monkeypatch):
    monkeypatch.setenv("AIDEVOPS_LLAMA_RELEASES_URL", fake_releases.base_url)
    monkeypatch.setenv("AIDEVOPS_BACKEND", "cpu")  # "auto" then means the CPU build, whatever this machine has
    return fake_releases


def publish(gh, release_archive, tag: str, **kwargs) -> str:
    name = asset_name(tag)
    gh.add_release(tag, {name: release_archive(tag)}, **kwargs)
    return name


def assert_runs(server: Path) -> None:
    done = subprocess.run([str(server), "--version"], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0 and VERSION_LINE in done.stderr, done.stderr


def assert_active(tag: str) -> None:
    active = runtime.installed_runtime()
    assert active is not None and active.tag == tag
    assert runtime.find_llama_server() == config.paths().bin_dir / "llama-server"
    assert_runs(runtime.find_llama_server())


def assert_no_leftovers() -> None:
    work = config.paths().app_dir / "install"
    assert not work.exists() or list(work.iterdir()) == []


@pytest.fixture
def installed_old(gh, release_archive):
    publish(gh, release_archive, OLD)
    runtime.install_release()
    return gh


# --- installing --------------------------------------------------------------------------------------------------


def test_install_puts_a_verified_working_build_in_bin(gh, release_archive, fixtures):
    name = publish(gh, release_archive, OLD)
    seen = []

    started = time.monotonic()
    result = runtime.install_release(progress=seen.append)
    elapsed = time.monotonic() - started

    bin_dir = config.paths().bin_dir
    assert result.tag == OLD and result.build == 10068 and result.backend == "cpu" and result.source == "release"
    assert result.asset == name and result.verified
    assert result.sha256 == hashlib.sha256(release_archive(OLD).read_bytes()).hexdigest()
    assert result.version == VERSION_LINE
    assert result.server_path == str(bin_dir / "llama-server")
    assert os.readlink(bin_dir / "libllama.so") == "libllama.so.0"
    assert os.readlink(bin_dir / "libggml-base.so.0") == "libggml-base.so.0.17.0"
    assert_active(OLD)
    assert_no_leftovers()
    downloads = [p for p in seen if p.task == f"Downloading {name}"]
    assert downloads[-1].done == downloads[-1].total == release_archive(OLD).stat().st_size
    # The installed folder is a working runtime: the real server loads a model from it.
    with llama_server(bin_dir, fixtures.tiny_gguf, ctx=256) as srv:
        assert srv.proc.poll() is None
    print(f"install of a {release_archive(OLD).stat().st_size >> 20} MiB asset took {elapsed:.2f}s")


def test_install_again_is_a_no_op_unless_forced(installed_old, release_archive):
    first = runtime.installed_runtime()
    assert runtime.install_release() == first
    assert installed_old.downloads(asset_name(OLD)) == 1
    again = runtime.install_release(force=True)
    assert installed_old.downloads(asset_name(OLD)) == 2 and again.installed_at >= first.installed_at
    assert runtime.previous_runtime().tag == OLD


def test_old_zip_release_with_build_bin_layout_installs(gh, release_archive):
    name = asset_name("b3000", ext="zip")
    gh.add_release("b3000", {name: release_archive("b3000", name, "build-bin", "zip", zip_symlinks="keep")})
    result = runtime.install_release(tag="3000")  # a bare build number is a tag too
    assert result.asset == name
    assert (config.paths().bin_dir / "libllama.so").is_symlink()
    assert_active("b3000")


def test_latest_falls_back_to_the_newest_build_when_every_release_is_a_prerelease(gh, release_archive):
    publish(gh, release_archive, OLD, prerelease=True)
    publish(gh, release_archive, NEW, prerelease=True)
    assert runtime.install_release().tag == NEW


def test_cuda_build_brings_its_cuda_runtime_libraries(gh, release_archive, tmp_path):
    name = asset_name(NEW, "ubuntu-cuda-12.8-x64")
    cudart = tmp_path / f"cudart-{name}"
    lib = tmp_path / "libcudart.so.12.8.90"
    lib.write_bytes(b"\x7fELF fake cuda runtime")
    with tarfile.open(cudart, "w:gz") as tf:
        tf.add(lib, arcname=lib.name)
        link = tarfile.TarInfo("libcudart.so.12")
        link.type, link.linkname = tarfile.SYMTYPE, lib.name
        tf.addfile(link)
    gh.add_release(NEW, {name: release_archive(NEW, name), cudart.name: cudart, asset_name(NEW): release_archive(NEW)})

    result = runtime.install_release(backend="cuda")

    bin_dir = config.paths().bin_dir
    assert result.backend == "cuda" and result.asset == name
    assert os.readlink(bin_dir / "libcudart.so.12") == lib.name and (bin_dir / lib.name).is_file()
    assert_active(NEW)


# --- refusing bad downloads and archives, keeping the previous build -------------------------------------------


@pytest.mark.parametrize("how", ["wrong digest", "tampered bytes"])
def test_checksum_mismatch_is_refused_and_the_previous_build_stays(installed_old, release_archive, how):
    name = asset_name(NEW)
    wrong = "sha256:" + "0" * 64
    installed_old.add_release(
        NEW, {name: release_archive(NEW)}, digest_override={name: wrong} if how == "wrong digest" else None
    )
    if how == "tampered bytes":
        installed_old.tamper(name)

    with pytest.raises(VerificationFailed) as caught:
        runtime.install_release(tag=NEW)

    real = hashlib.sha256(release_archive(NEW).read_bytes()).hexdigest()
    message = caught.value.message
    if how == "wrong digest":
        assert "0" * 64 in message and real in message
    else:
        assert real in message
    assert_active(OLD)
    assert_no_leftovers()
    assert runtime.previous_runtime() is None


def test_asset_without_digest_is_refused_unless_allowed(gh, release_archive, capsys):
    name = publish(gh, release_archive, OLD, omit_digest={asset_name(OLD)})

    with pytest.raises(VerificationFailed, match="no sha256 digest") as caught:
        runtime.install_release()
    assert "--insecure-skip-checksum" in caught.value.hint
    assert gh.downloads(name) == 0  # refused before a byte was fetched

    assert main(["install", "--insecure-skip-checksum"]) == 0
    assert "without checking its checksum" in " ".join(capsys.readouterr().err.split())
    active = runtime.installed_runtime()
    assert active.verified is False and active.sha256 == hashlib.sha256(release_archive(OLD).read_bytes()).hexdigest()


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_hostile_release_archive_is_refused_and_the_previous_build_stays(installed_old, tmp_path, kind):
    hostile = make_malicious_archive(tmp_path / "hostile", kind, tag=NEW, asset_name=asset_name(NEW))
    installed_old.add_release(NEW, {asset_name(NEW): hostile.path})

    assert main(["install", "--tag", NEW]) == ExitCode.REFUSED
    with pytest.raises(UnsafePath):
        runtime.install_release(tag=NEW)

    assert [p for p in tmp_path.rglob("escape-*")] == []
    assert hostile.escapes(tmp_path / "hostile" / "x") == []
    assert_active(OLD)
    assert_no_leftovers()


SCRIPT_SERVER = b"#!/bin/sh\necho 'version: 1 (0000000)' >&2\n"


def script_tarball(path: Path, members: list[tuple[str, str, bytes | str]]) -> Path:
    """A release-shaped tarball from (kind, name, payload): kind "file" (payload: bytes, made executable),
    "dir" or "symlink" (payload: its target). Its llama-server is a script that prints a version line."""
    with tarfile.open(path, "w:gz") as tf:
        for kind, name, payload in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size, info.mode = len(payload), 0o755
                tf.addfile(info, io.BytesIO(payload))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE}[kind]
            info.mode = 0o755 if kind == "dir" else 0o777
            info.linkname = payload or ""
            tf.addfile(info)
    return path


def assert_no_link_leaves(folder: Path) -> None:
    root = folder.resolve()
    for path in folder.rglob("*"):
        if path.is_symlink():
            assert (path.parent / os.readlink(path)).resolve().is_relative_to(root), f"{path} leaves {folder}"


def test_link_that_leaves_the_installed_folder_is_refused(installed_old, tmp_path):
    # Inside the archive the link stays in: it climbs to the archive's root and back into shared-tmp/. But only
    # a/b/c/d/ (llama-server's folder) becomes bin/, where the same four steps up lead out of the install.
    archive = script_tarball(
        tmp_path / asset_name(NEW),
        [
            ("dir", "a/b/c/d", None),
            ("file", "a/b/c/d/llama-server", SCRIPT_SERVER),
            ("dir", "shared-tmp", None),
            ("file", "shared-tmp/libggml-x.so", b"\x7fELF"),
            ("symlink", "a/b/c/d/libggml-x.so", "../../../../shared-tmp/libggml-x.so"),
        ],
    )
    installed_old.add_release(NEW, {archive.name: archive})

    assert main(["install", "--tag", NEW]) == ExitCode.REFUSED
    with pytest.raises(UnsafePath, match="libggml-x.so"):
        runtime.install_release(tag=NEW)

    assert_active(OLD)
    assert_no_link_leaves(config.paths().bin_dir)
    assert_no_leftovers()


def test_companion_link_that_leaves_once_merged_is_refused(gh, release_archive, tmp_path):
    # The CUDA runtime archive's link resolves inside that archive from a/b/c/, but its libraries are merged
    # flat into llama-server's folder, where "../../../" leads out of the install.
    name = asset_name(NEW, "ubuntu-cuda-12.8-x64")
    cudart = script_tarball(
        tmp_path / f"cudart-{name}",
        [
            ("dir", "a/b/c", None),
            ("dir", "y", None),
            ("file", "y/libcudart.so.12.8.90", b"\x7fELF"),
            ("symlink", "a/b/c/libcudart.so.12", "../../../y/libcudart.so.12.8.90"),
        ],
    )
    gh.add_release(NEW, {name: release_archive(NEW, name), cudart.name: cudart})

    with pytest.raises(UnsafePath, match="libcudart.so.12"):
        runtime.install_release(backend="cuda")

    assert runtime.installed_runtime() is None
    assert_no_leftovers()


def test_links_that_stay_inside_the_installed_folder_install(gh, tmp_path):
    # The same shapes, kept inside llama-server's folder, are what real builds hold.
    archive = script_tarball(
        tmp_path / asset_name(NEW),
        [
            ("dir", "a/b/c/d/lib", None),
            ("file", "a/b/c/d/llama-server", SCRIPT_SERVER),
            ("file", "a/b/c/d/lib/libggml-x.so.1", b"\x7fELF"),
            ("symlink", "a/b/c/d/libggml-x.so", "lib/libggml-x.so.1"),
            ("symlink", "a/b/c/d/lib/libggml-x.so", "../lib/./libggml-x.so.1"),
        ],
    )
    gh.add_release(NEW, {archive.name: archive})

    runtime.install_release()

    bin_dir = config.paths().bin_dir
    assert (bin_dir / "libggml-x.so").read_bytes() == (bin_dir / "lib" / "libggml-x.so").read_bytes() == b"\x7fELF"


@pytest.mark.parametrize(
    "fields,code,words",
    [
        ({"digest": 5}, ExitCode.VERIFY_FAILED, "digest"),
        ({"digest": ["sha256:" + "a" * 64]}, ExitCode.VERIFY_FAILED, "digest"),
        ({"digest": "sha256:not-hex"}, ExitCode.VERIFY_FAILED, "digest"),
        ({"size": "123"}, ExitCode.VERIFY_FAILED, "size"),
        ({"size": -1}, ExitCode.VERIFY_FAILED, "size"),
        ({"browser_download_url": None}, ExitCode.VERIFY_FAILED, "download address"),
        ({"name": None}, ExitCode.NOT_FOUND, "without a name"),
    ],
)
def test_a_malformed_asset_record_is_a_one_line_error(gh, release_archive, capsys, fields, code, words):
    name = asset_name(OLD)
    gh.add_release(OLD, {name: release_archive(OLD)}, asset_fields={name: fields})

    assert main(["install"]) == code
    err = capsys.readouterr().err
    assert words in " ".join(err.split()) and "Traceback" not in err
    assert gh.downloads(name) == 0
    assert runtime.installed_runtime() is None


def test_malformed_records_of_other_assets_do_not_stop_an_install(gh, release_archive):
    name = asset_name(OLD)
    others = {
        asset_name(OLD, "macos-arm64"): {"name": None},
        asset_name(OLD, "ubuntu-vulkan-x64"): {"digest": 5},
        asset_name(OLD, "ubuntu-arm64"): {"size": "big"},
        "notes.txt": {"name": ["a", "b"]},
    }
    gh.add_release(OLD, {name: release_archive(OLD), **{other: b"x" for other in others}}, asset_fields=others)

    assert runtime.install_release().asset == name
    assert_active(OLD)


@pytest.mark.parametrize(
    "fields", [{"tag_name": None}, {"tag_name": "b1\nversion: 9"}, {"assets": "none"}, {"assets": None}]
)
def test_a_malformed_release_record_is_a_one_line_error(gh, release_archive, capsys, fields):
    publish(gh, release_archive, OLD, release_fields=fields)

    for command in (["install"], ["update", "--check"]):
        assert main(command) == ExitCode.NETWORK
        err = capsys.readouterr().err
        assert "malformed" in err and "Traceback" not in err


def test_truncated_download_is_a_network_error_and_nothing_changes(installed_old, release_archive):
    name = asset_name(NEW)
    installed_old.add_release(NEW, {name: release_archive(NEW)})
    installed_old.truncate(name, after_bytes=release_archive(NEW).stat().st_size // 3)

    with pytest.raises(NetworkError) as caught:
        runtime.install_release(tag=NEW)

    assert name in caught.value.message
    assert_active(OLD)
    assert_no_leftovers()


def test_no_build_for_this_platform_lists_what_is_there(gh, release_archive, capsys):
    gh.add_release(
        NEW,
        {
            asset_name(NEW, "macos-arm64"): b"x",
            asset_name(NEW, "ubuntu-vulkan-x64"): b"x",
            asset_name(NEW, "win-cpu-x64", "zip"): b"x",
        },
    )

    with pytest.raises(AssetNotFound) as caught:
        runtime.install_release(backend="rocm")
    assert "has no rocm build for linux-x64" in caught.value.message
    assert "vulkan" in caught.value.message

    assert main(["install", "--backend", "cuda"]) == ExitCode.NOT_FOUND
    assert "linux-x64 builds: vulkan" in " ".join(capsys.readouterr().err.split())


def test_release_without_any_build_for_this_os_names_its_assets(gh):
    gh.add_release(NEW, {asset_name(NEW, "macos-arm64"): b"x"})
    with pytest.raises(AssetNotFound, match="macos-arm64") as caught:
        runtime.install_release()
    assert "--use-system" in caught.value.hint


def test_unknown_tag_and_unreachable_github(gh, monkeypatch):
    with pytest.raises(NotFound):
        runtime.install_release(tag="b1")
    monkeypatch.setenv("AIDEVOPS_LLAMA_RELEASES_URL", "http://127.0.0.1:9/repos/ggml-org/llama.cpp/releases")
    assert main(["install"]) == ExitCode.NETWORK


def test_rate_limit_says_to_set_a_token(gh, capsys):
    gh.rate_limited = True
    assert main(["update", "--check"]) == ExitCode.NETWORK
    err = " ".join(capsys.readouterr().err.split())
    assert "rate limit" in err and "GITHUB_TOKEN" in err


def test_github_token_goes_to_the_api_only_and_is_never_printed(gh, release_archive, monkeypatch, capsys):
    publish(gh, release_archive, OLD)
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_secret123")

    assert main(["install", "--json"]) == 0

    api = [r for r in gh.requests if r.path.startswith("/repos/")]
    downloads = [r for r in gh.requests if not r.path.startswith("/repos/")]
    assert api and all(r.header("Authorization") == "Bearer ghp_secret123" for r in api)
    assert downloads and all(r.header("Authorization") is None for r in downloads)
    out = capsys.readouterr()
    assert "ghp_secret123" not in out.out + out.err


@pytest.fixture
def small_disk(tmp_path, monkeypatch):
    """AIDEVOPS_HOME on a real 16 MiB filesystem."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    monkeypatch.setenv("AIDEVOPS_HOME", str(mount / "home"))
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_too_little_disk_is_refused_before_downloading(gh, release_archive, small_disk):
    name = publish(gh, release_archive, OLD)
    with pytest.raises(DiskFull):
        runtime.install_release()
    assert gh.downloads(name) == 0


def test_archive_that_unpacks_bigger_than_the_disk_is_refused(gh, llama_server_dir, tmp_path, small_disk):
    # 64 MiB of zeros packs into a few hundred KiB: it passes the download check, not the unpack check.
    bomb = tmp_path / asset_name(NEW)
    zeros = tmp_path / "zeros"
    with open(zeros, "wb") as out:
        out.truncate(64 << 20)
    with tarfile.open(bomb, "w:gz", compresslevel=1) as tf:
        tf.add(llama_server_dir / "llama-server", arcname=f"llama-{NEW}/llama-server")
        tf.add(zeros, arcname=f"llama-{NEW}/padding")
    gh.add_release(NEW, {bomb.name: bomb})

    with pytest.raises(DiskFull):
        runtime.install_release()
    assert_no_leftovers()


# --- interrupted installs ----------------------------------------------------------------------------------------


def test_interrupt_and_cancel_remove_the_partial_download(installed_old, release_archive):
    publish(installed_old, release_archive, NEW)

    def interrupt(p):
        if p.task.startswith("Downloading") and p.done > 1 << 20:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runtime.install_release(tag=NEW, progress=interrupt)
    assert_no_leftovers()

    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        runtime.install_release(tag=NEW, cancel=cancel)
    assert_no_leftovers()
    assert_active(OLD)


def _run_killed(script: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    return done


def test_install_killed_mid_download_leaves_the_previous_build_and_is_cleaned_up(installed_old, release_archive):
    publish(installed_old, release_archive, NEW)
    _run_killed(f"""
        import os, signal
        from aidevops_local.core.llamacpp import runtime
        def progress(p):
            if p.task.startswith("Downloading") and p.done > 4 << 20:
                os.kill(os.getpid(), signal.SIGKILL)
        runtime.install_release(tag="{NEW}", progress=progress)
    """)

    leftovers = list((config.paths().app_dir / "install").iterdir())
    assert leftovers, "a SIGKILL leaves its work folder behind"
    assert_active(OLD)

    assert runtime.install_release(tag=NEW).tag == NEW
    assert all(not p.exists() for p in leftovers)
    assert_active(NEW)
    assert runtime.previous_runtime().tag == OLD


def test_install_killed_between_renames_is_finished_from_disk(installed_old, release_archive):
    publish(installed_old, release_archive, NEW)
    _run_killed(f"""
        import os, signal
        from aidevops_local.core.system import config
        from aidevops_local.core.llamacpp import runtime
        rename = os.rename
        def rename_then_die(src, dst):
            rename(src, dst)
            if os.fspath(dst) == os.fspath(config.paths().previous_bin_dir):
                os.kill(os.getpid(), signal.SIGKILL)
        os.rename = rename_then_die
        runtime.install_release(tag="{NEW}")
    """)
    assert not config.paths().bin_dir.exists()  # killed in the gap between two renames

    assert_active(OLD)  # the next reader puts the complete old build back
    assert runtime.install_release(tag=NEW).tag == NEW
    assert_active(NEW)


def test_rollback_killed_between_renames_completes(installed_old, release_archive):
    publish(installed_old, release_archive, NEW)
    runtime.update()
    _run_killed("""
        import os, signal
        from aidevops_local.core.llamacpp import runtime
        rename = os.rename
        def rename_then_die(src, dst):
            rename(src, dst)
            os.kill(os.getpid(), signal.SIGKILL)
        os.rename = rename_then_die
        runtime.rollback()
    """)
    assert_active(OLD)
    assert runtime.previous_runtime().tag == NEW


def test_second_install_at_once_is_refused(installed_old):
    lock = config.paths().app_dir / "install.lock"
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(Refused, match="Another install"):
            runtime.install_release(force=True)
    assert_active(OLD)


# --- update and rollback -----------------------------------------------------------------------------------------


def test_update_check_update_and_rollback(installed_old, release_archive, capsys):
    assert main(["update", "--check", "--json"]) == 0
    check = json.loads(capsys.readouterr().out)
    assert check["update_available"] is False and check["latest_tag"] == OLD
    assert runtime.update().updated is False

    publish(installed_old, release_archive, NEW)
    assert main(["update", "--check", "--json"]) == 0
    check = json.loads(capsys.readouterr().out)
    assert check["update_available"] is True and check["latest_build"] == 10100
    assert check["installed"]["tag"] == OLD

    assert main(["update", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["updated"] is True and result["runtime"]["tag"] == NEW and result["replaced"]["tag"] == OLD
    assert_active(NEW)
    assert runtime.previous_runtime().tag == OLD
    assert_runs(Path(runtime.previous_runtime().server_path))

    assert main(["update", "--rollback"]) == 0
    assert_active(OLD)
    assert runtime.previous_runtime().tag == NEW
    assert main(["update", "--rollback"]) == 0
    assert_active(NEW)


def test_rollback_without_a_previous_build(installed_old):
    assert main(["update", "--rollback"]) == ExitCode.NOT_FOUND
    assert_active(OLD)


def test_nothing_installed(gh):
    with pytest.raises(RuntimeNotInstalled) as caught:
        runtime.find_llama_server()
    assert "aidevops-local install" in caught.value.hint
    assert main(["update"]) == ExitCode.NOT_INSTALLED


@pytest.mark.parametrize(
    "manifest",
    [
        "[]",
        "3",
        '"text"',
        "null",
        '{"tag": 5, "build": "b1", "backend": "cpu", "asset": null, "sha256": null, "installed_at": "x", '
        '"version": "v", "source": "release", "server_path": "llama-server"}',
    ],
)
def test_a_manifest_that_is_json_but_not_ours_counts_as_nothing_installed(gh, tiny_gguf, capsys, manifest):
    path = config.paths().runtime_manifest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(manifest)
    assert runtime.installed_runtime() is None
    assert main(["serve", str(tiny_gguf)]) == ExitCode.NOT_INSTALLED
    assert main(["update"]) == ExitCode.NOT_INSTALLED
    main(["doctor"])  # fails its runtime check, in its own words
    err = capsys.readouterr()
    assert "Traceback" not in err.out + err.err
    assert "llama.cpp is not installed" in " ".join((err.out + err.err).split())


# --- the system's llama-server ------------------------------------------------------------------------------------


def test_use_system_records_the_llama_server_on_path(installed_old, llama_server_dir, tmp_path, monkeypatch, capsys):
    # Like Homebrew: a bin folder on PATH with a symlink into the package's own folder.
    path_dir = tmp_path / "brew-bin"
    path_dir.mkdir()
    (path_dir / "llama-server").symlink_to(llama_server_dir / "llama-server")
    monkeypatch.setenv("PATH", f"{path_dir}{os.pathsep}{os.environ['PATH']}")

    assert main(["install", "--use-system"]) == 0
    assert str(path_dir / "llama-server") in capsys.readouterr().out

    active = runtime.installed_runtime()
    assert active.source == "system" and active.version == VERSION_LINE and active.build == 1
    assert runtime.find_llama_server() == path_dir / "llama-server"
    assert_runs(runtime.find_llama_server())
    assert runtime.previous_runtime().tag == OLD  # the downloaded build is kept
    assert main(["update"]) == ExitCode.REFUSED
    assert main(["update", "--rollback"]) == 0
    assert_active(OLD)


def test_use_system_with_a_named_path(gh, llama_server_dir, capsys):
    assert main(["install", "--use-system", str(llama_server_dir / "llama-server"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["server_path"] == str(llama_server_dir / "llama-server")
    assert runtime.find_llama_server() == llama_server_dir / "llama-server"


@pytest.mark.parametrize(
    "prints",
    [
        "head -c 3000 /dev/urandom",  # bytes that are not UTF-8
        "echo 'GNU bash, version 5.2.15'",  # some other program's version
    ],
)
def test_use_system_refuses_a_program_that_is_not_llama_server(gh, tmp_path, capsys, prints):
    other = tmp_path / "llama-server"
    other.write_text(f"#!/bin/sh\n{prints}\n")
    other.chmod(0o755)
    assert main(["install", "--use-system", str(other)]) == ExitCode.VERIFY_FAILED
    err = " ".join(capsys.readouterr().err.split())  # the renderer wraps long lines
    assert f"{other} is not llama-server" in err and "Traceback" not in err
    assert "--backend cpu" not in err  # that hint is for a downloaded build
    assert runtime.installed_runtime() is None


def test_use_system_without_one_on_path(gh, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["install", "--use-system"]) == ExitCode.NOT_INSTALLED
    assert main(["install", "--use-system", "--tag", OLD]) == ExitCode.USAGE


# --- the command as users run it ----------------------------------------------------------------------------------


def test_install_command_as_a_subprocess(gh, release_archive):
    publish(gh, release_archive, OLD)
    command = Path(sys.executable).with_name("aidevops-local")
    started = time.monotonic()
    done = subprocess.run(
        [str(command), "install", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
        check=False,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["tag"] == OLD and result["verified"] is True
    assert_active(OLD)
    print(f"`aidevops-local install` (subprocess) took {elapsed:.2f}s")


# --- choosing the asset from a real release's list -------------------------------------------------------------

# Asset names of llama.cpp release b11101, as published.
B11101 = [
    f"{prefix}llama-b11101-bin-{rest}"
    for prefix, rest in [
        ("cudart-", "ubuntu-cuda-12.8-x64.tar.gz"),
        ("cudart-", "ubuntu-cuda-13.4-arm64.tar.gz"),
        ("cudart-", "ubuntu-cuda-13.4-x64.tar.gz"),
        ("", "android-arm64.tar.gz"),
        ("", "macos-arm64.tar.gz"),
        ("", "macos-x64.tar.gz"),
        ("", "ubuntu-arm64.tar.gz"),
        ("", "ubuntu-cuda-12.8-x64.tar.gz"),
        ("", "ubuntu-cuda-13.4-arm64.tar.gz"),
        ("", "ubuntu-cuda-13.4-x64.tar.gz"),
        ("", "ubuntu-openvino-2026.4-x64.tar.gz"),
        ("", "ubuntu-rocm-10.0-x64.tar.gz"),
        ("", "ubuntu-s390x.tar.gz"),
        ("", "ubuntu-sycl-fp16-x64.tar.gz"),
        ("", "ubuntu-vulkan-arm64.tar.gz"),
        ("", "ubuntu-vulkan-x64.tar.gz"),
        ("", "ubuntu-x64.tar.gz"),
        ("", "win-cpu-x64.zip"),
        ("", "win-cuda-12.4-x64.zip"),
        ("", "win-vulkan-x64.zip"),
    ]
] + ["llama-b11101-xcframework.zip", "cudart-llama-bin-win-cuda-12.4-x64.zip"]
REAL = releases.Release(
    "b11101", tuple(releases.Asset(n, f"https://example.invalid/{n}", 1, "sha256:" + "a" * 64) for n in B11101)
)


@pytest.mark.parametrize(
    "os_,arch,backends,cuda_major,expected,companion",
    [
        ("linux", "x64", ("cuda", "vulkan", "cpu"), None, "ubuntu-cuda-12.8-x64.tar.gz", True),
        ("linux", "x64", ("cuda", "cpu"), 13, "ubuntu-cuda-13.4-x64.tar.gz", True),
        ("linux", "x64", ("cuda", "cpu"), 11, "ubuntu-x64.tar.gz", False),
        ("linux", "x64", ("rocm", "cpu"), None, "ubuntu-rocm-10.0-x64.tar.gz", False),
        ("linux", "x64", ("vulkan", "cpu"), None, "ubuntu-vulkan-x64.tar.gz", False),
        ("linux", "arm64", ("vulkan", "cpu"), None, "ubuntu-vulkan-arm64.tar.gz", False),
        ("linux", "arm64", ("cpu",), None, "ubuntu-arm64.tar.gz", False),
        ("darwin", "arm64", ("metal", "cpu"), None, "macos-arm64.tar.gz", False),
        ("darwin", "arm64", ("cpu",), None, "macos-arm64.tar.gz", False),
        ("darwin", "x64", ("cpu",), None, "macos-x64.tar.gz", False),
    ],
)
def test_choose_asset_from_a_real_release(os_, arch, backends, cuda_major, expected, companion):
    chosen = releases.choose_asset(REAL, os=os_, arch=arch, backends=backends, cuda_major=cuda_major)
    assert chosen.asset.name == f"llama-b11101-bin-{expected}"
    assert [a.name for a in chosen.companions] == ([f"cudart-{chosen.asset.name}"] if companion else [])


def test_choose_asset_refuses_what_the_platform_lacks():
    with pytest.raises(AssetNotFound, match="cuda-12.8, cuda-13.4, openvino-2026.4, rocm-10.0, sycl-fp16"):
        releases.choose_asset(REAL, os="linux", arch="x64", backends=("metal",))
    with pytest.raises(AssetNotFound, match="no metal build for darwin-x64"):
        releases.choose_asset(REAL, os="darwin", arch="x64", backends=("metal",))
