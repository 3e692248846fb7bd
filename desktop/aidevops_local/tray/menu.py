"""The tray menu, rebuilt from the cached snapshot each time it opens (so it is never stale and opens at once:
building it touches no disk, network or process). The model submenu fills itself when it is opened.

The text helpers here are shared with the no-tray window, so both say the same thing.
"""

from __future__ import annotations

from typing import Protocol

from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu

from ..core.serving.state import ServerPhase
from ..core.system.units import human_bytes
from . import actions
from .snapshot import Snapshot


class Controller(Protocol):
    snapshot: Snapshot
    busy: str  # what a running job is doing, "" when idle
    last_error: str  # the last start/switch failure, until the next success

    def start_server(self) -> None: ...
    def restart_server(self) -> None: ...
    def stop_server(self) -> None: ...
    def switch_model(self, name: str) -> None: ...
    def open_chat(self) -> None: ...
    def copy_endpoint(self) -> None: ...
    def open_download(self) -> None: ...
    def open_usage(self) -> None: ...
    def open_cleanup(self) -> None: ...
    def open_settings(self) -> None: ...
    def open_wizard(self) -> None: ...
    def show_log(self) -> None: ...
    def quit(self) -> None: ...


def state_line(snap: Snapshot, busy: str = "", last_error: str = "") -> str:
    s = snap.status
    if not snap.loaded:
        return "Checking the server…"
    if s.state == ServerPhase.RUNNING:
        model = snap.model(s.model or "")
        quant = f" ({model.quant})" if model and model.quant else ""
        asleep = ", asleep" if s.asleep else ""  # idle unload: the next request wakes it
        return f"Running: {s.model or 'no model loaded'}{quant} on port {s.port}{asleep}"
    if s.state == ServerPhase.STARTING:
        return f"Starting: {s.model} on port {s.port}…"
    if s.state == ServerPhase.STOPPING:
        return f"Stopping: {s.model} on port {s.port}…"
    if s.state == ServerPhase.CRASHED:
        return f"Error: {s.model} stopped unexpectedly"
    if last_error:
        return f"Error: {last_error}"
    if busy:
        return busy
    if snap.full_at and not snap.runtime_installed:
        return "Stopped: llama.cpp is not installed"
    return "Stopped"


def memory_lines(snap: Snapshot) -> list[str]:
    s = snap.status
    if not s.ram_total_bytes:
        return []
    used = s.ram_total_bytes - s.ram_available_bytes
    lines = [f"RAM: {human_bytes(used)} of {human_bytes(s.ram_total_bytes)} ({s.ram_used_percent:.0f}%)"]
    if s.running and s.rss_bytes:
        lines.append(f"Server: {human_bytes(s.rss_bytes)}")
    if s.running and s.gpu_memory_bytes is not None:
        lines.append(f"GPU: {human_bytes(s.gpu_memory_bytes)}")
    if snap.pressure != "normal":
        lines.append(f"Memory pressure: {snap.pressure}")
    return lines


def model_label(entry, restarts: bool = False) -> str:
    quant = f" · {entry.quant}" if entry.quant else ""
    size = f" · {human_bytes(entry.size_bytes)}" if entry.size_bytes else ""
    mark = ""
    if entry.fits is False:
        need = f", needs {human_bytes(entry.needs_bytes)}" if entry.needs_bytes else ""
        mark = f"  ⚠ does not fit{need}"
    if restarts:
        mark += "  (restarts the server)"
    return f"{entry.name}{quant}{size}{mark}"


def _info(menu: QMenu, text: str) -> QAction:
    action = menu.addAction(text)
    action.setEnabled(False)
    return action


def build(menu: QMenu, ctl: Controller) -> None:
    """Fill ``menu`` for the controller's current snapshot."""
    snap = ctl.snapshot
    menu.clear()
    running = snap.status.running
    _info(menu, state_line(snap, ctl.busy, ctl.last_error)).setObjectName("state")
    if ctl.busy and (running or ctl.last_error):
        _info(menu, ctl.busy).setObjectName("busy")
    for line in memory_lines(snap):
        _info(menu, line).setObjectName("memory")
    menu.addSeparator()

    view = actions.View(snap, ctl.busy, ctl.last_error)
    group = 0
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
            item = menu.addAction(action.text(snap), action.slot(ctl, snap))
        item.setObjectName(action.id)
        item.setEnabled(action.enabled(view))


def build_switch(submenu: QMenu, ctl: Controller) -> None:
    snap = ctl.snapshot
    submenu.clear()
    if not snap.models:
        _info(submenu, "No local models: Download a model…")
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
        action.triggered.connect(lambda _checked=False, name=entry.name: ctl.switch_model(name))
