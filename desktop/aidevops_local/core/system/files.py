"""Whole-file writes and the disk filling up, in one place.

Every file the tool rewrites (settings, the server's state, a runtime's manifest, the feature cache, the
autostart entry, the wizard's pick) goes through write_atomically: a reader sees the old file or the new
one, never a half-written one, and a full disk leaves the old file whole and says so as DiskFull.
disk_full()/disk_full_is_ours() are the one mapping from ENOSPC to DiskFull, for writes that stream.
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from .errors import DiskFull

FREE_SPACE_HINT = "Free some disk space and run the command again."


def disk_full(exc: BaseException, what: str, hint: str = FREE_SPACE_HINT) -> BaseException:
    """DiskFull ("The disk filled up while <what>.") for an ENOSPC, else ``exc`` itself (a DiskFull too)."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC and not isinstance(exc, DiskFull):
        return DiskFull(f"The disk filled up while {what}.", hint=hint)
    return exc


@contextlib.contextmanager
def disk_full_is_ours(what: str, hint: str = FREE_SPACE_HINT) -> Iterator[None]:
    """Raise an ENOSPC from the block as DiskFull; every other error passes unchanged."""
    try:
        yield
    except OSError as exc:
        mapped = disk_full(exc, what, hint)
        if mapped is exc:
            raise
        raise mapped from exc


def write_atomically(path: Path, data: str | bytes, *, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` (text as UTF-8): a temporary file in the same folder, flushed to disk,
    then renamed over it. On any failure the temporary file is removed and ``path`` is as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    # A name of its own per write, so two writers never share a temporary file; created like open() would
    # (0o666 less the umask) unless a mode is asked for.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if mode is None else mode)
    try:
        with disk_full_is_ours(f"writing {path}"), os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())  # ENOSPC can surface only here (delayed allocation)
        if mode is not None:
            os.chmod(tmp, mode)  # exactly this mode, whatever the umask
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
