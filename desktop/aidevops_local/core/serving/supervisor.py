"""Supervision of the server: telling a crash from a stop, restarting with backoff, and switching model.

The policy is plain code with an injected clock, so the tray (which drives it from its poll timer) and the
CLI's `serve --supervise` (which drives it from a loop) decide alike, and tests check it without sleeping.
It reads status snapshots (server.status()): a server that exits while a stop is under way is "stopping",
then "stopped", never "crashed"; only an exit nobody asked for is a crash. A crash is restarted after the
next backoff delay; after the last one it is left for the user. Running for a while resets the backoff.

Switching model lives here too, above both router (a plain client of llama-server's /models endpoints) and
server (starts and stops): a load request to a running router that lists the model, else a restart.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..models import library
from ..system import config
from ..system.errors import LocalModelsError, ModelNotFound
from ..system.progress import ProgressCallback, check_cancelled
from . import api_key, failures, router, server
from . import state as server_state
from .state import ServerPhase

RESTART_BACKOFF_S = (2, 5, 15, 60)  # one delay per automatic try; after the last, the user decides
RESTART_STABLE_S = 600.0  # running this long resets the backoff


@dataclass(frozen=True)
class Crash:
    """A server that exited on its own, and what the policy does about it."""

    model: str | None
    port: int | None
    pid: int | None
    restart_in: float | None  # seconds until the automatic restart; None: none (off, or the tries ran out)
    attempt: int = 0  # which automatic try the restart will be (1-based); 0 when there is none
    gave_up: bool = False  # automatic restarts were asked for, and every try is spent
    lost_workers: tuple[str, ...] = ()  # pooled workers that stopped answering (core/rpc): the likely cause

    @property
    def body(self) -> str:
        """The notification's text."""
        text = f"{self.model} on port {self.port} exited."
        if self.lost_workers:
            text += f" Worker {', '.join(self.lost_workers)} stopped answering."
        if self.restart_in is not None:
            text += f" Restarting in {self.restart_in:g} s" + (" without it." if self.lost_workers else ".")
        return text


class Supervisor:
    """Fed status snapshots in order; says when one shows a crash, and when to restart it."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        backoff: tuple[float, ...] | None = None,
        stable_s: float | None = None,
    ):
        self.clock = clock
        self.backoff = RESTART_BACKOFF_S if backoff is None else backoff
        self.stable_s = RESTART_STABLE_S if stable_s is None else stable_s
        self.restarts = 0  # automatic tries since the server last ran long enough
        self.due_at: float | None = None  # when the pending automatic restart is due
        self.due_model: str | None = None
        self._last: server.ServerStatus | None = None
        self._running_since: float | None = None

    def observe(self, status: server.ServerStatus, *, acting: bool = False, auto_restart: bool = True) -> Crash | None:
        """The next snapshot. ``acting``: a start, stop or switch of ours is under way, so an exit is ours.
        Returns the crash this snapshot shows, with the restart decided, or None."""
        prev, self._last = self._last, status
        now = self.clock()
        crash = None
        if (
            prev is not None
            and prev.running
            and prev.state not in (ServerPhase.CRASHED, ServerPhase.STOPPING)
            and status.state == ServerPhase.CRASHED
            and not acting
        ):
            crash = self._crashed(status, now, auto_restart)
        if status.state == ServerPhase.RUNNING and (prev is None or prev.state != ServerPhase.RUNNING):
            self._running_since = now
        if status.state == ServerPhase.RUNNING and now - (self._running_since or now) > self.stable_s:
            self.restarts = 0
        return crash

    def _crashed(self, status: server.ServerStatus, now: float, auto_restart: bool) -> Crash:
        lost = tuple(w.get("worker", "") for w in status.workers or [] if w.get("answers") is False)
        described = dict(model=status.model, port=status.port, pid=status.pid, lost_workers=lost)
        if not auto_restart:
            return Crash(**described, restart_in=None)
        return self._next_try(described, now, status.model)

    def _next_try(self, described: dict, now: float, model: str | None) -> Crash:
        if self.restarts >= len(self.backoff):
            self.due_at = None
            return Crash(**described, restart_in=None, gave_up=True)
        delay = self.backoff[self.restarts]
        self.restarts += 1
        self.due_at, self.due_model = now + delay, model
        return Crash(**described, restart_in=delay, attempt=self.restarts)

    def restart_failed(self, status: server.ServerStatus) -> Crash:
        """An automatic restart that did not start: the next try after the next delay, or none left."""
        described = dict(model=self.due_model or status.model, port=status.port, pid=status.pid)
        return self._next_try(described, self.clock(), described["model"])

    def take_due(self) -> str | None:
        """The model to restart when the pending restart's time has come (once), else None."""
        if self.due_at is None or self.clock() < self.due_at:
            return None
        self.due_at = None
        return self.due_model or ""

    @staticmethod
    def may_restart(status: server.ServerStatus) -> bool:
        """Whether an automatic restart still makes sense: nothing runs that a start would refuse over."""
        return status.state in (ServerPhase.CRASHED, ServerPhase.STOPPED)


def restart(
    model: str | None,
    *,
    port: int | None = None,
    host: str | None = None,
    ctx: int | None = None,
    threads: int | None = None,
    progress: ProgressCallback | None = None,
    settings: config.Settings | None = None,
) -> server.ServerStatus:
    """After a crash: a start where the crashed server listened (unless told otherwise), or, where a router
    outlived its model's instance, a load request (unless a worker it pooled stopped answering: then a new
    start, whose plan leaves that worker out, or refuses when the model no longer fits). ``settings``: the
    caller's, else read when needed."""
    status = server.status(probe_health=False)
    lost = [w for w in status.workers or [] if w.get("answers") is False]
    if status.running and model and not lost:
        return switch_model(model, progress=progress, settings=settings)
    if lost and status.running:  # a worker is gone: start again, planned over the workers that answer
        server.stop(settings=settings)
    port, host = port or status.port, host or status.host
    if model and model == status.model and status.model_path and Path(status.model_path).is_file():
        model = status.model_path  # served from a path (not under the models folder): the same file again
    return server.serve(
        model or None, port=port, host=host, ctx=ctx, threads=threads, progress=progress, settings=settings
    )


# ---- supervising from the foreground (the CLI's `serve --supervise`) -----------------------------------------


def supervise(
    stop: threading.Event,
    restart_with: Callable[[str | None], server.ServerStatus],
    notify: Callable[[str, str], None],
    *,
    policy: Supervisor | None = None,
    poll_s: float = 1.0,
) -> str:
    """Watch the server until ``stop`` is set ("interrupted"), it is stopped from elsewhere ("stopped": a stop
    is never a crash), or the restart tries run out ("gave_up"). A crash is restarted through ``restart_with``
    (given the model) after the policy's delay; ``notify`` gets each event ("crash", "restarted", "failed")
    and a line saying it. Feed ``policy`` the status the start returned first, so an early crash counts."""
    policy = policy or Supervisor()
    after_failure = False  # a failed start leaves nothing behind: "stopped" then is not a stop from elsewhere
    while not stop.wait(poll_s):
        status = server.status(probe_health=False)
        crash = policy.observe(status)
        if crash is not None:
            notify("crash", _crash_line(crash))
            if crash.gave_up:
                return "gave_up"
        if status.state == ServerPhase.STOPPED and not after_failure:
            return "stopped"
        model = policy.take_due()
        if model is None or stop.is_set():
            continue
        try:
            policy.observe(restart_with(model or None))
            after_failure = False
            notify("restarted", f"Restarted {model or 'the server'} (try {policy.restarts} of {len(policy.backoff)}).")
        except LocalModelsError as exc:
            after_failure = True
            crash = policy.restart_failed(status)
            notify("failed", f"The restart failed: {exc.message} {_crash_line(crash)}".strip())
            if crash.gave_up:
                return "gave_up"
    return "interrupted"


def _crash_line(crash: Crash) -> str:
    if crash.gave_up:
        return f"{crash.model or 'The server'} exited again and no automatic restart tries are left."
    return crash.body


# ---- switching model ---------------------------------------------------------------------------------------


def switch_model(
    name: str,
    *,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    settings: config.Settings | None = None,
):
    """Serve ``name`` instead of what runs now: a load request to a running router that lists it, else a
    restart on the same host and port (server.replace_model: the old server stops only once the new start is
    planned, and comes back if it fails). A load that fails puts the previous model back (best effort) and
    raises with the log's tail. Returns the server's status afterwards. Holds the start lock throughout, so a
    start from elsewhere waits. ``settings``: the caller's, for a restart (else read then)."""
    with server_state.start_lock(progress, cancel):
        return _switch_locked(name, progress, cancel, settings)


def _switch_locked(
    name: str,
    progress: ProgressCallback | None,
    cancel: threading.Event | None,
    settings: config.Settings | None,
):
    state = server_state.running()
    if state is not None:
        headers = api_key.headers(required=state.api_key_required)
        available = router.models(state.base_url, headers=headers) if state.router else None
        local = library.resolve_model(name)
        target = _offered(available or [], local.name, local.path)
        if target is not None:
            before = next((m.id for m in available or [] if m.serving and m.id != target), None)
            try:
                router.load(state.base_url, target, progress=progress, cancel=cancel, headers=headers)
            except LocalModelsError as exc:
                exc.details = exc.details or failures.log_tail(Path(state.log_path))
                _put_back(state.base_url, before, headers)
                raise
            server_state.note_loaded(target, next(m.path for m in available if m.id == target))
            return server.status()
    check_cancelled(cancel)
    return server.replace_model(name, progress=progress, cancel=cancel, settings=settings)


def _offered(available: list[router.RouterModel], name: str, path: Path) -> str | None:
    try:
        return router.router_id(available, name, path)
    except ModelNotFound:
        return None  # not a router, or pulled after it started: a restart lists it


def _put_back(base_url: str, previous: str | None, headers: dict[str, str] | None) -> None:
    if previous is None:
        return
    try:
        router.load(base_url, previous, headers=headers)
    except LocalModelsError:
        pass  # the server stays up with nothing loaded; the original error is the one to report
