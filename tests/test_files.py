"""write_atomically and the one ENOSPC mapping: on a real full filesystem (a 64 KiB tmpfs) a write that does
not fit raises DiskFull and leaves the old file whole, with no temporary file beside it."""

import errno
import os
import subprocess
import threading
from pathlib import Path

import pytest

from aidevops_local.core.system.errors import DiskFull
from aidevops_local.core.system.files import disk_full, disk_full_is_ours, write_atomically


@pytest.fixture
def small_disk(tmp_path):
    """A real 64 KiB tmpfs (the tests run as root, as the fault tests do)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_write_that_does_not_fit_leaves_the_old_file_whole(small_disk):
    target = small_disk / "config.toml"
    write_atomically(target, "threads = 2\n")
    with pytest.raises(DiskFull) as caught:
        write_atomically(target, "x" * (1 << 20))
    assert target.read_text() == "threads = 2\n"
    assert sorted(p.name for p in small_disk.iterdir()) == ["config.toml"]
    assert caught.value.message == f"The disk filled up while writing {target}."
    assert "Free some disk space" in caught.value.hint
    assert isinstance(caught.value.__cause__, OSError) and caught.value.__cause__.errno == errno.ENOSPC


def test_a_write_that_fits_replaces_the_file_and_leaves_nothing_else(small_disk):
    target = small_disk / "sub" / "state.json"
    write_atomically(target, b"\x00old")
    write_atomically(target, '{"new": "\u00e9"}')
    assert target.read_text(encoding="utf-8") == '{"new": "\u00e9"}'
    assert [p.name for p in target.parent.iterdir()] == ["state.json"]


def test_a_reader_never_sees_a_partial_file(tmp_path):
    """While one thread rewrites a file again and again, another only ever reads a whole version of it."""
    target = tmp_path / "files" / "server.json"
    versions = [bytes([65 + i]) * (256 << 10) for i in range(4)]
    write_atomically(target, versions[0])
    done = threading.Event()
    seen: set[bytes] = set()

    def read() -> None:
        while not done.is_set():
            seen.add(target.read_bytes())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(60):
            write_atomically(target, versions[i % 4])
    finally:
        done.set()
        reader.join()
    assert seen and seen <= set(versions)
    assert [p.name for p in target.parent.iterdir()] == ["server.json"]


def test_mode_is_exact_and_the_default_follows_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_atomically(tmp_path / "plain", "a")
        write_atomically(tmp_path / "secret", "b", mode=0o600)
    finally:
        os.umask(old)
    assert (tmp_path / "plain").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "secret").stat().st_mode & 0o777 == 0o600


def test_only_enospc_becomes_disk_full(small_disk):
    other = OSError(errno.EACCES, "denied")
    assert disk_full(other, "x") is other
    ours = DiskFull("already ours")
    assert disk_full(ours, "x") is ours
    with pytest.raises(DiskFull, match="The disk filled up while appending a log"):
        with disk_full_is_ours("appending a log"), open(small_disk / "log", "ab") as fh:
            fh.write(b"\0" * (1 << 20))
    with pytest.raises(PermissionError):
        with disk_full_is_ours("reading"):
            raise PermissionError(errno.EACCES, "denied")


def test_the_settings_file_is_written_through_it(small_disk, monkeypatch):
    """config.save_settings on a full disk: DiskFull, and the settings file as it was."""
    from aidevops_local.core.system import config

    path = Path(small_disk) / "config.toml"
    config.save_settings(config.Settings(port=9000), path)
    before = path.read_text()
    (small_disk / "filler").write_bytes(b"\0" * (60 << 10))
    with pytest.raises(DiskFull):
        config.save_settings(config.Settings(port=9001, extra_server_args=["--x"] * 4000), path)
    assert path.read_text() == before and config.load_settings(path).port == 9000
