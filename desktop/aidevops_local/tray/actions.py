"""The tray's actions, listed once: the menu (menu.py) and the no-tray window (control_window.py) both build
from this table, so an action is offered, labelled and enabled by one rule wherever it appears.

Each action: its id (the menu item's and the window button's object name), its label, when it is shown and
when it is enabled for a snapshot and what the tray is busy with, and the controller method it calls.
Labels name what they act on ("Start Llama 3.2 3B Instruct"), in the names people recognise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from ..core.serving.state import ServerPhase
from ..core.system.units import human_bytes
from .snapshot import ModelEntry, Snapshot


class View(NamedTuple):
    """What an action's rules look at: the snapshot, the running job ("" when idle), the last start failure,
    a free port offered after the configured one was taken, and whether the endpoint was copied just now."""

    snap: Snapshot
    busy: str = ""
    last_error: str = ""
    free_port: int | None = None
    copied: bool = False


Rule = Callable[[View], bool]


def view_of(ctl) -> View:
    """The view a controller (the tray app, a test's fake) is in now."""
    return View(ctl.snapshot, ctl.busy, ctl.last_error, getattr(ctl, "free_port", None), getattr(ctl, "copied", False))


def _always(_v: View) -> bool:
    return True


def _running(v: View) -> bool:
    return v.snap.status.running


def _crashed(v: View) -> bool:
    return v.snap.status.state == ServerPhase.CRASHED


def _can_start(v: View) -> bool:
    # Busy blocks a second start (or switch) while one is under way; a start needs a runtime and a model.
    return v.snap.runtime_installed and bool(v.snap.models) and not v.busy


def _has_stale(v: View) -> bool:
    return bool(v.snap.stale and v.snap.stale.count)


def _loaded_in_router(v: View) -> bool:
    """A router serves a model: it can unload it and keep running (the next request loads it again)."""
    return v.snap.router_active and bool(v.snap.served) and v.snap.status.state == ServerPhase.RUNNING


def _pressed(v: View) -> bool:
    return v.snap.pressure != "normal" and v.snap.status.running


def smaller_model(snap: Snapshot) -> ModelEntry | None:
    """The largest model that fits and is smaller than the one served: what to switch to under pressure."""
    served = snap.model(snap.served[0]) if snap.served else None
    if served is None or not served.size_bytes:
        return None
    smaller = [m for m in snap.models if m.fits is not False and 0 < m.size_bytes < served.size_bytes]
    return max(smaller, key=lambda m: m.size_bytes, default=None)


@dataclass(frozen=True)
class Action:
    id: str
    label: str
    handler: str  # the controller's method
    enabled: Rule = _always
    shown: Rule = _always  # hidden rather than greyed out (the menu leaves it out, the window hides it)
    group: int = 0  # the menu puts a separator between groups
    shortcut: str = ""  # the window's keyboard shortcut

    def text(self, snap: Snapshot, view: View | None = None) -> str:
        """The label for this snapshot: Start names its model, a crashed server offers a restart, the clean-up
        names what it frees, copy shows the endpoint (and says when it was copied)."""
        view = view or View(snap)
        if self.id == "start":
            crashed = snap.status.state == ServerPhase.CRASHED
            name = snap.title(snap.status.model if crashed else snap.start_model)
            verb = "Restart" if crashed else "Start"
            return f"{verb} {name}" if name else f"{verb} server"
        if self.id == "cleanup" and snap.stale and snap.stale.count:
            n = snap.stale.count
            return f"Clean up {n} unused model{'s' if n != 1 else ''} ({human_bytes(snap.stale.size_bytes)})…"
        if self.id == "copy" and snap.status.endpoint and snap.status.running:
            return f"{'Copied' if view.copied else 'Copy'} {snap.status.endpoint}"
        if self.id == "unload" and snap.served:
            return f"Unload {snap.title(snap.served[0])} (keep the server)"
        if self.id == "smaller" and (smaller := smaller_model(snap)) is not None:
            return f"Switch to {smaller.title} ({human_bytes(smaller.size_bytes)})"
        if self.id == "use_port" and view.free_port:
            return f"Use port {view.free_port}"
        if self.id == "about":
            from .. import __version__  # read when first shown: importlib.metadata stays out of the idle tray

            return f"About aidevops Local Models {__version__}"
        return self.label

    def slot(self, ctl, snap: Snapshot) -> Callable:
        """The controller method this action calls now, with what it acts on."""
        if self.id == "start" and snap.status.state == ServerPhase.CRASHED:
            return ctl.restart_server
        if self.id == "smaller" and (smaller := smaller_model(snap)) is not None:
            return lambda: ctl.switch_model(smaller.name)
        if self.id == "use_port":
            return lambda: ctl.use_port(getattr(ctl, "free_port", None))
        return getattr(ctl, self.handler)


ACTIONS: tuple[Action, ...] = (
    # A router whose model crashed still runs: it offers both Restart and Stop.
    Action(
        "start",
        "Start server",
        "start_server",
        _can_start,
        shown=lambda v: _crashed(v) or not _running(v),
        shortcut="Ctrl+R",
    ),
    Action("use_port", "Use another port", "use_port", lambda v: not v.busy, shown=lambda v: bool(v.free_port)),
    Action("stop", "Stop server", "stop_server", shown=_running, shortcut="Ctrl+T"),
    Action("unload", "Unload model", "unload_model", lambda v: not v.busy, shown=_loaded_in_router),
    Action(
        "smaller",
        "Switch to a smaller model",
        "switch_model",
        lambda v: not v.busy,
        shown=lambda v: _pressed(v) and smaller_model(v.snap) is not None,
    ),
    Action("switch", "Switch model", "switch_model", lambda v: bool(v.snap.models) and not v.busy),
    Action(
        "chat",
        "Open chat in browser",
        "open_chat",
        lambda v: v.snap.status.state == ServerPhase.RUNNING,
        shortcut="Ctrl+O",
    ),
    Action("copy", "Copy API endpoint", "copy_endpoint", _running, shortcut="Ctrl+Shift+C"),
    Action("show_log", "Show log…", "show_log", group=1, shortcut="Ctrl+L"),
    Action("folder", "Open models folder", "open_models_folder", group=1),
    Action("models", "Models…", "open_models", group=1, shortcut="Ctrl+M"),
    Action("download", "Download a model…", "open_download", group=1, shortcut="Ctrl+D"),
    Action("usage", "Usage…", "open_usage", group=1),
    Action("cleanup", "Clean up…", "open_cleanup", _has_stale, shown=_has_stale, group=1),
    Action("settings", "Settings…", "open_settings", group=1, shortcut="Ctrl+,"),
    Action("wizard", "Setup wizard…", "open_wizard", group=1),
    Action("updates", "Check for updates…", "check_updates", lambda v: not v.busy, group=2),
    Action("about", "About aidevops Local Models", "show_about", group=2),
    Action("quit", "Quit", "quit", group=2, shortcut="Ctrl+Q"),
)
BY_ID = {a.id: a for a in ACTIONS}


def offered(view: View) -> dict[str, bool]:
    """Each shown action's id and whether it is enabled: what both the menu and the window present."""
    return {a.id: a.enabled(view) for a in ACTIONS if a.shown(view)}
