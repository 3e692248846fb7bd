"""The tray's actions, listed once: the menu (menu.py) and the no-tray window (control_window.py) both build
from this table, so an action is offered, labelled and enabled by one rule wherever it appears.

Each action: its id (the menu item's and the window button's object name), its label, when it is shown and
when it is enabled for a snapshot and what the tray is busy with, and the controller method it calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from ..core.serving.state import ServerPhase
from ..core.system.units import human_bytes
from .snapshot import Snapshot


class View(NamedTuple):
    """What an action's rules look at: the snapshot, the running job ("" when idle), the last start failure."""

    snap: Snapshot
    busy: str = ""
    last_error: str = ""


Rule = Callable[[View], bool]


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


@dataclass(frozen=True)
class Action:
    id: str
    label: str
    handler: str  # the controller's method
    enabled: Rule = _always
    shown: Rule = _always  # hidden rather than greyed out (the menu leaves it out, the window hides it)
    group: int = 0  # the menu puts a separator between groups

    def text(self, snap: Snapshot) -> str:
        """The label for this snapshot: a crashed server offers a restart, the clean-up names what it frees."""
        if self.id == "start" and snap.status.state == ServerPhase.CRASHED:
            return "Restart server"
        if self.id == "cleanup" and snap.stale and snap.stale.count:
            n = snap.stale.count
            return f"Clean up {n} stale model{'s' if n != 1 else ''} ({human_bytes(snap.stale.size_bytes)})…"
        return self.label

    def slot(self, ctl, snap: Snapshot) -> Callable:
        """The controller method this action calls now."""
        crashed_start = self.id == "start" and snap.status.state == ServerPhase.CRASHED
        return getattr(ctl, "restart_server" if crashed_start else self.handler)


ACTIONS: tuple[Action, ...] = (
    Action(
        "show_log",
        "Show log…",
        "show_log",
        shown=lambda v: _crashed(v) or bool(v.last_error and not v.snap.status.running),
    ),
    # A router whose model crashed still runs: it offers both Restart and Stop.
    Action("start", "Start server", "start_server", _can_start, shown=lambda v: _crashed(v) or not _running(v)),
    Action("stop", "Stop server", "stop_server", shown=_running),
    Action("switch", "Switch model", "switch_model", lambda v: bool(v.snap.models) and not v.busy),
    Action("chat", "Open chat in browser", "open_chat", lambda v: v.snap.status.state == ServerPhase.RUNNING),
    Action("copy", "Copy API endpoint", "copy_endpoint", _running),
    Action("download", "Download a model…", "open_download", group=1),
    Action("usage", "Usage…", "open_usage", group=1),
    Action("cleanup", "Clean up…", "open_cleanup", _has_stale, shown=_has_stale, group=1),
    Action("settings", "Settings…", "open_settings", group=1),
    Action("wizard", "Setup wizard…", "open_wizard", group=1),
    Action("quit", "Quit", "quit", group=2),
)
BY_ID = {a.id: a for a in ACTIONS}


def offered(view: View) -> dict[str, bool]:
    """Each shown action's id and whether it is enabled: what both the menu and the window present."""
    return {a.id: a.enabled(view) for a in ACTIONS if a.shown(view)}
