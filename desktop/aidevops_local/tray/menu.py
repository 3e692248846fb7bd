"""The tray menu, rebuilt from the cached snapshot each time it opens (so it is never stale and opens at once:
building it touches no disk, network or process). The model submenu fills itself when it is opened.

It answers at a glance: a header with the state and the model's display name, its quant, size and port
under it, what the server is doing now, and the memory pressure as a word and a colour, all in normal text
(enabled items that open the control window: a disabled item is the faintest thing on screen, and the
desktop's exported menus cannot show a widget). The text helpers here are shared with the no-tray window
and the tooltip, so all three say the same thing.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Protocol

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QColor, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import QMenu

from ..core.serving.state import ServerPhase
from ..core.system.units import human_bytes
from . import actions
from .snapshot import Snapshot

# Colours that read on light and dark menus alike; a word always goes with them.
LEVEL_COLOURS = {"normal": "#2da44e", "high": "#d97706", "critical": "#d1242f"}
STATE_COLOURS = {"running": "#2da44e", "starting": "#d97706", "error": "#d1242f", "stopped": "#8c959f"}


class Controller(Protocol):
    snapshot: Snapshot
    busy: str  # what a running job is doing, "" when idle
    last_error: str  # the last start/switch failure, until the next success
    free_port: int | None  # a free port offered after the configured one was taken
    copied: bool  # the endpoint was copied a moment ago

    def start_server(self) -> None: ...
    def restart_server(self) -> None: ...
    def stop_server(self) -> None: ...
    def unload_model(self) -> None: ...
    def use_port(self, port: int | None) -> None: ...
    def switch_model(self, name: str) -> None: ...
    def open_chat(self) -> None: ...
    def copy_endpoint(self) -> None: ...
    def show_control_window(self) -> None: ...
    def show_log(self) -> None: ...
    def quit(self) -> None: ...


def state_line(snap: Snapshot, busy: str = "", last_error: str = "") -> str:
    """The state and the model, in a person's words: "Running · Llama 3.2 3B Instruct"."""
    s = snap.status
    if not snap.loaded:
        return "Checking the server…"
    name = snap.title(s.model)
    if s.state == ServerPhase.RUNNING:
        asleep = " (asleep: the next request wakes it)" if s.asleep else ""
        return f"Running · {name or 'no model loaded'}{asleep}"
    if s.state == ServerPhase.STARTING:
        return f"Starting {name}…"
    if s.state == ServerPhase.STOPPING:
        return f"Stopping {name}…"
    if s.state == ServerPhase.CRASHED:
        return f"Error: {name} stopped unexpectedly"
    if last_error:
        return f"Error: {last_error}"
    if busy:
        return busy
    if snap.full_at and not snap.runtime_installed:
        return "Stopped: llama.cpp is not installed"
    return "Stopped"


def detail_line(snap: Snapshot) -> str:
    """Under the header: the served model's quant and size, and the port ("Q4_K_M · 2.0 GB · port 8080")."""
    s = snap.status
    if s.state not in (ServerPhase.RUNNING, ServerPhase.STARTING) or not s.port:
        return ""
    entry = snap.model(s.model or "")
    detail = entry.detail if entry is not None else ""
    return " · ".join(part for part in (detail, f"port {s.port}") if part)


def activity_line(snap: Snapshot) -> str:
    return snap.activity.text if snap.status.running else ""


def memory_line(snap: Snapshot) -> str:
    """ "Memory: normal · server 218 MB · 12.0 GB of 24.0 GB used (50%)": the level always, as a word."""
    s = snap.status
    if not s.ram_total_bytes:
        return ""
    used = s.ram_total_bytes - s.ram_available_bytes
    parts = [f"Memory: {snap.pressure_level}"]
    if s.running and s.rss_bytes:
        parts.append(f"server {human_bytes(s.rss_bytes)}")
    if s.running and s.gpu_memory_bytes is not None:
        parts.append(f"GPU {human_bytes(s.gpu_memory_bytes)}")
    parts.append(f"{human_bytes(used)} of {human_bytes(s.ram_total_bytes)} used ({s.ram_used_percent:.0f}%)")
    return " · ".join(parts)


def workers_line(snap: Snapshot) -> str:
    """ "Workers: me@studio (31.2 GB free) · me@laptop not answering": the machines the server pools."""
    if not snap.status.running or not snap.status.workers:
        return ""
    parts = []
    for w in snap.status.workers:
        if w.get("left_out"):
            parts.append(f"{w.get('worker')} left out")
        elif w.get("answers") is False:
            parts.append(f"{w.get('worker')} not answering")
        else:
            parts.append(f"{w.get('worker')} ({human_bytes(w.get('free_bytes') or 0)} free)")
    return "Workers: " + " · ".join(parts)


def workers_colour(snap: Snapshot) -> str | None:
    workers = snap.status.workers or []
    if not workers:
        return None
    trouble = any(w.get("answers") is False or w.get("left_out") for w in workers)
    return LEVEL_COLOURS["high" if trouble else "normal"]


def memory_lines(snap: Snapshot) -> list[str]:
    """The memory line as a list (empty before the first look): for the tooltip."""
    line = memory_line(snap)
    return [line] if line else []


def summary(snap: Snapshot, busy: str = "", last_error: str = "") -> list[str]:
    """The header's lines, in order: what the tooltip and the control window show too."""
    lines = [state_line(snap, busy, last_error), detail_line(snap), activity_line(snap), memory_line(snap)]
    return [line for line in [*lines, workers_line(snap)] if line]


def model_label(entry, restarts: bool = False) -> str:
    mark = ""
    if entry.fits is False:
        need = f", needs {human_bytes(entry.needs_bytes)}" if entry.needs_bytes else ""
        mark = f"  ⚠ does not fit{need}"
    if restarts:
        mark += "  (restarts the server)"
    detail = f"  ·  {entry.detail}" if entry.detail else ""
    return f"{entry.title}{detail}{mark}"


@lru_cache(maxsize=16)
def dot(colour: str) -> QIcon:
    """A filled disc in ``colour``: the level's colour beside its word."""
    pm = QPixmap(32, 32)
    pm.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pm)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(QColor("#00000055"))  # a thin rim: the disc stays visible on a menu of the same colour
    painter.setBrush(QColor(colour))
    painter.drawEllipse(4, 4, 24, 24)
    painter.end()
    return QIcon(pm)


def _line(menu: QMenu, ctl: Controller, name: str, text: str, colour: str | None = None) -> QAction:
    """An information line in normal text: it opens the control window, where the same facts stay."""
    action = menu.addAction(text)
    action.setObjectName(name)
    if colour:
        action.setIcon(dot(colour))
    action.setToolTip(f"{text}. Opens the control window.")
    action.triggered.connect(lambda _checked=False: ctl.show_control_window())
    return action


def _lines(ctl: Controller) -> list[tuple[str, str, str | None]]:
    """The header's lines for the controller's state: (object name, text, colour of its dot)."""
    snap = ctl.snapshot
    state = "error" if ctl.last_error and not snap.status.running else snap.state
    lines = [
        ("state", state_line(snap, ctl.busy, ctl.last_error), STATE_COLOURS.get(state)),
        ("detail", detail_line(snap), None),
        ("busy", ctl.busy if ctl.busy and (snap.status.running or ctl.last_error) else "", None),
        ("activity", activity_line(snap), None),
        ("memory", memory_line(snap), LEVEL_COLOURS.get(snap.pressure_level)),
        ("workers", workers_line(snap), workers_colour(snap)),
    ]
    return [line for line in lines if line[1]]


def _shape(ctl: Controller) -> tuple:
    """What decides the menu's items (not their changing figures): which lines, which actions, their words."""
    view = actions.view_of(ctl)
    shown = [(a.id, a.text(view.snap, view), a.enabled(view)) for a in actions.ACTIONS if a.shown(view)]
    return tuple((name, colour) for name, _text, colour in _lines(ctl)), tuple(shown)


def build(menu: QMenu, ctl: Controller) -> None:
    """Fill ``menu`` for the controller's current snapshot."""
    snap = ctl.snapshot
    menu.clear()
    for name, text, colour in _lines(ctl):
        _line(menu, ctl, name, text, colour)
    view = actions.view_of(ctl)
    group = 0
    menu.addSeparator()
    for action in actions.ACTIONS:
        if not action.shown(view):
            continue
        if action.group != group:
            menu.addSeparator()
            group = action.group
        if action.id == "switch":  # a submenu, filled when opened: 100 models cost then
            switch = menu.addMenu(action.label)
            switch.aboutToShow.connect(lambda sub=switch: build_switch(sub, ctl))
            item = switch.menuAction()
        else:
            item = menu.addAction(action.text(snap, view), action.slot(ctl, snap))
        item.setObjectName(action.id)
        item.setEnabled(action.enabled(view))
    menu.setProperty("shape", _shape(ctl))


def update(menu: QMenu, ctl: Controller) -> None:
    """An open menu after a refresh: its lines' figures change in place (rebuilding it under the pointer
    would flicker and lose the highlighted item); a new state, line or action rebuilds it."""
    if menu.property("shape") != _shape(ctl):
        build(menu, ctl)
        return
    items = {a.objectName(): a for a in menu.actions()}
    for name, text, _colour in _lines(ctl):
        items[name].setText(text)


def _info(menu: QMenu, text: str) -> QAction:
    action = menu.addAction(text)
    action.setEnabled(False)
    return action


def build_switch(submenu: QMenu, ctl: Controller) -> None:
    snap = ctl.snapshot
    submenu.clear()
    if not snap.models:
        item = submenu.addAction("No local models: Download a model…", ctl.open_download)
        item.setObjectName("download")
        return
    if snap.status.running and not snap.router_active:
        _info(submenu, "Switching restarts the server")
    served = set(snap.served)
    # A router switches to what it lists; a model pulled after it started takes a restart.
    offered = set(snap.status.models or []) if snap.router_active else None
    for entry in snap.models:
        action = submenu.addAction(model_label(entry, restarts=offered is not None and entry.name not in offered))
        action.setCheckable(True)
        action.setChecked(entry.name in served)
        action.setData(entry.name)
        action.setToolTip(entry.name)  # the name a request gives it
        action.triggered.connect(lambda _checked=False, name=entry.name: ctl.switch_model(name))
