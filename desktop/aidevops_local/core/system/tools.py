"""Probing the machine without ever crashing on it: a tool's output and a file's text, or "" when absent.

Hardware, GPU and backend detection all read through these two, so that a missing, failing or hanging tool
means "not there" everywhere in the same way.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def run_tool(argv: list[str], timeout: float = 2.0) -> str:
    """Output of a probing tool, or "" if it is absent, fails or hangs."""
    if shutil.which(argv[0]) is None:
        return ""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout if done.returncode == 0 else ""


def read_text(path: Path) -> str:
    """A sysfs or procfs file's text, stripped; "" when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""
