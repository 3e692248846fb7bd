"""Our server's process: the environment it starts with, and its process group, which is how a stop ends it.
The group is the server's session (start puts it in a new one), so a router's model instances go with it;
only a pid verified to be our session leader is signalled."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil

from ..llamacpp import installed
from ..system.errors import Refused
from . import api_key


def server_env(binary: Path, *, key: str | None = None) -> dict[str, str]:
    """The server's environment: the build's (installed.runtime_env), plus the API key when one is required."""
    env = installed.runtime_env(binary)
    if key:
        env[api_key.ENV_VAR] = key
    return env


def terminate_group(pid: int, *, grace: float) -> bool:
    """SIGTERM the group, SIGTERM again (in-flight requests swallow the first), SIGKILL at the deadline.
    Done when every process of the group is gone: a router's model instances too. Returns whether SIGKILL
    was needed. Only called for a pid verified to be our session leader."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return False
    if pgid != pid:
        raise Refused(
            f"Process {pid} is not the leader of its own process group; not signalling it.",
            hint="It was not started by this tool. Stop it yourself if you mean to.",
        )
    members = _group_members(pid)
    deadline = time.monotonic() + grace
    _signal_group(pgid, signal.SIGTERM)
    if _wait_gone(members, min(1.0, grace)):
        return False
    _signal_group(pgid, signal.SIGTERM)
    if _wait_gone(members, max(0.0, deadline - time.monotonic())):
        return False
    _signal_group(pgid, signal.SIGKILL)
    _wait_gone(members, 5.0)
    return True


def _group_members(pid: int) -> list[psutil.Process]:
    """The leader and its descendants in its process group (a router's instances), looked up before any
    signal, while the tree is still whole."""
    try:
        leader = psutil.Process(pid)
        found = [leader]
        for child in leader.children(recursive=True):
            try:
                if os.getpgid(child.pid) == pid:
                    found.append(child)
            except ProcessLookupError:
                continue
        return found
    except psutil.NoSuchProcess:
        return []


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _wait_gone(members: list[psutil.Process], timeout: float) -> bool:
    """Wait (reaping our own children) until each process is gone or a zombie of someone else's."""
    deadline = time.monotonic() + timeout
    for proc in members:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except psutil.TimeoutExpired:
            try:
                if proc.status() != psutil.STATUS_ZOMBIE:
                    return False
            except psutil.NoSuchProcess:
                continue
        except psutil.NoSuchProcess:
            continue
    return True
