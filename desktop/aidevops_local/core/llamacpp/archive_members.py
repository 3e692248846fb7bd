"""The tree an archive would make, worked out from its member list before anything is written.

Text checks on one member at a time cannot see what members do together (CPython's CVE-2025-4517: folders
that are links, a link through them that climbs out, a hard link and a write through that). So the members are
added, in archive order, to a simulated tree (path -> kind and link target) and refused when a member would be
written through a link or over a different kind of member, when a hard link names anything but an earlier
file, when a path is absurdly long or deep, or when a symlink, followed through the links of the tree, leaves
the extraction folder.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Sequence

from ..system.errors import UnsafePath, VerificationFailed

FILE, DIR, SYMLINK, HARDLINK = "file", "dir", "symlink", "hard link"

MAX_PATH_CHARS = 1024  # PATH_MAX is 4096, and a real release's longest name is under 100
MAX_PATH_DEPTH = 64
_MAX_LINK_HOPS = 40  # what Linux allows before ELOOP
_REFUSED = "The archive was refused and nothing was unpacked."


def shown(name: str) -> str:
    """A member's name for a one-line message: quoted, and shortened when it is very long."""
    return repr(name if len(name) <= 120 else f"{name[:80]}...{name[-30:]}")


class MemberTree:
    """Add every member in archive order with ``add``, then call ``check_links``; either raises on the first
    member that makes the archive unsafe (VerificationFailed, or UnsafePath for a link that leads out)."""

    def __init__(self, archive_name: str):
        self.archive_name = archive_name
        self._nodes: dict[str, tuple[str, str]] = {}  # normalized path -> (kind, link target as stored)

    def _refuse(self, name: str, why: str) -> VerificationFailed:
        return VerificationFailed(f"{self.archive_name}: member {shown(name)} {why}", hint=_REFUSED)

    def add(self, name: str, kind: str, target: str = "") -> None:
        """``name`` must already have passed ``check_member_name`` (relative, not climbing out)."""
        self._check_text(name, kind, target)
        path = posixpath.normpath(name)
        if path == ".":
            if kind != DIR:
                raise self._refuse(name, "names the extraction folder itself")
            return
        parts = path.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            parent_kind, _ = self._nodes.setdefault(parent, (DIR, ""))
            if parent_kind == SYMLINK:
                raise self._refuse(name, f"would be written through the link {shown(parent)}")
            if parent_kind != DIR:
                raise self._refuse(name, f"would be written inside {shown(parent)}, which is a {parent_kind}")
        earlier = self._nodes.get(path)
        if earlier is not None:
            if (earlier[0], kind) in ((DIR, DIR), (FILE, FILE)):
                return  # a folder listed twice, or a file written again: nothing new
            raise self._refuse(name, f"appears twice (a {earlier[0]}, then a {kind})")
        if kind == HARDLINK:
            linked = self._nodes.get(posixpath.normpath(target))
            if linked is None or linked[0] not in (FILE, HARDLINK):
                raise self._refuse(name, f"is a hard link to {shown(target)}, which is not a file before it")
        self._nodes[path] = (kind, target if kind == SYMLINK else "")

    def _check_text(self, name: str, kind: str, target: str) -> None:
        if len(name) > MAX_PATH_CHARS or name.count("/") >= MAX_PATH_DEPTH:
            raise self._refuse(name, f"has a path over {MAX_PATH_CHARS} characters or {MAX_PATH_DEPTH} levels")
        if "\0" in name or "\0" in target:
            raise self._refuse(name, "holds a NUL byte in its name or link target")
        if kind in (SYMLINK, HARDLINK) and len(target) > MAX_PATH_CHARS:
            raise self._refuse(name, f"is a link with a target over {MAX_PATH_CHARS} characters")

    def check_links(self) -> None:
        """Every symlink, followed through the tree's other links, must stay inside the extraction folder."""
        for path, (kind, target) in self._nodes.items():
            if kind == SYMLINK and not self._stays_inside(path):
                raise UnsafePath(
                    f"{self.archive_name}: link {shown(path)} -> {shown(target)} leads outside the archive "
                    "(through other links) or loops",
                    hint=_REFUSED,
                )

    def _stays_inside(self, link: str) -> bool:
        """Follow ``link`` as the kernel would once every member is in place. A name no member makes counts
        as a plain folder, so that ``missing/..`` is judged by its text."""
        return stays_beneath(self._nodes[link][1], self._link_target, start=link.split("/")[:-1])

    def _link_target(self, parts: list[str]) -> str | None:
        kind, target = self._nodes.get("/".join(parts), (DIR, ""))
        return target if kind == SYMLINK else None


def stays_beneath(path: str, link_target: Callable[[list[str]], str | None], *, start: Sequence[str] = ()) -> bool:
    """Follow ``path`` ('/'-separated) from the folder ``start`` (its components below the root) step by step as
    the kernel does, ``link_target(components)`` giving a link's target (None: not a link), and say whether every
    step stays beneath the root. Unlike a realpath check, the answer does not depend on where the root is. An
    absolute target, more than 40 hops, or a link that cannot be read (OSError: too long, a loop) counts as
    leaving: the caller refuses rather than crashes."""
    if path.startswith("/"):
        return False
    resolved = list(start)  # real (non-link) components below the root
    pending = list(reversed(path.split("/")))  # a stack: the next component on top
    hops = 0
    while pending:
        part = pending.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if not resolved:
                return False
            resolved.pop()
            continue
        try:
            target = link_target([*resolved, part])
        except OSError:
            return False
        if target is None:
            resolved.append(part)
            continue
        hops += 1
        if hops > _MAX_LINK_HOPS or target.startswith("/"):
            return False
        pending.extend(reversed(target.split("/")))
    return True
