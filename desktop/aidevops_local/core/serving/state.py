"""The one owner of the state file (<root>/local-models/server.json) and of "a server of ours is running".

The state file is how the CLI, the tray, model routing, cleanup and removal all see the same server. Only this
module reads or writes it, and only this module decides whether the process it names is ours: a process is ours
only if the file names its pid AND its start time matches AND it runs the executable file we started, so a
recycled pid is never taken for our server (nor signalled). The server's phases are an enum with the transitions
it may take written out, so a phase is a name, never a bare string compared in several places; each phase a
process records (starting, running, stopping) goes through move(), which refuses a move the table does not allow.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from pathlib import Path
from typing import Protocol

import psutil

from ..system import config, process_identity
from ..system.files import write_atomically
from ..system.json_records import well_typed
from ..system.process_identity import file_id
from ..system.progress import ProgressCallback, check_cancelled, report


class ServerPhase(StrEnum):
    """Where the server is in its life. A StrEnum: `status --json` and the tray see the same strings as ever."""

    STOPPED = "stopped"
    STARTING = "starting"  # spawned, or a model loading: not yet answering
    RUNNING = "running"
    STOPPING = "stopping"  # a stop is under way: the exit that follows is intended, not a crash
    CRASHED = "crashed"  # it (or a router's model) exited on its own, until the next serve or stop


# The moves a server's phase may make. A router that loads another model goes back to starting; one whose model
# crashed still runs, and loads it again on request.
TRANSITIONS: dict[ServerPhase, frozenset[ServerPhase]] = {
    ServerPhase.STOPPED: frozenset({ServerPhase.STARTING}),
    ServerPhase.STARTING: frozenset(
        {ServerPhase.RUNNING, ServerPhase.STOPPING, ServerPhase.CRASHED, ServerPhase.STOPPED}
    ),
    ServerPhase.RUNNING: frozenset({ServerPhase.STARTING, ServerPhase.STOPPING, ServerPhase.CRASHED}),
    ServerPhase.STOPPING: frozenset({ServerPhase.STOPPED}),
    ServerPhase.CRASHED: frozenset({ServerPhase.STARTING, ServerPhase.STOPPING, ServerPhase.STOPPED}),
}


# The phases a process records (move()); crashed and stopped are read from the process, never recorded.
_RECORDED = {p.value: p for p in (ServerPhase.STARTING, ServerPhase.RUNNING, ServerPhase.STOPPING)}


def advance(current: ServerPhase, target: ServerPhase) -> ServerPhase:
    """``target`` if a server in ``current`` may move there (staying put is no move); a move the table does not
    allow is a bug, refused with ValueError."""
    if target != current and target not in TRANSITIONS[current]:
        raise ValueError(f"A server cannot go from {current} to {target}.")
    return target


@dataclass
class ServerState:
    """What we know about the server we started; persisted as JSON."""

    pid: int
    create_time: float  # the process's start time: tells our pid from a recycled one
    host: str
    port: int
    model: str
    model_path: str
    binary: str
    log_path: str
    started_at: float
    session_id: str
    ctx_size: int = 0
    parallel: int = 0
    gpu_layers: int = 0
    build: int | str | None = ""  # the installed build's number (None: not known; "": nothing installed)
    api_key_required: bool = False  # clients must send the keyring's key (never stored here)
    router: bool = False  # router mode: `model` is the one asked for last; the router says what is loaded
    exe_id: list[int] | None = None  # the executable's (device, inode) at start: what the process runs
    # The phase recorded last (move()): starting, running or stopping. Crashed and stopped are read from the
    # process, not recorded. Stopping marks a stop under way: the process's exit is intended, not a crash.
    phase: ServerPhase = ServerPhase.STOPPED
    threads: int = 0  # --threads as asked at serve (0: the setting's): a restart on another model keeps it
    # The Host-checking front on host:port (host_guard); llama-server listens on `upstream`, a UNIX socket.
    # guard_pid 0: a server started before the front existed, listening on host:port itself.
    guard_pid: int = 0
    guard_create_time: float = 0.0
    upstream: str = ""
    # The other names each model answers to (model -> aliases), and a note per alias more than one model claimed.
    aliases: dict[str, list[str]] | None = None
    name_notes: list[str] | None = None
    # Workers whose memory this run pools (rpc/pool.py Member.as_json), with the SSH tunnels we opened to them.
    workers: list[dict] | None = None
    plan_line: str = ""  # where the layers went and why (models/offload.py's one line)

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def read() -> ServerState | None:
    """The state file's contents, or None. Says nothing about whether the process still lives. A file that
    cannot be read (a folder in its place, AIDEVOPS_HOME not a folder) is a ConfigError that names it."""
    try:
        text = config.read_text(
            config.paths().state_file,
            "the server state file",
            hint="Move it out of the way: aidevops-local writes a new one at the next start.",
        )
        data = json.loads(text) if text is not None else None
        if not isinstance(data, dict):
            return None
        if data.pop("stopping", False) and "phase" not in data:  # written before phases were recorded
            data["phase"] = ServerPhase.STOPPING
        data["phase"] = _RECORDED.get(data.get("phase"), ServerPhase.RUNNING)  # unknown: a server, up
        known = {f.name for f in fields(ServerState)}  # a newer version's extra fields are not ours to read
        state = ServerState(**{k: v for k, v in data.items() if k in known})
    except (ValueError, TypeError):
        # A damaged state file cannot name a process we may signal; treat it as no server.
        return None
    return state if _well_formed(state) else None


def _well_formed(state: ServerState) -> bool:
    """Whether every field holds what write() puts there: a pid of -5 or "abc", or a start time that is text,
    would reach psutil and the status line, and a process it names could be signalled."""
    return well_typed(state) and state.pid > 0 and state.guard_pid >= 0 and 0 < state.port < 65536


def write(state: ServerState) -> None:
    write_atomically(config.paths().state_file, json.dumps(asdict(state), indent=2))


def record_start(state: ServerState) -> None:
    """A new server's first record: stopped -> starting, replacing whatever the file held (a start holds
    start_lock and has cleared what an earlier run left)."""
    state.phase = advance(ServerPhase.STOPPED, ServerPhase.STARTING)
    with _file_lock():
        write(state)


def move(state: ServerState, target: ServerPhase) -> bool:
    """Record that the server ``state`` names moves to ``target``: read, checked and written under the file's
    lock, and only if the file still names that process (a start that came since is not ours to change). A
    move TRANSITIONS does not allow is a bug, refused with ValueError before anything is written. Returns
    whether it was recorded; ``state`` follows the file."""
    with _file_lock():
        current = read()
        if current is None or (current.pid, current.create_time) != (state.pid, state.create_time):
            return False
        current.phase = advance(current.phase, target)
        write(current)
    state.phase, state.model, state.model_path = current.phase, current.model, current.model_path
    return True


def mark_running(state: ServerState) -> None:
    """A start is done: starting -> running, unless a stop was recorded meanwhile (it wins)."""
    with _file_lock():
        current = read()
        if current is not None and current.pid == state.pid and current.phase == ServerPhase.STARTING:
            move(current, ServerPhase.RUNNING)


def clear() -> None:
    config.paths().state_file.unlink(missing_ok=True)


_file_lock_held = threading.local()


@contextlib.contextmanager
def _file_lock():
    """server.json's read-check-write steps, one at a time across processes (held for microseconds, unlike
    start_lock). Re-entrant within a thread."""
    if getattr(_file_lock_held, "on", False):
        yield
        return
    path = config.paths().state_file.with_name("server.json.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        _file_lock_held.on = True
        try:
            yield
        finally:
            _file_lock_held.on = False
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def start_lock(progress: ProgressCallback | None = None, cancel: threading.Event | None = None):
    """One start (or switch) at a time, across processes: held from the check for a running server through the
    start and the state write, so two starts never both run a server. Re-entrant within a thread (a switch holds
    it across its stop and start). The lock goes with the process that holds it, however that process ends."""
    if getattr(_lock_held, "depth", 0):
        _lock_held.depth += 1
        try:
            yield
        finally:
            _lock_held.depth -= 1
        return
    path = config.paths().state_file.with_name("server.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as lock_file:
        waiting = False
        while True:
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waiting:
                    waiting = True
                    report(progress, "Waiting for another start to finish", 0, None, unit="step")
                check_cancelled(cancel)
                time.sleep(0.05)
        _lock_held.depth = 1
        try:
            yield
        finally:
            _lock_held.depth = 0
            fcntl.flock(lock_file, fcntl.LOCK_UN)


_lock_held = threading.local()


def note_loaded(model: str, model_path: str) -> None:
    """A router switched to ``model``: the state file names it, so a crash report or a restart means it."""
    with _file_lock():
        state = read()
        if state is not None:
            state.model, state.model_path = model, model_path
            write(state)


def running() -> ServerState | None:
    """The state of a server of ours that is running: the state file names it AND its process is ours."""
    state = read()
    if state is None or owned_process(state) is None:
        return None
    return state


def live_log() -> Path | None:
    """The log the running server still writes (accounting must not prune it), or None."""
    state = read()
    return Path(state.log_path) if state is not None and state.log_path else None


class Served(Protocol):
    """What names a served model: a ServerState, or a status that asked a router which model it has loaded."""

    model: str | None
    model_path: str | None


def serves(state: Served | None, files: Iterable[str | Path], name: str | None = None) -> bool:
    """Whether the server ``state`` describes serves a model named ``name`` or stored in one of ``files`` (a
    model's GGUF parts, its projector): the one check before removing or cleaning a model away, and for which
    model the tray ticks. Files are compared as files (a link, a hard link or a relative path names the same
    one). None: no server of ours serves anything."""
    if state is None:
        return False
    if name is not None and state.model == name:
        return True
    if not state.model_path:
        return False
    try:
        served = Path(state.model_path).resolve()
        return any(_same_file(Path(path), served) for path in files)
    except OSError:
        return False


def _same_file(path: Path, served: Path) -> bool:
    if path.exists() and served.exists():
        return os.path.samefile(path, served)
    return path.resolve() == served


def owned_process(state: ServerState) -> psutil.Process | None:
    """The live process the state file describes, or None if it is gone or the pid now belongs to another
    program (system/process_identity.py)."""
    started = state.exe_id
    if not started:  # a state file from before exe_id was recorded: the file it names
        try:
            started = file_id(state.binary)
        except OSError:
            return None
    return process_identity.ours(state.pid, state.create_time, started)
