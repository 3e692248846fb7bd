"""This machine as a worker: the installed runtime's RPC server (``ggml-rpc-server``; ``rpc-server`` in older
builds), started in its own session, recorded in worker.json, and stopped only when the recorded process is
still the one we started. It listens on 127.0.0.1 unless ``listen`` names another address: the RPC server
has no authentication, so anyone who reaches that address can use the machine's memory and read what is
sent to it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil

from ..llamacpp import installed
from ..system import config, files, hardware, ports, process_identity
from ..system.errors import PortInUse, Refused, RuntimeNotInstalled, ServerStartFailed
from ..system.json_records import well_typed
from . import devices

DEFAULT_PORT = 50052  # the RPC server's own default
NAMES = ("ggml-rpc-server", "rpc-server")
START_TIMEOUT_S = 15.0


@dataclass
class WorkerState:
    pid: int
    create_time: float
    host: str
    port: int
    binary: str
    exe_id: list[int]
    log_path: str
    started_at: float
    cache: bool = False

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass
class WorkerStatus:
    running: bool
    endpoint: str = ""
    pid: int | None = None
    loopback: bool = True
    cache: bool = False
    devices: list[devices.Device] | None = None
    started_at: str = ""

    def as_json(self) -> dict:
        out = asdict(self)
        out["devices"] = [asdict(d) for d in self.devices or []]
        return out


def _state_path() -> Path:
    return config.paths().app_dir / "worker.json"


def find_rpc_server() -> Path:
    """The RPC server beside the installed llama-server, or an error saying how to get a build with one."""
    server = installed.find_llama_server()
    for name in NAMES:
        candidate = server.parent / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeNotInstalled(
        f"The installed llama.cpp build ({server.parent}) has no RPC server (ggml-rpc-server or rpc-server).",
        hint="Official llama.cpp releases include it: run `aidevops-local update`. A build of your own needs "
        "-DGGML_RPC=ON, then `aidevops-local install --use-system`.",
    )


def read_state() -> WorkerState | None:
    """worker.json's record, or None when there is none or it does not hold what start() wrote."""
    try:
        state = WorkerState(**json.loads(_state_path().read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
    return state if _well_formed(state) else None


def _well_formed(s: WorkerState) -> bool:
    """Every field of the type start() writes: a damaged file reads as no worker, never as a pid to pass to
    psutil or to signal."""
    return well_typed(s) and s.pid > 0 and 0 < s.port < 65536


def start(*, listen: str | None = None, port: int | None = None, cache: bool = False) -> WorkerStatus:
    """Start the RPC server (or report the one of ours that runs). ``listen``: an address other than
    127.0.0.1, which the caller has said out loud (cli/worker_cmd.py prints what it exposes)."""
    state = read_state()
    if state and process_identity.ours(state.pid, state.create_time, state.exe_id):
        return status()
    binary = find_rpc_server()
    host = listen or "127.0.0.1"
    if port is None:  # the usual port, else one near it: the main machine learns which from `start --json`
        port = DEFAULT_PORT if ports.is_free(host, DEFAULT_PORT) else ports.free_port_near(host, DEFAULT_PORT)
    elif not ports.is_free(host, port):
        raise PortInUse(
            f"Port {port} on {host} is taken, so the worker cannot listen there.",
            hint=f"Use another: `aidevops-local worker start --port {ports.free_port_near(host, port)}`.",
        )
    argv = [str(binary), "--host", host, "--port", str(port), "--threads", str(hardware.detect().threads)]
    if cache:
        argv.append("--cache")
    logs = config.paths().logs_dir
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"rpc-worker-{port}.log"
    env = installed.runtime_env(binary)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, start_new_session=True, close_fds=True
        )
    try:
        child = psutil.Process(proc.pid)
        state = WorkerState(
            pid=proc.pid,
            create_time=child.create_time(),
            host=host,
            port=port,
            binary=str(binary),
            exe_id=process_identity.started_id(child, binary),
            log_path=str(log_path),
            started_at=time.time(),
            cache=cache,
        )
        _wait_listening(proc, host, port, log_path)
    except BaseException:
        _end(psutil.Process(proc.pid), grace=1.0)
        raise
    files.write_atomically(_state_path(), json.dumps(asdict(state), indent=2) + "\n")
    return status()


def _wait_listening(proc: subprocess.Popen, host: str, port: int, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if answers(host, port):
            return
        time.sleep(0.05)
    tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:] if log_path.exists() else []
    raise ServerStartFailed(
        f"The RPC server did not start on {host}:{port}" + (f": {tail[0]}" if tail else "."),
        hint=f"Its log is {log_path}.",
    )


def answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether something accepts connections there (the RPC server's port, or a tunnel to one)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def stop(grace: float = 5.0) -> bool:
    """Stop our RPC server; False when none of ours runs (a process we did not start is never signalled)."""
    state = read_state()
    if state is None:
        return False
    proc = process_identity.ours(state.pid, state.create_time, state.exe_id)
    _state_path().unlink(missing_ok=True)
    if proc is None:
        return False
    _end(proc, grace=grace)
    return True


def _end(proc: psutil.Process, *, grace: float) -> None:
    """SIGTERM, SIGKILL after ``grace``: the RPC server is one process and holds no state worth a long wait."""
    try:
        proc.terminate()
        proc.wait(timeout=grace)
    except psutil.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
    except psutil.NoSuchProcess:
        pass


def status(*, with_devices: bool = True) -> WorkerStatus:
    state = read_state()
    if state is None or process_identity.ours(state.pid, state.create_time, state.exe_id) is None:
        return WorkerStatus(running=False)
    found = None
    if with_devices:
        try:
            found = devices.list_devices([state.endpoint]).get(state.endpoint, [])
        except (RuntimeNotInstalled, Refused):
            found = None
    return WorkerStatus(
        running=True,
        endpoint=state.endpoint,
        pid=state.pid,
        loopback=state.host in ("127.0.0.1", "::1", "localhost"),
        cache=state.cache,
        devices=found,
        started_at=datetime.fromtimestamp(state.started_at, UTC).isoformat(timespec="seconds"),
    )
