"""Unpacking release archives: real llama.cpp-shaped tarballs and zips, and hostile ones."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import tarfile
import zipfile

import pytest

from aidevops_local.core.llamacpp import archives
from aidevops_local.core.system.errors import UnsafePath, VerificationFailed
from tests.fixtures.prepare import make_malicious_archive, make_release_archive


def _tar(path, members):
    """members: (name, kind, payload) with kind file|symlink|hardlink|fifo|chardev."""
    with tarfile.open(path, "w:gz") as tf:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size, info.mode = len(payload), 0o644
                tf.addfile(info, io.BytesIO(payload))
                continue
            info.type = {
                "symlink": tarfile.SYMTYPE,
                "hardlink": tarfile.LNKTYPE,
                "fifo": tarfile.FIFOTYPE,
                "chardev": tarfile.CHRTYPE,
                "dir": tarfile.DIRTYPE,
            }[kind]
            info.linkname = payload or ""
            tf.addfile(info)
    return path


def test_release_tarball_unpacks_with_library_symlinks_and_runs(llama_server_dir, tmp_path):
    archive = make_release_archive(llama_server_dir, "b10068", "llama-b10068-bin-ubuntu-x64.tar.gz", tmp_path)
    dest = tmp_path / "out"

    result = archives.extract(archive=archive, dest=dest)

    top = dest / "llama-b10068"
    assert os.readlink(top / "libllama.so") == "libllama.so.0"
    assert os.readlink(top / "libllama.so.0") == "libllama.so.0.0.1"
    assert result.files == len(list(llama_server_dir.iterdir()))
    done = subprocess.run(
        [str(top / "llama-server"), "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0 and "version: 1 (571d0d5)" in done.stderr


def test_old_zip_layout_keeps_exec_bits_and_info_zip_symlinks(llama_server_dir, tmp_path):
    archive = make_release_archive(
        llama_server_dir,
        "b3000",
        "llama-b3000-bin-ubuntu-x64.zip",
        tmp_path,
        layout="build-bin",
        fmt="zip",
        zip_symlinks="keep",
    )
    dest = tmp_path / "out"

    archives.extract(archive=archive, dest=dest)

    bin_dir = dest / "build" / "bin"
    assert (bin_dir / "libggml.so").is_symlink() and os.readlink(bin_dir / "libggml.so") == "libggml.so.0"
    assert os.stat(bin_dir / "llama-server").st_mode & stat.S_IXUSR
    done = subprocess.run(
        [str(bin_dir / "llama-server"), "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    "fmt,kind",
    [
        ("tar.gz", "dotdot"),
        ("tar.gz", "absolute"),
        ("tar.gz", "symlink"),
        ("tar.gz", "symlink-abs"),
        ("tar.gz", "hardlink"),
        ("zip", "dotdot"),
        ("zip", "absolute"),
        ("zip", "symlink"),
        ("zip", "symlink-abs"),
    ],
)
def test_hostile_archive_is_refused_before_anything_is_written(tmp_path, fmt, kind):
    hostile = make_malicious_archive(tmp_path, kind, fmt)
    dest = tmp_path / "x" / "out"

    with pytest.raises(UnsafePath) as caught:
        archives.extract(archive=hostile.path, dest=dest)

    assert hostile.path.name in caught.value.message
    assert hostile.escapes(dest) == []
    assert list(dest.iterdir()) == []


def test_links_that_escape_only_together_are_refused(tmp_path):
    # Each link looks in-tree by name; resolved in this order, "a" ends up one level above the target.
    archive = _tar(
        tmp_path / "chain.tar.gz",
        [
            ("top/a", "symlink", "b/c/../.."),
            ("top/b", "dir", None),
            ("top/b/c", "symlink", "../.."),
        ],
    )
    with pytest.raises(UnsafePath):
        archives.extract(archive=archive, dest=tmp_path / "x" / "out")


def test_link_chain_refused_in_zip_too(tmp_path):
    archive = tmp_path / "chain.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, target in (("top/a", "b/c/../.."), ("top/b/c", "../..")):
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    with pytest.raises(UnsafePath):
        archives.extract(archive=archive, dest=tmp_path / "x" / "out")


@pytest.mark.parametrize("kind", ["fifo", "chardev"])
def test_special_files_are_refused(tmp_path, kind):
    archive = _tar(tmp_path / f"{kind}.tar.gz", [("top/llama-server", "file", b"x"), ("top/dev", kind, None)])
    with pytest.raises(VerificationFailed, match="device file or FIFO"):
        archives.extract(archive=archive, dest=tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_in_tree_directory_symlink_is_kept(tmp_path):
    archive = _tar(
        tmp_path / "ok.tar.gz",
        [
            ("top/lib/libx.so.1", "file", b"elf"),
            ("top/current", "symlink", "lib"),
            ("top/lib/libx.so", "symlink", "libx.so.1"),
        ],
    )
    archives.extract(archive=archive, dest=tmp_path / "out")
    assert (tmp_path / "out" / "top" / "current" / "libx.so").read_bytes() == b"elf"


def test_damaged_and_foreign_files_fail_verification(llama_server_dir, tmp_path):
    archive = make_release_archive(llama_server_dir, "b1", "llama-b1-bin-ubuntu-x64.tar.gz", tmp_path)
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    text = tmp_path / "notes.txt"
    text.write_text("not an archive\n")

    for bad in (cut, text):
        with pytest.raises(VerificationFailed):
            archives.extract(archive=bad, dest=tmp_path / f"out-{bad.name}")


@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
def test_members_writable_by_others_are_installed_without_those_bits(tmp_path, fmt):
    modes = {"top/llama-server": 0o777, "top/libx.so": 0o666, "top/setuid": 0o4755, "top/owner-only": 0o700}
    archive = tmp_path / f"modes.{fmt}"
    if fmt == "zip":
        with zipfile.ZipFile(archive, "w") as zf:
            for name, mode in modes.items():
                info = zipfile.ZipInfo(name)
                info.create_system = 3
                info.external_attr = (stat.S_IFREG | mode) << 16
                zf.writestr(info, b"x")
    else:
        with tarfile.open(archive, "w:gz") as tf:
            for name, mode in modes.items():
                info = tarfile.TarInfo(name)
                info.size, info.mode = 1, mode
                tf.addfile(info, io.BytesIO(b"x"))

    archives.extract(archive=archive, dest=tmp_path / "out")

    got = {name: stat.S_IMODE(os.stat(tmp_path / "out" / name).st_mode) for name in modes}
    assert got == {"top/llama-server": 0o755, "top/libx.so": 0o644, "top/setuid": 0o755, "top/owner-only": 0o700}


def test_a_link_that_steps_out_and_back_in_is_refused_once_its_folder_moves(tmp_path):
    # Resolved where it lies, each link lands inside d/; from anywhere else, the step out goes elsewhere.
    d = tmp_path / "d"
    (d / "lib").mkdir(parents=True)
    (d / "lib" / "libx.so.1").write_bytes(b"elf")
    (d / "libx.so").symlink_to("../d/lib/libx.so.1")
    with pytest.raises(UnsafePath, match="libx.so"):
        archives.check_links_stay_inside(d, what="test build")

    (d / "libx.so").unlink()
    (d / "here").symlink_to(".")
    (d / "libx.so").symlink_to("here/../d/lib/libx.so.1")  # a link that is the folder itself, then up
    with pytest.raises(UnsafePath):
        archives.check_links_stay_inside(d, what="test build")

    (d / "libx.so").unlink()
    (d / "libx.so").symlink_to("here/lib/../lib/libx.so.1")
    archives.check_links_stay_inside(d, what="test build")  # odd but inside at every step


def _files_outside(root, skip):
    """Every path under root (links not followed), but nothing under skip."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) != str(skip)]
        found.update(os.path.join(dirpath, name) for name in (*dirnames, *filenames))
    return found


def _cve_2025_4517_tar(path, dest, levels_to_root):
    """Shaped like CPython's CVE-2025-4517 test: folders reached through links, deep enough that realpath
    stops expanding past PATH_MAX, a link up through them, then a hard link and writes through that."""
    steps = "abcdefghijklmnop"
    comp = "d" * ((4096 - len(str(dest)) - 1) // (len(steps) + 1))
    members, parent = [], ""
    for step in steps:
        members += [(os.path.join(parent, comp), "dir", None), (os.path.join(parent, step), "symlink", comp)]
        parent = os.path.join(parent, comp)
    linkpath = os.path.join(*steps, "l" * 254)
    members += [
        (linkpath, "symlink", os.path.join(*[".."] * len(steps))),
        ("escape", "symlink", os.path.join(linkpath, *[".."] * levels_to_root)),
        ("flaglink", "hardlink", "escape/home/.bashrc"),
        ("flaglink", "file", b"echo PWNED\n"),
        ("escape/home/PWNED.txt", "file", b"written outside\n"),
    ]
    return _tar(path, members)


def test_cve_2025_4517_shaped_tar_is_refused_before_anything_is_written(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text("# original\n")
    dest = tmp_path / "aidevops" / "unpacked"
    archive = _cve_2025_4517_tar(tmp_path / "cve.tar.gz", dest, levels_to_root=2)
    before = _files_outside(tmp_path, dest)

    with pytest.raises(VerificationFailed) as caught:
        archives.extract(archive=archive, dest=dest)

    assert caught.value.exit_code == 6 and "\n" not in caught.value.message and "cve.tar.gz" in caught.value.message
    assert (home / ".bashrc").read_text() == "# original\n"
    assert sorted(home.iterdir()) == [home / ".bashrc"]
    assert _files_outside(tmp_path, dest) == before
    assert list(dest.iterdir()) == []


def test_a_member_written_through_an_in_tree_link_is_refused(tmp_path):
    # Harmless here, but a folder that is a link is how escapes are assembled: refused before anything is written.
    archive = _tar(
        tmp_path / "via.tar.gz",
        [("top/lib/x", "file", b"a"), ("top/cur", "symlink", "lib"), ("top/cur/y", "file", b"b")],
    )
    with pytest.raises(VerificationFailed, match="top/cur/y") as caught:
        archives.extract(archive=archive, dest=tmp_path / "out")
    assert "\n" not in caught.value.message and "top/cur" in caught.value.message
    assert list((tmp_path / "out").iterdir()) == []


def test_hard_link_to_a_missing_member_is_refused_in_one_line(tmp_path):
    archive = _tar(tmp_path / "hard.tar.gz", [("top/llama-server", "hardlink", "top/missing")])
    with pytest.raises(VerificationFailed, match="top/llama-server") as caught:
        archives.extract(archive=archive, dest=tmp_path / "out")
    assert caught.value.exit_code == 6 and "\n" not in caught.value.message
    assert list((tmp_path / "out").iterdir()) == []


def test_zip_symlink_whose_target_holds_a_nul_byte_is_refused_in_one_line(tmp_path):
    archive = tmp_path / "nul.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("top/libx.so.1", b"elf")
        info = zipfile.ZipInfo("top/libx.so")
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, b"libx.so.1\0evil")
    with pytest.raises(VerificationFailed, match="top/libx.so") as caught:
        archives.extract(archive=archive, dest=tmp_path / "out")
    assert caught.value.exit_code == 6 and "\n" not in caught.value.message
    assert list((tmp_path / "out").iterdir()) == []
