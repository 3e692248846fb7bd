"""The llama-server supervisor: start, stop and report the one server this tool runs.

States: stopped -> starting -> running -> stopping -> stopped; a server that exits on its own is
"crashed" until the next serve or stop. The state file (<root>/local-models/server.json) is how the CLI,
the tray and model routing all see the same server; a stop marks it "stopping" before any signal, so an
exit in between is never taken for a crash. A process is ours only if the state file names its pid AND its
start time matches AND it runs the executable file we started: a recycled pid is never signalled.

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

import contextlib
import fcntl
import json
import os
import secrets
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil

from ..accounting import request_log
from ..system import backends, config, files, hardware, listening, local_http
from ..system.errors import (
    CorruptModel,
    LocalModelsError,
    PortInUse,
    Refused,
    ServerNotRunning,
    ServerStartFailed,
)
from ..system.progress import ProgressCallback, check_cancelled, report
from . import api_key, host_guard, launch

LOG_TAIL_LINES = 12
# Lines in llama-server's log that explain a failed start, and what they mean for the user.
_START_FAILURES = (
    (
        "couldn't bind",
        PortInUse,
        "The port is already in use by another program.",
        "Stop that program, or choose another port with --port.",
    ),
    (
        "failed to load model",
        CorruptModel,
        "llama-server could not load the model.",
        (
            "The file may be damaged or of an architecture this llama.cpp build does not know: "
            "pull it again, or run `update` for a newer runtime."
        ),
    ),
    (
        "unknown model architecture",
        CorruptModel,
        "This llama.cpp build does not support the model's architecture.",
        "Run `update` to get a newer llama.cpp build.",
    ),
    (
        "out of memory",
        ServerStartFailed,
        "The model does not fit in memory.",
        "Try a smaller quant or model, or a smaller context (--ctx).",
    ),
    (
        "failed to allocate",
        ServerStartFailed,
        "The model does not fit in memory.",
        "Try a smaller quant or model, or a smaller context (--ctx).",
    ),
)


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
    build: str = ""
    api_key_required: bool = False  # clients must send the keyring's key (never stored here)
    router: bool = False  # router mode: `model` is the one asked for last; the router says what is loaded
    exe_id: list[int] | None = None  # the executable's (device, inode) at start: what the process runs
    stopping: bool = False  # a stop is under way: the process's exit is intended, not a crash
    threads: int = 0  # --threads as asked at serve (0: the setting's): a restart on another model keeps it
    # The Host-checking front on host:port (host_guard); llama-server listens on `upstream`, a UNIX socket.
    # guard_pid 0: a server started before the front existed, listening on host:port itself.
    guard_pid: int = 0
    guard_create_time: float = 0.0
    upstream: str = ""

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


@dataclass
class ServerStatus:
    state: str  # "running", "starting", "stopping", "stopped", "crashed"
    running: bool  # a server process of ours is up (a router whose model crashed is "crashed" and running)
    pid: int | None = None
    endpoint: str | None = None  # OpenAI-compatible base URL (…/v1)
    host: str | None = None  # the address it was told to bind
    listening: list[str] | None = None  # the TCP addresses it actually listens on, as the kernel says
    port: int | None = None
    model: str | None = None
    model_path: str | None = None
    build: str | None = None
    ctx_size: int | None = None
    rss_bytes: int | None = None
    gpu_memory_bytes: int | None = None
    uptime_s: float | None = None
    started_at: str | None = None
    log_path: str | None = None
    ram_total_bytes: int = 0
    ram_available_bytes: int = 0
    ram_used_percent: float = 0.0
    api_key_required: bool = False  # clients send `Authorization: Bearer <key>` (see `api-key --show`)
    router: bool = False  # requests name their model; `models` lists the ones this server can load
    models: list[str] | None = None
    asleep: bool = False  # idle unload freed the model's memory; the next request wakes it
    message: str = ""


# ---- state file -------------------------------------------------------------------------------------------


def current_state() -> ServerState | None:
    """The state file's contents, or None. Says nothing about whether the process still lives."""
    path = config.paths().state_file
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return ServerState(**data)
    except FileNotFoundError:
        return None
    except (ValueError, TypeError):
        # A damaged state file cannot name a process we may signal; treat it as no server.
        return None


def _write_state(state: ServerState) -> None:
    _write_atomically(config.paths().state_file, json.dumps(asdict(state), indent=2))


def _write_atomically(path: Path, text: str) -> None:
    files.write_atomically(path, text)


def note_loaded(model: str, model_path: str) -> None:
    """A router switched to ``model``: the state file names it, so a crash report or a restart means it."""
    state = current_state()
    if state is not None:
        state.model, state.model_path = model, model_path
        _write_state(state)


def _clear_state() -> None:
    config.paths().state_file.unlink(missing_ok=True)


def owned_process(state: ServerState) -> psutil.Process | None:
    """The live process the state file describes, or None if it is gone or the pid now belongs to another
    program."""
    try:
        proc = psutil.Process(state.pid)
        if abs(proc.create_time() - state.create_time) > 0.05:
            return None
        if not _runs_our_binary(proc, state):
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def _runs_our_binary(proc: psutil.Process, state: ServerState) -> bool:
    """The process runs the very file we started, compared as a file (device and inode): its name and argv[0]
    are whatever it chose, and `update` renames the folder of a build that still runs."""
    try:
        running = _executable_id(proc)
        started = state.exe_id or _file_id(state.binary)  # a state file from before exe_id was recorded
    except (OSError, psutil.Error):
        return False
    return running == list(started)


def _executable_id(proc: psutil.Process) -> list[int]:
    # Linux: the kernel's link to the executable, which stays right when the file is renamed or replaced.
    linux_exe = f"/proc/{proc.pid}/exe"
    return _file_id(linux_exe if os.path.exists("/proc/self/exe") else proc.exe())


def _file_id(path: str | Path) -> list[int]:
    found = os.stat(path)
    return [found.st_dev, found.st_ino]


# ---- status -------------------------------------------------------------------------------------------------


def status(*, probe_health: bool = True) -> ServerStatus:
    """Cheap: one state-file read, a few /proc reads and (optionally) one local HTTP request."""
    mem = hardware.memory()
    base = {
        "ram_total_bytes": mem.total,
        "ram_available_bytes": mem.available,
        "ram_used_percent": round(mem.percent_used, 1),
    }
    state = current_state()
    if state is None:
        return ServerStatus(state="stopped", running=False, **base)
    described = dict(
        pid=state.pid,
        host=state.host,
        port=state.port,
        model=state.model,
        model_path=state.model_path,
        build=state.build,
        ctx_size=state.ctx_size,
        log_path=state.log_path,
        started_at=_iso(state.create_time),
        api_key_required=state.api_key_required,
        **base,
    )
    proc = owned_process(state)
    if state.stopping:  # whoever polls between the exit and the state file's removal sees a stop, not a crash
        if proc is None:
            return ServerStatus(state="stopped", running=False, **base)
        return ServerStatus(state="stopping", running=True, endpoint=f"{state.base_url}/v1", **described)
    if proc is None:
        return ServerStatus(
            state="crashed",
            running=False,
            **described,
            message=f"llama-server (pid {state.pid}) is no longer running; its log is {state.log_path}",
        )
    if not _front_up(state):
        return ServerStatus(
            state="crashed",
            running=False,
            **described,
            message=f"The server's Host-checking front (pid {state.guard_pid}) is no longer "
            f"running, so nothing answers on port {state.port}; its log is {state.log_path}",
        )
    children = _child_pids(proc)  # a router's model instances
    try:
        rss = _tree_rss(proc, children) + _front_rss(state)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return ServerStatus(
            state="crashed",
            running=False,
            **described,
            message=f"llama-server (pid {state.pid}) exited just now; its log is {state.log_path}",
        )
    healthy = _health(state.base_url) == 200 if probe_health else True
    current = "running" if healthy else "starting"
    message = ""
    if state.router:
        described["router"] = True
        # A liveness poll asks the router only when its model instance is gone (crashed, or unloaded).
        if healthy and (probe_health or not children):
            current, message = _router_view(state, described)
    # Where it really listens: read with the health probe only, as it scans the system's socket tables (~15 ms),
    # too dear for the tray's 2-second liveness poll. A router's children bind 127.0.0.1 themselves.
    addresses = listening.tcp_listen_addresses(listening_pids(state)) if probe_health else None
    exposed = [str(a) for a in addresses or [] if not a.loopback] if launch.is_loopback(state.host) else []
    if exposed:  # told to stay on this machine, yet reachable from others (e.g. a flag that overrode --host)
        warning = (
            f"The server listens on {', '.join(exposed)}, not only on {state.host}: other machines can "
            "reach it. Run `aidevops-local stop`."
        )
        message = f"{message} {warning}".strip()
    return ServerStatus(
        state=current,
        running=True,
        **described,
        message=message,
        listening=None if addresses is None else [str(a) for a in addresses],
        endpoint=f"{state.base_url}/v1",
        rss_bytes=rss,
        gpu_memory_bytes=_gpu_memory([proc.pid, *children]) if state.gpu_layers else None,
        # The kernel's start time, not the clock of whichever process ran serve.
        uptime_s=round(max(0.0, time.time() - state.create_time), 1),
    )


def _router_view(state: ServerState, described: dict) -> tuple[str, str]:
    """A router's model is whichever it has loaded (a request naming another one switches it), so ask it.
    Fills in model, model_path and models; returns the state and a message."""
    from . import router

    available = router.models(state.base_url, headers=api_key.headers(required=state.api_key_required))
    if available is None:
        return "running", ""
    described["models"] = [m.id for m in available]
    for ready in (True, False):  # what it serves, else what it is loading
        found = next((m for m in available if (m.serving if ready else m.state == "loading")), None)
        if found is not None:
            described.update(
                model=found.id,
                model_path=found.path,
                ctx_size=found.ctx_size or state.ctx_size,
                asleep=found.state == "sleeping",
            )
            return ("running" if ready else "starting"), ""
    failed = next((m for m in available if m.failed and m.id == state.model), None)
    if failed is not None:  # the router runs on, but the model it served exited on its own
        described.update(model=failed.id, model_path=failed.path)
        return "crashed", (
            f"{failed.id} stopped unexpectedly (exit status {failed.exit_code}); the server "
            f"still runs and loads it again on request. Its log is {state.log_path}"
        )
    described.update(model=None, model_path=None)
    return "running", "No model is loaded; a request that names one loads it."


def _child_pids(proc: psutil.Process) -> list[int]:
    """A router's model instances: its children. Linux lists each thread's children in /proc (about 0.1 ms,
    where psutil scans every process, and status runs on every poll); elsewhere, or without that file
    (a kernel built without CONFIG_PROC_CHILDREN), psutil."""
    pids: list[int] = []
    listed = False
    try:
        tasks = os.listdir(f"/proc/{proc.pid}/task")
    except OSError:
        tasks = []
    for task in tasks:
        try:
            with open(f"/proc/{proc.pid}/task/{task}/children", encoding="ascii") as f:
                pids += [int(pid) for pid in f.read().split()]
            listed = True
        except (OSError, ValueError):
            continue
    if listed:
        return pids
    try:
        return [child.pid for child in proc.children()]
    except psutil.Error:
        return []


def _tree_rss(proc: psutil.Process, children: list[int]) -> int:
    """The server's memory: its own and, in router mode, that of the model instances it spawned."""
    total = proc.memory_info().rss
    for pid in children:
        try:
            total += psutil.Process(pid).memory_info().rss
        except psutil.Error:
            pass  # exited between the listing and the read
    return total


def listening_pids(state: ServerState) -> list[int]:
    """The processes that may hold our sockets: the front (the public port) and llama-server (its private
    socket; a TCP port of its own only where something overrode the plan)."""
    return [pid for pid in (state.guard_pid, state.pid) if pid]


def _front_up(state: ServerState) -> bool:
    return not state.guard_pid or host_guard.owned(state.guard_pid, state.guard_create_time) is not None


def _front_rss(state: ServerState) -> int:
    front = host_guard.owned(state.guard_pid, state.guard_create_time)
    try:
        return front.memory_info().rss if front else 0
    except psutil.Error:
        return 0


def _health(base_url: str, timeout: float = 0.5) -> int | None:
    answer = local_http.get(base_url, "/health", timeout=timeout)
    return answer[0] if answer else None


def _gpu_memory(pids: list[int]) -> int | None:
    """The server's own VRAM use (its processes' together), as the backend registry's readers find it
    (NVIDIA: NVML, else nvidia-smi); None where none can say."""
    return backends.memory_in_use(pids)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


# ---- start --------------------------------------------------------------------------------------------------

# Secrets of the tool that llama-server never needs: they are taken out of its environment.
_TOOL_SECRETS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "GITHUB_TOKEN")


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
    (read once where its command began), else read here."""
    settings = settings or config.load_settings()
    with start_lock(progress):
        _refuse_if_running(settings)
        plan = launch.plan_launch(model, port=port, ctx=ctx, host=host, threads=threads, settings=settings)
        return _start(plan, settings, progress, timeout)


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
        state = current_state()
        if state is None or owned_process(state) is None:
            return serve(model, progress=progress, settings=settings)
        plan = launch.plan_launch(
            model, port=state.port, host=state.host, threads=state.threads or None, settings=settings
        )
        if plan.api_key_required:
            api_key.ensure()  # a keyring that refuses does so while the old server still runs
        check_cancelled(cancel)
        report(progress, f"Stopping {state.model}", 0, None, unit="step")
        stop(grace=settings.stop_grace_s)
        try:
            return _start(plan, settings, progress, None)
        except Exception:
            _start_again(state, settings)
            raise


def _start_again(previous: ServerState, settings: config.Settings) -> None:
    """Best effort: the server a failed replacement stopped, as it was (model, host, port, threads)."""
    model = previous.model_path if Path(previous.model_path).is_file() else previous.model
    try:
        plan = launch.plan_launch(
            model, port=previous.port, host=previous.host, threads=previous.threads or None, settings=settings
        )
        _start(plan, settings, None, None)
    except (LocalModelsError, OSError):
        pass  # the replacement's error is the one to report


def _refuse_if_running(settings: config.Settings) -> None:
    existing = current_state()
    if existing and owned_process(existing) and _front_up(existing):
        raise ServerStartFailed(
            f"A server is already running: {_served_model(existing) or 'no model loaded'} at "
            f"{existing.base_url}/v1 (pid {existing.pid}).",
            hint="Use the running one, or run `aidevops-local stop` first.",
        )
    if existing:
        _stop_leftovers(existing, settings.stop_grace_s)


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
        _write_atomically(plan.preset_path, plan.preset)
    log_path, session_id, started = _open_log(plan)
    env = _server_env(plan.binary, key=key or run_key)
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
        exe_id=_started_executable_id(child, plan.binary),
        threads=plan.threads or 0,
        guard_pid=front.pid,
        guard_create_time=psutil.Process(front.pid).create_time(),
        upstream=plan.upstream,
    )
    _write_state(state)
    try:
        _wait_healthy(proc, state, timeout or settings.health_timeout_s, progress)
    except BaseException:
        host_guard.stop(state.guard_pid, state.guard_create_time)
        _terminate_group(proc.pid, grace=2.0)
        proc.wait(timeout=5)
        host_guard.remove_socket(state.upstream)
        _clear_state()
        raise
    return status()


def _started_executable_id(child: psutil.Process, binary: Path) -> list[int] | None:
    try:
        return _executable_id(child)
    except (OSError, psutil.Error):  # it exited already: the start fails, and says why, just after
        try:
            return _file_id(binary)
        except OSError:
            return None


def _start_front(
    listen, plan: launch.LaunchPlan, settings: config.Settings, proc: subprocess.Popen, log, run_key: str
) -> subprocess.Popen:
    """The Host-checking front on the public socket, forwarding to llama-server's; if it cannot start,
    llama-server does not stay behind."""
    env = {k: v for k, v in os.environ.items() if k not in _TOOL_SECRETS}
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
        )
    except BaseException:
        _terminate_group(proc.pid, grace=2.0)
        proc.wait(timeout=5)
        raise


def _stop_leftovers(state: ServerState, grace: float) -> None:
    """What a crash left of an earlier run: its front (which holds the port) or its llama-server (whose front
    died). Each is signalled only if it is ours."""
    host_guard.stop(state.guard_pid, state.guard_create_time)
    if owned_process(state) is not None:
        _terminate_group(state.pid, grace=grace)
    host_guard.remove_socket(state.upstream)
    _clear_state()


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
    )
    with files.disk_full_is_ours(f"starting the server (its log {path})"), open(path, "a", encoding="utf-8") as log:
        log.write(header)
    return path, session_id, started


def _server_env(binary: Path, *, key: str | None = None) -> dict[str, str]:
    """The server's environment: ours, less the tool's secrets, plus the API key when one is required."""
    env = dict(os.environ)
    # Official builds find their libraries through $ORIGIN; a system loader path set for another build
    # must not shadow them.
    lib_dir = str(binary.parent)
    var = "DYLD_LIBRARY_PATH" if hardware.os_name() == "darwin" else "LD_LIBRARY_PATH"
    env[var] = os.pathsep.join(filter(None, [lib_dir, env.get(var)]))
    for secret in _TOOL_SECRETS:
        env.pop(secret, None)  # llama-server needs none of them
    if key:
        env[api_key.ENV_VAR] = key
    return env


def _wait_healthy(
    proc: subprocess.Popen, state: ServerState, timeout: float, progress: ProgressCallback | None
) -> None:
    started = time.monotonic()
    deadline = started + timeout
    task = f"Loading {state.model}"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise _start_failure(state, proc.returncode)
        if not _front_up(state) and proc.poll() is None:  # (the front also ends when llama-server does)
            raise ServerStartFailed(
                "The server's Host-checking front exited during start.",
                hint=f"Its log is {state.log_path}.",
                details=log_tail(Path(state.log_path)),
            )
        if _health(state.base_url, timeout=1.0) == 200 and _model_ready(state):
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
    from . import router

    available = (
        router.models(state.base_url, timeout=1.0, headers=api_key.headers(required=state.api_key_required)) or []
    )
    found = next((m for m in available if m.id == state.model), None)
    if found is not None and found.state == "unloaded" and found.failed:
        raise _start_failure(state, found.exit_code if found.exit_code is not None else -1)
    return found is not None and found.serving


def _start_failure(state: ServerState, returncode: int) -> ServerStartFailed:
    """Why a start failed, from the log: the server exited, or a router's model instance did. The line
    that says why can trail the exit (a router relays its instance's output), so it is waited for a moment.
    A taken port is not among the causes: the front binds it before llama-server starts."""
    deadline = time.monotonic() + 2.0
    while True:
        # A router logs its own shutdown after its instance's error: look further back than the tail we show,
        # and show the lines that end with the one that explains.
        lines = log_tail(Path(state.log_path), lines=4 * LOG_TAIL_LINES).splitlines()
        for needle, kind, message, hint in _START_FAILURES:  # in order: the first kind found explains
            found = [i for i, line in enumerate(lines) if needle in line.lower()]
            if found:
                tail = "\n".join(lines[max(0, found[-1] + 1 - LOG_TAIL_LINES) : found[-1] + 1])
                return kind(f"{message} (llama-server exited with status {returncode})", hint=hint, details=tail)
        tail = "\n".join(lines[-LOG_TAIL_LINES:])
        if time.monotonic() > deadline:
            return ServerStartFailed(
                f"llama-server exited during start with status {returncode}.",
                hint=f"Its log is {state.log_path}.",
                details=tail,
            )
        time.sleep(0.1)


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a server log, for error messages. Our own header line is left out."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    kept = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith(request_log.HEADER_PREFIX)]
    return "\n".join(kept[-lines:])


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
    state = current_state()
    if state is None:
        return StopResult(stopped=False, pid=None, model=None, message="No server is running.")
    if grace is None:
        grace = (settings or config.load_settings()).stop_grace_s
    proc = owned_process(state)
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
    state.stopping = True  # marked before any signal: a poll from now on sees a stop, never a crash
    _write_state(state)
    host_guard.stop(state.guard_pid, state.guard_create_time)  # first: no new request reaches the server
    forced = _terminate_group(state.pid, grace=grace)
    if (current := current_state()) is None or current.pid == state.pid:  # not a start's that came since
        host_guard.remove_socket(state.upstream)
        _clear_state()
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
    from . import router

    available = router.models(state.base_url, headers=api_key.headers(required=state.api_key_required))
    if available is None:
        return state.model  # not answering: the one asked for last is the best we know
    return next((m.id for m in available if m.serving or m.state == "loading"), None)


def _terminate_group(pid: int, *, grace: float) -> bool:
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


def _ingest_usage() -> str:
    """Account for finished requests. A failure here must not block a start or a stop: the logs stay on
    disk and the next ingest picks them up. Returns a warning for the user, or ""."""
    from ..accounting import usage
    from ..system.errors import LocalModelsError

    try:
        usage.ingest()
    except LocalModelsError as exc:
        return f"Usage was not recorded this time: {exc.message}"
    return ""


def require_running() -> ServerState:
    state = current_state()
    if state is None or owned_process(state) is None:
        raise ServerNotRunning("No server is running.", hint="Start one with `aidevops-local serve`.")
    return state
