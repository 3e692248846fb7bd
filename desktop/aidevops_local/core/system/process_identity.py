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
