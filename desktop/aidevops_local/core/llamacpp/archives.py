"""Safe unpacking of release archives (.tar.gz, .tar.xz, .zip).

Every member is checked before anything is written: names that are absolute or climb out of the target,
links that point outside it, and device files or FIFOs are refused, and then nothing is unpacked. In-tree
symlinks (``libllama.so -> libllama.so.0``) are kept, because the shared libraries need them.

Names alone cannot catch links that escape only in combination (``a -> b/c/../..`` with ``b/c -> x``), so the
whole member list is also played out on a simulated tree first (archive_members.py): a member written through
a link, a hard link to anything but an earlier file, or a link that leads out through other links refuses the
archive before a byte is written. As a second line, writes are re-checked against the real filesystem as they
happen (tar: the standard library's ``data`` filter) and every link is resolved once all are in place; what
those catch is refused part-way, and the caller unpacks into a scratch folder and removes it on error.
"""

from __future__ import annotations

import errno
import lzma
import os
import posixpath
import shutil
import stat
import tarfile
import threading
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from ..system.errors import DiskFull, LocalModelsError, UnsafePath, VerificationFailed
from ..system.files import disk_full
from ..system.progress import ProgressCallback, check_cancelled, report
from .archive_members import DIR, FILE, HARDLINK, MAX_PATH_CHARS, SYMLINK, MemberTree, shown, stays_beneath

_CHUNK = 1 << 20
_DISK_MARGIN = 32 << 20
_REFUSED = "The archive was refused and nothing was unpacked."
# What extraction can still raise for an archive that got past the checks (a name too long for this
# filesystem, a path through a file): the archive's doing, refused like the rest rather than a crash.
_ARCHIVE_ERRNOS = {errno.ENAMETOOLONG, errno.ELOOP, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.EXDEV}


@dataclass(frozen=True)
class Extracted:
    dest: Path
    files: int
    bytes: int


def extract(
    *, archive: Path, dest: Path, progress: ProgressCallback | None = None, cancel: threading.Event | None = None
) -> Extracted:
    """Unpack ``archive`` into ``dest`` (created if missing). Raises UnsafePath for a member that would
    escape ``dest``, VerificationFailed for an unreadable archive or a special file, DiskFull when the
    unpacked size does not fit."""
    dest.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        return _extract_zip(archive, dest, progress, cancel)
    try:
        is_tar = tarfile.is_tarfile(archive)
    except OSError:
        is_tar = False
    if is_tar:
        return _extract_tar(archive, dest, progress, cancel)
    raise VerificationFailed(
        f"{archive.name} is neither a tar nor a zip archive.",
        hint="The download may be damaged; run the command again.",
    )


def check_member_name(name: str, archive_name: str = "archive") -> str:
    """The member's normalized relative path; UnsafePath if it is absolute or climbs out."""
    drive = len(name) > 2 and name[1] == ":" and name[2] in "/\\"  # C:/ from a Windows-made archive
    if not name or name.startswith(("/", "\\")) or os.path.isabs(name) or drive:
        raise UnsafePath(
            f"{archive_name} contains a member with an absolute path: {name!r}",
            hint="The archive was refused and nothing was unpacked.",
        )
    normalized = posixpath.normpath(name)
    if normalized == ".." or normalized.startswith("../"):
        raise UnsafePath(
            f"{archive_name} contains a member that escapes its folder: {name!r}",
            hint="The archive was refused and nothing was unpacked.",
        )
    return normalized


def check_link_target(name: str, target: str, *, hard: bool, archive_name: str = "archive") -> None:
    """A symlink's target is relative to the link's own folder, a hard link's to the archive root."""
    if not target or target.startswith("/") or os.path.isabs(target):
        raise UnsafePath(
            f"{archive_name}: link {name!r} points to an absolute path {target!r}",
            hint="The archive was refused and nothing was unpacked.",
        )
    base = "" if hard else posixpath.dirname(posixpath.normpath(name))
    resolved = posixpath.normpath(posixpath.join(base, target))
    if resolved == ".." or resolved.startswith("../"):
        raise UnsafePath(
            f"{archive_name}: link {name!r} points outside the archive ({target!r})",
            hint="The archive was refused and nothing was unpacked.",
        )


def _check_room(dest: Path, needed: int) -> None:
    free = shutil.disk_usage(dest).free
    if needed + _DISK_MARGIN > free:
        raise DiskFull(
            f"Unpacking needs {needed >> 20} MiB but only {free >> 20} MiB is free at {dest}.",
            hint="Free some disk space and run the command again.",
        )


def _extract_tar(archive: Path, dest: Path, progress, cancel) -> Extracted:
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            _check_tar_members(members, archive.name)
            total = sum(m.size for m in members if m.isfile())
            _check_room(dest, total)
            done = 0
            task = f"Unpacking {archive.name}"
            for member in members:
                check_cancelled(cancel)
                tar.extract(member, dest, filter="data")
                done += member.size if member.isfile() else 0
                report(progress, task, done, total)
            _check_links_resolve_inside(dest, [m.name for m in members if m.issym()], archive.name)
            return Extracted(dest, sum(1 for m in members if not m.isdir()), total)
    except LocalModelsError:
        raise  # ours already (DiskFull is also an OSError)
    except tarfile.FilterError as exc:  # the data filter saw what our checks missed: refuse all the same
        raise UnsafePath(f"{archive.name}: {exc}", hint="The archive was refused.") from exc
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError) as exc:
        raise _damaged(archive, exc) from exc
    except OSError as exc:
        mapped = disk_full(exc, f"unpacking {archive.name}")
        if mapped is not exc:
            raise mapped from exc
        if exc.errno is None:  # gzip.BadGzipFile and friends: the bytes, not the disk
            raise _damaged(archive, exc) from exc
        if exc.errno in _ARCHIVE_ERRNOS:
            raise _cannot_unpack(archive, exc) from exc
        raise
    except (KeyError, ValueError) as exc:  # e.g. a link the checks above should have refused: never a traceback
        raise _cannot_unpack(archive, exc) from exc


def _check_tar_members(members: list[tarfile.TarInfo], archive_name: str) -> None:
    tree = MemberTree(archive_name)
    for member in members:
        check_member_name(member.name, archive_name)
        if member.issym() or member.islnk():
            check_link_target(member.name, member.linkname, hard=member.islnk(), archive_name=archive_name)
        elif not (member.isfile() or member.isdir()):
            raise VerificationFailed(
                f"{archive_name} contains a device file or FIFO: {shown(member.name)}", hint=_REFUSED
            )
        kind = SYMLINK if member.issym() else HARDLINK if member.islnk() else DIR if member.isdir() else FILE
        tree.add(member.name, kind, member.linkname)
    tree.check_links()


def _cannot_unpack(archive: Path, exc: BaseException) -> VerificationFailed:
    return VerificationFailed(f"{archive.name} cannot be unpacked safely: {exc}", hint="The archive was refused.")


def _damaged(archive: Path, exc: BaseException) -> VerificationFailed:
    return VerificationFailed(f"{archive.name} is damaged: {exc}", hint="Run the command again to download it afresh.")


def _zip_mode(info: zipfile.ZipInfo) -> int:
    return (info.external_attr >> 16) & 0xFFFF if info.create_system == 3 else 0


def _installed_file_mode(archive_mode: int) -> int:
    """What tar's ``data`` filter makes of a file's mode: the execute bits the archive asks for, but never
    setuid/setgid/sticky or write access for group and others (0777 -> 0755, 0666 -> 0644)."""
    if not archive_mode & 0o777:
        return 0o644  # no mode recorded (a zip made on Windows)
    mode = (archive_mode & 0o755) | 0o600
    return mode if mode & stat.S_IXUSR else mode & ~0o111


def _extract_zip(archive: Path, dest: Path, progress, cancel) -> Extracted:
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            links = _check_zip_members(zf, infos, archive.name)
            total = sum(i.file_size for i in infos if not i.is_dir())
            _check_room(dest, total)
            done = 0
            task = f"Unpacking {archive.name}"
            for info in infos:
                check_cancelled(cancel)
                if stat.S_ISLNK(_zip_mode(info)):
                    continue
                target = dest / check_member_name(info.filename, archive.name)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                _inside(dest, target.parent)
                target.parent.mkdir(parents=True, exist_ok=True)
                _inside(dest, target.parent)
                with zf.open(info) as src, open(target, "xb") as out:
                    shutil.copyfileobj(src, out, _CHUNK)
                target.chmod(_installed_file_mode(_zip_mode(info)))
                done += info.file_size
                report(progress, task, done, total)
            for name, link_target in links:
                link = dest / name
                _inside(dest, link.parent)
                link.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(link_target, link)
            _check_links_resolve_inside(dest, [name for name, _ in links], archive.name)
            return Extracted(dest, sum(1 for i in infos if not i.is_dir()), total)
    except LocalModelsError:
        raise
    except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise _damaged(archive, exc) from exc
    except FileExistsError as exc:
        raise VerificationFailed(
            f"{archive.name} names {exc.filename} twice.", hint="The archive was refused."
        ) from exc
    except OSError as exc:
        mapped = disk_full(exc, f"unpacking {archive.name}")
        if mapped is not exc:
            raise mapped from exc
        if exc.errno in _ARCHIVE_ERRNOS:
            raise _cannot_unpack(archive, exc) from exc
        raise
    except (KeyError, ValueError) as exc:  # e.g. a name os.symlink cannot take: never a traceback
        raise _cannot_unpack(archive, exc) from exc


def _check_zip_members(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], archive_name: str) -> list[tuple[str, str]]:
    """Refuse an unsafe zip before anything is written; its symlinks as (name, target). A zip stores a symlink
    as a member whose Unix mode says link and whose content is the target."""
    tree = MemberTree(archive_name)
    links: list[tuple[str, str]] = []
    for info in infos:
        name = check_member_name(info.filename, archive_name)
        mode = _zip_mode(info)
        if stat.S_ISLNK(mode):
            if info.file_size > MAX_PATH_CHARS:
                raise VerificationFailed(
                    f"{archive_name}: link {shown(info.filename)} has a target over {MAX_PATH_CHARS} bytes",
                    hint=_REFUSED,
                )
            target = zf.read(info).decode("utf-8", "surrogateescape")
            tree.add(info.filename, SYMLINK, target)  # first: a NUL in the target is refused here
            check_link_target(name, target, hard=False, archive_name=archive_name)
            links.append((name, target))
            continue
        if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):  # 0: no type recorded
            raise VerificationFailed(
                f"{archive_name} contains a device file or FIFO: {shown(info.filename)}", hint=_REFUSED
            )
        tree.add(info.filename, DIR if info.is_dir() else FILE)
    tree.check_links()
    return links


def _inside(dest: Path, path: Path) -> None:
    """Re-check against the real filesystem: an earlier member must not have made a folder a link out."""
    real_dest = os.path.realpath(dest)
    real = os.path.realpath(path)
    if os.path.commonpath([real_dest, real]) != real_dest:
        raise UnsafePath(f"Unpacking would write outside {dest}: {path}", hint="The archive was refused.")


def _check_links_resolve_inside(dest: Path, names: list[str], archive_name: str) -> None:
    for name in names:
        if not _resolves_beneath(dest, name):
            raise UnsafePath(
                f"{archive_name}: link {name!r} resolves outside the archive (through other links)",
                hint="The archive was refused.",
            )


def check_links_stay_inside(folder: Path, *, what: str) -> None:
    """Every symlink under ``folder`` must resolve without ever leaving it. For a folder that is moved as a
    whole (the installed build, a sub-folder of what was unpacked): a link that climbs out and back in is
    fine where it was unpacked but points elsewhere once the folder moves."""
    for dirpath, dirnames, filenames in os.walk(folder):  # does not descend into linked folders
        for name in (*dirnames, *filenames):
            link = Path(dirpath) / name
            if link.is_symlink() and not _resolves_beneath(folder, link.relative_to(folder).as_posix()):
                raise UnsafePath(
                    f"{what}: the link {link.relative_to(folder).as_posix()!r} -> "
                    f"{os.readlink(link)!r} leads outside the folder that would be installed.",
                    hint="The build was refused and nothing was installed.",
                )


def _resolves_beneath(root: Path, relative: str) -> bool:
    """Whether ``relative``, followed from ``root`` through the links now on disk, stays inside ``root``."""

    def link_target(parts: list[str]) -> str | None:
        candidate = root.joinpath(*parts)
        return os.readlink(candidate) if candidate.is_symlink() else None

    return stays_beneath(relative, link_target)
