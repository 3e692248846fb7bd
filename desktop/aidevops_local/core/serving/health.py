"""What the server is doing now: status(), cheap enough for the tray's 2-second poll, and its probes (health,
a router's loaded model, memory, where it listens). It reads the state file through state and changes nothing."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import psutil

from ..system import backends, hardware, listening, local_http
from . import api_key, host_guard, launch, router
from . import state as server_state
from .state import ServerPhase, ServerState


@dataclass
class ServerStatus:
    state: ServerPhase
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
    # Each model's names, its own first: what a request's "model" may say (its file's stem, a catalog short name).
    names: dict[str, list[str]] | None = None
    name_notes: list[str] | None = None  # an alias several models claimed: which one it went to
    asleep: bool = False  # idle unload freed the model's memory; the next request wakes it
    # Workers whose memory the run pools (rpc/pool.py): worker, endpoint, via, devices, free_bytes at start,
    # answers (its RPC server, or the tunnel to it, accepts connections now), left_out with why.
    workers: list[dict] | None = None
    plan_line: str = ""  # where the layers went and why, as planned at start
    message: str = ""


def status(*, probe_health: bool = True) -> ServerStatus:
    """Cheap: one state-file read, a few /proc reads and (optionally) one local HTTP request."""
    mem = hardware.memory()
    base = {
        "ram_total_bytes": mem.total,
        "ram_available_bytes": mem.available,
        "ram_used_percent": round(mem.percent_used, 1),
    }
    state = server_state.read()
    if state is None:
        return ServerStatus(state=ServerPhase.STOPPED, running=False, **base)
    described = _described(state, base)
    proc = server_state.owned_process(state)
    if (
        state.phase == ServerPhase.STOPPING
    ):  # whoever polls between the exit and the state file's removal sees a stop, not a crash
        if proc is None:
            return ServerStatus(state=ServerPhase.STOPPED, running=False, **base)
        return ServerStatus(state=ServerPhase.STOPPING, running=True, endpoint=f"{state.base_url}/v1", **described)
    if proc is None:
        return _crashed(described, f"llama-server (pid {state.pid}) is no longer running; its log is {state.log_path}")
    if not front_up(state):
        return _crashed(
            described,
            f"The server's Host-checking front (pid {state.guard_pid}) is no longer "
            f"running, so nothing answers on port {state.port}; its log is {state.log_path}",
        )
    children = _child_pids(proc)  # a router's model instances
    try:
        rss = _tree_rss(proc, children) + _front_rss(state)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return _crashed(described, f"llama-server (pid {state.pid}) exited just now; its log is {state.log_path}")
    return _alive(state, described, proc, children, rss, probe_health)


def served_now() -> ServerState | None:
    """What our server serves at this moment, for the checks before a model's files are deleted. A router's
    is the model it has loaded, asked of the router: a client's request may have loaded another since the
    state file named one. Where the router cannot say or has none loaded, the state file's. None when no
    server of ours runs."""
    state = server_state.running()
    if state is None or not state.router:
        return state
    available = router.models(state.base_url, headers=api_key.headers(required=state.api_key_required))
    found = next((m for m in available or [] if m.serving or m.state == "loading"), None)
    return replace(state, model=found.id, model_path=found.path) if found is not None and found.path else state


def _described(state: ServerState, base: dict) -> dict:
    """The fields a status takes from the state file, whatever the phase."""
    return dict(
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
        names={state.model: [state.model, *(state.aliases or {}).get(state.model, [])]} if state.model else None,
        name_notes=state.name_notes or None,
        workers=_workers_now(state),
        plan_line=state.plan_line,
        **base,
    )


def _workers_now(state: ServerState) -> list[dict] | None:
    if not state.workers:
        return None
    from ..rpc import worker  # only a run with workers pays for it

    out = []
    for recorded in state.workers:
        if not isinstance(recorded, dict):
            continue
        shown = {k: v for k, v in recorded.items() if k != "tunnel"}
        host, _, port = str(recorded.get("endpoint", "")).rpartition(":")
        if not recorded.get("left_out"):
            shown["answers"] = port.isdigit() and worker.answers(host, int(port), timeout=0.3)
        out.append(shown)
    return out


def _crashed(described: dict, message: str) -> ServerStatus:
    return ServerStatus(state=ServerPhase.CRASHED, running=False, **described, message=message)


def _alive(
    state: ServerState, described: dict, proc: psutil.Process, children: list[int], rss: int, probe_health: bool
) -> ServerStatus:
    """The status of a server whose processes are ours and up: starting until /health answers."""
    healthy = probe(state.base_url) == 200 if probe_health else True
    current = ServerPhase.RUNNING if healthy else ServerPhase.STARTING
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
    if lost := [w["worker"] for w in described.get("workers") or [] if w.get("answers") is False]:
        message = (
            f"{message} Worker {', '.join(lost)} stopped answering; a restart plans without it "
            "(the tray and `serve --supervise` restart on their own)."
        ).strip()
    return ServerStatus(
        state=current,
        running=True,
        **described,
        message=message,
        listening=None if addresses is None else [str(a) for a in addresses],
        endpoint=f"{state.base_url}/v1",
        rss_bytes=rss,
        gpu_memory_bytes=backends.memory_in_use([proc.pid, *children]) if state.gpu_layers else None,
        # The kernel's start time, not the clock of whichever process ran serve.
        uptime_s=round(max(0.0, time.time() - state.create_time), 1),
    )


def _router_view(state: ServerState, described: dict) -> tuple[ServerPhase, str]:
    """A router's model is whichever it has loaded (a request naming another one switches it), so ask it.
    Fills in model, model_path and models; returns the phase and a message."""
    available = router.models(state.base_url, headers=api_key.headers(required=state.api_key_required))
    if available is None:
        return ServerPhase.RUNNING, ""
    described["models"] = [m.id for m in available]
    known = state.aliases or {}  # what the front resolves, where the router cannot
    described["names"] = {m.id: [m.id, *(m.aliases or known.get(m.id, []))] for m in available}
    for ready in (True, False):  # what it serves, else what it is loading
        found = next((m for m in available if (m.serving if ready else m.state == "loading")), None)
        if found is not None:
            described.update(
                model=found.id,
                model_path=found.path,
                ctx_size=found.ctx_size or state.ctx_size,
                asleep=found.state == "sleeping",
            )
            return (ServerPhase.RUNNING if ready else ServerPhase.STARTING), ""
    failed = next((m for m in available if m.failed and m.id == state.model), None)
    if failed is not None:  # the router runs on, but the model it served exited on its own
        described.update(model=failed.id, model_path=failed.path)
        return ServerPhase.CRASHED, (
            f"{failed.id} stopped unexpectedly (exit status {failed.exit_code}); the server "
            f"still runs and loads it again on request. Its log is {state.log_path}"
        )
    described.update(model=None, model_path=None)
    return ServerPhase.RUNNING, "No model is loaded; a request that names one loads it."


def model_memory(model_path: str) -> tuple[int | None, int | None] | None:
    """RSS and GPU memory of the process of ours that serves the model file ``model_path`` now (a router's
    instance for it, or a single-model server), for usage's measurements; None when none does."""
    state = server_state.read()
    proc = server_state.owned_process(state) if state is not None else None
    if proc is None:
        return None
    for pid in _child_pids(proc) if state.router else [proc.pid]:
        try:
            child = psutil.Process(pid)
            args = child.cmdline()
            if not _loads(args, model_path):
                continue
            offloaded = next((a for f, a in zip(args, args[1:]) if f in ("--n-gpu-layers", "-ngl")), "0") != "0"
            return child.memory_info().rss, backends.memory_in_use([pid]) if offloaded else None
        except psutil.Error:
            continue  # exited between the listing and the read
    return None


def _loads(args: list[str], model_path: str) -> bool:
    given = next((a for f, a in zip(args, args[1:]) if f in ("--model", "-m")), None)
    return given is not None and os.path.abspath(given) == os.path.abspath(model_path)


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


def front_up(state: ServerState) -> bool:
    return not state.guard_pid or host_guard.owned(state.guard_pid, state.guard_create_time) is not None


def _front_rss(state: ServerState) -> int:
    front = host_guard.owned(state.guard_pid, state.guard_create_time)
    try:
        return front.memory_info().rss if front else 0
    except psutil.Error:
        return 0


def probe(base_url: str, timeout: float = 0.5) -> int | None:
    answer = local_http.get(base_url, "/health", timeout=timeout)
    return answer[0] if answer else None


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")
