"""Which process is ours: the file it runs, compared as a file (device and inode). A process's name and argv[0]
are whatever it chose, and `update` renames the folder of a build that still runs; the kernel's link to the
executable stays right through both."""

from __future__ import annotations

import os
from pathlib import Path

import psutil


def executable_id(proc: psutil.Process) -> list[int]:
    linux_exe = f"/proc/{proc.pid}/exe"
    return file_id(linux_exe if os.path.exists("/proc/self/exe") else proc.exe())


def file_id(path: str | Path) -> list[int]:
    found = os.stat(path)
    return [found.st_dev, found.st_ino]


def started_id(proc: psutil.Process, binary: str | Path | None = None) -> list[int]:
    """What a process we just started runs: its executable, else (it exited already) the file we started."""
    try:
        return executable_id(proc)
    except (OSError, psutil.Error):
        try:
            return file_id(binary) if binary else []
        except OSError:
            return []


def ours(pid: int, create_time: float, exe_id: list[int] | None) -> psutil.Process | None:
    """The live process we recorded, or None when it is gone, a zombie, or the pid now belongs to another
    program (another start time, or another executable)."""
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - create_time) > 0.05 or proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc if exe_id and executable_id(proc) == list(exe_id) else None
    except (psutil.Error, OSError):
        return None
