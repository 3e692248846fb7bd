"""Start, replace and stop the one llama-server this tool runs (supervision, restarts after a crash: supervisor.py).

Its phases (state.ServerPhase): stopped -> starting -> running -> stopping -> stopped; a server that exits on its
own is crashed until the next serve or stop. The state file (owned by state) is how the CLI, the tray and model
routing all see the same server; a stop marks it stopping before any signal, so an exit in between is never taken
for a crash. What it is doing now is health.status(); why a start failed, failures; the process group, process.

Start = spawn in a new session (its own process group, detached from the terminal), stdout+stderr appended
to a per-run log file, then poll /health until 200, the child exits, or a deadline passes. One start at a
time: a file lock (local-models/server.lock) is held from the "already running" check to the state write.
Stop = SIGTERM to the group, a second SIGTERM (llama-server ignores the first while a request is in flight),
SIGKILL after the grace period.

Security: the server binds 127.0.0.1 unless asked otherwise, through the Host-checking front (host_guard:
its own process on host:port, llama-server behind it on a private UNIX socket), which refuses requests
addressed to names that are not loopback ones (DNS rebinding); where the build has it, CORS reflects only
localhost origins (so a web page from elsewhere cannot read its answers); with the require_api_key setting
the key comes from the keyring and reaches llama-server only through its environment (LLAMA_API_KEY), and
the tool's own secrets (HF_TOKEN, GITHUB_TOKEN) are taken out of that environment.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil

from ..accounting import request_log
from ..llamacpp import installed
from ..system import config, files, process_identity
from ..system.errors import LocalModelsError, ServerNotRunning, ServerStartFailed
from ..system.progress import ProgressCallback, check_cancelled, report
from . import api_key, failures, health, host_guard, launch, pooling, process, router
from . import state as server_state
from .failures import LOG_TAIL_LINES, log_tail
from .health import ServerStatus, listening_pids, status
from .state import ServerPhase, ServerState, start_lock

__all__ = ["LOG_TAIL_LINES", "ServerState", "ServerStatus", "listening_pids", "log_tail", "start_lock", "status"]


# ---- start --------------------------------------------------------------------------------------------------


def serve(
    model: str | None = None,
    *,
    port: int | None = None,
    ctx: int | None = None,
    host: str | None = None,
    threads: int | None = None,
    progress: ProgressCallback | None = None,
    timeout: float | None = None,
    settings: config.Settings | None = None,
) -> ServerStatus:
    """Start llama-server and wait until it answers /health. On any failure nothing is left running. One start
    at a time: a second one waits for the first, then finds it running and refuses. ``settings``: the caller's
    (read once where its command began), else read here; its ``workers`` are the machines a start pools."""
    settings = settings or config.load_settings()
    with start_lock(progress):
        _refuse_if_running(settings)
        plan = launch.plan_with_workers(model, settings, progress, port=port, ctx=ctx, host=host, threads=threads)
        return _run(plan, settings, progress, timeout)


def _run(
    plan: launch.LaunchPlan, settings: config.Settings, progress: ProgressCallback | None, timeout: float | None
) -> ServerStatus:
    """_start, closing the plan's tunnels when the start fails."""
    try:
        return _start(plan, settings, progress, timeout)
    except BaseException:
        plan.close()
        raise


def replace_model(
    model: str,
    *,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    settings: config.Settings | None = None,
) -> ServerStatus:
    """Serve ``model`` in place of the running server, on its host and port with its threads. The new start is
    planned (its checks refuse) before the old server stops; if it then fails to start, the old one is started
    again and the new one's error is raised. With no server running, a plain serve."""
    settings = settings or config.load_settings()
    with start_lock(progress, cancel):
        state = server_state.running()
        if state is None:
            return serve(model, progress=progress, settings=settings)
        plan = launch.plan_with_workers(
            model, settings, progress, port=state.port, host=state.host, threads=state.threads or None
        )
        try:
            if plan.api_key_required:
                api_key.ensure()  # a keyring that refuses does so while the old server still runs
            check_cancelled(cancel)
        except BaseException:
            plan.close()
            raise
        report(progress, f"Stopping {state.model}", 0, None, unit="step")
        stop(grace=settings.stop_grace_s)
        try:
            return _run(plan, settings, progress, None)
        except Exception:
            _start_again(state, settings)
            raise


def _start_again(previous: ServerState, settings: config.Settings) -> None:
    """Best effort: the server a failed replacement stopped, as it was (model, host, port, threads)."""
    model = previous.model_path if Path(previous.model_path).is_file() else previous.model
    try:
        plan = launch.plan_with_workers(
            model, settings, None, port=previous.port, host=previous.host, threads=previous.threads or None
        )
        _run(plan, settings, None, None)
    except (LocalModelsError, OSError):
        pass  # the replacement's error is the one to report


def _refuse_if_running(settings: config.Settings) -> None:
    existing = server_state.read()
    if existing and server_state.owned_process(existing) and health.front_up(existing):
        raise ServerStartFailed(
            f"A server is already running: {_served_model(existing) or 'no model loaded'} at "
            f"{existing.base_url}/v1 (pid {existing.pid}).",
            hint="Use the running one, or run `aidevops-local stop` first.",
        )
    if existing:
        _stop_leftovers(existing, settings.stop_grace_s)


def _start(
    plan: launch.LaunchPlan, settings: config.Settings, progress: ProgressCallback | None, timeout: float | None
) -> ServerStatus:
    """Run a plan: called with start_lock held and no server of ours running."""
    launch.check_port_free(plan.host, plan.port)
    key = api_key.ensure() if plan.api_key_required else None  # before anything starts: refusal leaves nothing
    # A router's model instances listen on 127.0.0.1 ports the front does not cover: a key for this run guards
    # them, and the front adds it to what it passes (clients still need none). Kept in memory and environments.
    run_key = secrets.token_urlsafe(32) if plan.router and key is None else ""
    _ingest_usage()  # the previous run's log is complete now; account for it before a new run starts
    if plan.preset_path is not None:
        files.write_atomically(plan.preset_path, plan.preset)
    log_path, session_id, started = _open_log(plan)
    env = process.server_env(plan.binary, key=key or run_key)
    host_guard.prepare_socket(Path(plan.upstream))
    listen = host_guard.bind(plan.host, plan.port)  # held from here: a taken port is said before any spawn
    with listen, open(log_path, "ab") as log:
        proc = subprocess.Popen(
            plan.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, start_new_session=True, close_fds=True
        )
        child = psutil.Process(proc.pid)  # exec has happened: Popen returns after it
        front = _start_front(listen, plan, settings, proc, log, run_key)
    state = ServerState(
        pid=proc.pid,
        create_time=child.create_time(),
        host=plan.host,
        port=plan.port,
        model=plan.model,
        model_path=str(plan.model_path),
        binary=str(plan.binary),
        log_path=str(log_path),
        started_at=started,
        session_id=session_id,
        ctx_size=plan.ctx_size,
        parallel=plan.parallel,
        gpu_layers=plan.gpu_layers,
        build=plan.build,
        api_key_required=plan.api_key_required,
        router=plan.router,
        exe_id=process_identity.started_id(child, plan.binary) or None,
        threads=plan.threads or 0,
        guard_pid=front.pid,
        guard_create_time=psutil.Process(front.pid).create_time(),
        upstream=plan.upstream,
        aliases=plan.names.aliases if plan.names else None,
        name_notes=plan.names.notes if plan.names else None,
        workers=pooling.record(plan.pool),
        plan_line=plan.choice,
    )
    server_state.record_start(state)
    try:
        _wait_healthy(proc, state, timeout or settings.health_timeout_s, progress)
    except BaseException:
        _abandon(proc, state)
        raise
    server_state.mark_running(state)
    return status()


def _abandon(proc: subprocess.Popen, state: ServerState) -> None:
    """A start that did not become healthy leaves nothing behind: its front, its server, socket and state."""
    host_guard.stop(state.guard_pid, state.guard_create_time)
    process.terminate_group(proc.pid, grace=2.0)
    proc.wait(timeout=5)
    host_guard.remove_socket(state.upstream)
    server_state.clear()


def _start_front(
    listen, plan: launch.LaunchPlan, settings: config.Settings, proc: subprocess.Popen, log, run_key: str
) -> subprocess.Popen:
    """The Host-checking front on the public socket, forwarding to llama-server's; if it cannot start,
    llama-server does not stay behind."""
    env = {k: v for k, v in os.environ.items() if k not in installed.TOOL_SECRETS}
    if run_key:
        env[host_guard.KEY_ENV] = run_key
    try:
        return host_guard.start(
            listen,
            upstream=plan.upstream,
            host=plan.host,
            allowed_hosts=settings.allowed_hosts,
            watch_pid=proc.pid,
            log=log,
            env=env,
            fill_model=plan.router,
            aliases=plan.front_aliases,
        )
    except BaseException:
        process.terminate_group(proc.pid, grace=2.0)
        proc.wait(timeout=5)
        raise


def _stop_leftovers(state: ServerState, grace: float) -> None:
    """What a crash left of an earlier run: its front (which holds the port) or its llama-server (whose front
    died). Each is signalled only if it is ours."""
    host_guard.stop(state.guard_pid, state.guard_create_time)
    if server_state.owned_process(state) is not None:
        process.terminate_group(state.pid, grace=grace)
    pooling.close_tunnels(state)
    host_guard.remove_socket(state.upstream)
    server_state.clear()


def _open_log(plan: launch.LaunchPlan) -> tuple[Path, str, float]:
    """A new log per run, opened by a header line that usage accounting reads to know the model."""
    logs = config.paths().logs_dir
    logs.mkdir(parents=True, exist_ok=True)
    started = time.time()
    stamp = datetime.fromtimestamp(started, UTC).strftime("%Y%m%d-%H%M%S")
    path = logs / f"llama-server-{stamp}-{plan.port}.log"
    session_id = uuid.uuid4().hex
    header = request_log.format_header(
        model=plan.model,
        model_path=str(plan.model_path),
        port=plan.port,
        started=datetime.fromtimestamp(started, UTC),
        session_id=session_id,
        # What usage records speeds under (a router's instances name their own in its log).
        plan=None if plan.router else {k: getattr(plan, k) for k in ("ctx_size", "parallel", "gpu_layers", "threads")},
    )
    with files.disk_full_is_ours(f"starting the server (its log {path})"), open(path, "a", encoding="utf-8") as log:
        log.write(header)
    return path, session_id, started


def _wait_healthy(
    proc: subprocess.Popen, state: ServerState, timeout: float, progress: ProgressCallback | None
) -> None:
    started = time.monotonic()
    deadline = started + timeout
    task = f"Loading {state.model}"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise failures.start_failure(state, proc.returncode)
        if not health.front_up(state) and proc.poll() is None:  # (the front also ends when llama-server does)
            raise ServerStartFailed(
                "The server's Host-checking front exited during start.",
                hint=f"Its log is {state.log_path}.",
                details=log_tail(Path(state.log_path)),
            )
        if health.probe(state.base_url, timeout=1.0) == 200 and _model_ready(state):
            report(progress, task, 1, 1, unit="step")
            return
        report(progress, task, 0, None, unit="step")
        waited = time.monotonic() - started
        # Small models are ready in well under a second: poll closely at first (a poll costs ~1 ms).
        time.sleep(0.02 if waited < 3 else 0.1 if waited < 15 else 0.25)
    raise ServerStartFailed(
        f"llama-server did not become ready within {timeout:.0f} s.",
        hint="A large model on a slow disk can take longer: raise health_timeout_s in the settings file.",
        details=log_tail(Path(state.log_path)),
    )


def _model_ready(state: ServerState) -> bool:
    """A router answers /health before its model is loaded: it is ready once the model it was asked to load
    at start is. A model that failed to load fails the start, like a single-model server that exits."""
    if not state.router:
        return True
    available = (
        router.models(state.base_url, timeout=1.0, headers=api_key.headers(required=state.api_key_required)) or []
    )
    found = next((m for m in available if m.id == state.model), None)
    if found is not None and found.state == "unloaded" and found.failed:
        raise failures.start_failure(state, found.exit_code if found.exit_code is not None else -1)
    return found is not None and found.serving


# ---- stop ---------------------------------------------------------------------------------------------------


@dataclass
class StopResult:
    stopped: bool
    pid: int | None
    model: str | None
    forced: bool = False  # needed SIGKILL
    message: str = ""
    warning: str = ""


def stop(*, grace: float | None = None, settings: config.Settings | None = None) -> StopResult:
    """Stop the server: SIGTERM, then SIGKILL after ``grace`` seconds (else the settings' stop_grace_s)."""
    state = server_state.read()
    if state is None:
        return StopResult(stopped=False, pid=None, model=None, message="No server is running.")
    if grace is None:
        grace = (settings or config.load_settings()).stop_grace_s
    proc = server_state.owned_process(state)
    if proc is None:
        _stop_leftovers(state, grace)  # its front, if that still holds the port
        warning = _ingest_usage()
        return StopResult(
            stopped=False,
            pid=state.pid,
            model=state.model,
            warning=warning,
            message=f"The server (pid {state.pid}) had already exited; cleared its state.",
        )
    model = _served_model(state)
    _ingest_usage()  # while the model's process is up: its memory joins the speeds measured (models/measured.py)
    server_state.move(state, ServerPhase.STOPPING)  # before any signal: a poll from now on sees a stop, never a crash
    host_guard.stop(state.guard_pid, state.guard_create_time)  # first: no new request reaches the server
    forced = process.terminate_group(state.pid, grace=grace)
    pooling.close_tunnels(state)
    if (current := server_state.read()) is None or current.pid == state.pid:  # not a start's that came since
        host_guard.remove_socket(state.upstream)
        server_state.clear()
    warning = _ingest_usage()
    return StopResult(
        stopped=True,
        pid=state.pid,
        model=model,
        forced=forced,
        warning=warning,
        message=f"Stopped {model or 'the server'} (pid {state.pid}).",
    )


def _served_model(state: ServerState) -> str | None:
    """What the server serves now. A router's is whichever it has loaded (a request naming another model
    switches it without us), so ask it; None when it has none loaded."""
    if not state.router:
        return state.model
    available = router.models(state.base_url, headers=api_key.headers(required=state.api_key_required))
    if available is None:
        return state.model  # not answering: the one asked for last is the best we know
    return next((m.id for m in available if m.serving or m.state == "loading"), None)


def _ingest_usage() -> str:
    """Account for finished requests. A failure here must not block a start or a stop: the logs stay on
    disk and the next ingest picks them up. Returns a warning for the user, or ""."""
    from ..accounting import usage  # imported here: status (every poll, every CLI call) must not pay for peewee

    try:
        usage.ingest(live_log=server_state.live_log(), memory_of=health.model_memory)
    except LocalModelsError as exc:
        return f"Usage was not recorded this time: {exc.message}"
    return ""


def require_running() -> ServerState:
    state = server_state.running()
    if state is None:
        raise ServerNotRunning("No server is running.", hint="Start one with `aidevops-local serve`.")
    return state
