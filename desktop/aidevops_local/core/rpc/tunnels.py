"""The safe way to a worker: SSH, with the user's own keys and known_hosts. The main machine starts the worker
over SSH (``aidevops-local worker start --json`` there: its RPC server listens on that machine's 127.0.0.1
only), then forwards a local loopback port to it with ``ssh -L``; llama-server talks to the local end.
The tunnel is our process, recorded with the server's state and closed when the server stops.

``AIDEVOPS_LOCAL_SSH`` replaces the ``ssh`` command (split like a shell would, e.g. ``ssh -F ~/.ssh/lab``);
``AIDEVOPS_LOCAL_REMOTE_COMMAND`` is the tool on the worker (default ``aidevops-local``).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from ..system import config, ports, process_identity, settings_checks
from ..system.errors import ConfigError, NetworkError
from .worker import answers

SSH_ENV = "AIDEVOPS_LOCAL_SSH"
REMOTE_COMMAND_ENV = "AIDEVOPS_LOCAL_REMOTE_COMMAND"
CONNECT_TIMEOUT_S = 10
REMOTE_START_TIMEOUT_S = 60.0
TUNNEL_TIMEOUT_S = 15.0


@dataclass
class Tunnel:
    target: str
    local_port: int
    remote_port: int
    pid: int
    create_time: float
    exe_id: list[int]

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.local_port}"


def check_target(target: str) -> str:
    """user@host, or ConfigError: nothing option-like or shell-special reaches ssh's argv from a setting."""
    if "@" not in target or settings_checks.worker_problem(target):
        raise ConfigError(f"The worker {target!r} is not of the form user@host.", hint=settings_checks.WORKER_HINT)
    return target


def _ssh() -> list[str]:
    base = shlex.split(os.environ.get(SSH_ENV) or "ssh")
    return [*base, "-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}"]


def start_remote_worker(target: str) -> int:
    """Start (or find) the worker's RPC server over SSH; its port on the worker's loopback."""
    remote = shlex.split(os.environ.get(REMOTE_COMMAND_ENV) or "aidevops-local")
    argv = [*_ssh(), check_target(target), "--", *remote, "worker", "start", "--json"]
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=REMOTE_START_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise NetworkError(
            f"Starting the worker on {target} over SSH took more than {REMOTE_START_TIMEOUT_S:.0f} s.",
            hint=f"Check that `ssh {target}` connects without a prompt.",
        ) from exc
    except OSError as exc:
        raise NetworkError(f"Could not run ssh: {exc}", hint="Install OpenSSH's client (ssh).") from exc
    port = _port_from(done.stdout) if done.returncode == 0 else None
    if port is None:
        said = (done.stderr.strip().splitlines() or done.stdout.strip().splitlines() or ["no answer"])[-1][:300]
        raise NetworkError(
            f"Could not start the worker on {target} over SSH: {said}",
            hint=f"Check that `ssh {target}` works without a password prompt (your keys and known_hosts), and "
            "that aidevops-local is installed there with `aidevops-local install`.",
        )
    return port


def _port_from(stdout: str) -> int | None:
    """The port from ``worker start --json`` (data from another machine: checked before use)."""
    try:
        data = json.loads(stdout[stdout.index("{") :])  # a login banner may come first
        host, _, port = str(data["endpoint"]).rpartition(":")
        number = int(port)
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    return number if data.get("running") is True and host and 0 < number < 65536 else None


def open_tunnel(target: str, remote_port: int) -> Tunnel:
    """``ssh -L 127.0.0.1:LOCAL:127.0.0.1:REMOTE target``, up when its local end accepts connections.

    With a terminal (``-tt``, holding a ``sleep`` there) rather than ``-N``: OpenSSH turns off Nagle's
    algorithm only for interactive sessions, and RPC's many small round trips then wait on delayed ACKs.
    Measured here: loading SmolLM2 through the tunnel 45 s with -N, 2 s so; generating 7 tok/s, 100."""
    local_port = ports.kernel_port("127.0.0.1")
    forward = f"127.0.0.1:{local_port}:127.0.0.1:{remote_port}"
    argv = [*_ssh(), "-tt", "-o", "ExitOnForwardFailure=yes", "-o", "ServerAliveInterval=15", "-L", forward]
    hold = ["--", "exec", "sleep", "2147483647"]  # the session's command; it ends with the tunnel (SIGHUP)
    logs = config.paths().logs_dir
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / "ssh-tunnels.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [*argv, check_target(target), *hold],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
        )
    child = psutil.Process(proc.pid)
    tunnel = Tunnel(target, local_port, remote_port, proc.pid, child.create_time(), process_identity.started_id(child))
    deadline = time.monotonic() + TUNNEL_TIMEOUT_S
    while time.monotonic() < deadline and proc.poll() is None:
        if answers("127.0.0.1", local_port, timeout=0.5):
            return tunnel
        time.sleep(0.05)
    close(tunnel)
    raise NetworkError(
        f"The SSH tunnel to {target} did not open: {_last_line(log_path)}",
        hint=f"Check that `ssh {target}` connects without a prompt, and that the server there allows "
        "TCP forwarding (AllowTcpForwarding).",
    )


def close(tunnel: Tunnel) -> None:
    """End the tunnel if it is still the ssh we started (never a process that took its pid since)."""
    proc = process_identity.ours(tunnel.pid, tunnel.create_time, tunnel.exe_id)
    if proc is None:
        return
    try:
        proc.terminate()
        proc.wait(timeout=5)
    except psutil.TimeoutExpired:
        proc.kill()
    except psutil.Error:
        pass


def alive(tunnel: Tunnel) -> bool:
    return process_identity.ours(tunnel.pid, tunnel.create_time, tunnel.exe_id) is not None


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return "no output"
    return lines[-1][:300] if lines else "no output"
