"""One action table (tray/actions.py): the menu and the no-tray window offer the same actions, enabled alike,
for the same snapshot and busy state, and a click calls the same controller method."""

from __future__ import annotations

from dataclasses import replace

import pytest
from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QApplication

from aidevops_local.tray import actions, control_window
from aidevops_local.tray.control_window import ControlWindow
from aidevops_local.tray.snapshot import StaleSummary
from tests.tray.test_menu import GB, FakeController, built, crashed, items, running, stopped


class FakeApp(QObject):
    """The controller the window talks to: records what it is asked to do."""

    snapshot_changed = Signal(object)

    def __init__(self, snap, busy="", last_error=""):
        super().__init__()
        self.ctl = FakeController(snap, busy=busy, last_error=last_error)
        self.snapshot, self.busy, self.last_error, self.quitting = snap, busy, last_error, False

    def __getattr__(self, name):
        return getattr(self.__dict__["ctl"], name) if "ctl" in self.__dict__ else super().__getattr__(name)


def _crashed_router():
    snap = running()
    return replace(snap, status=replace(snap.status, state="crashed"))


SNAPSHOTS = {
    "running": (running(), "", ""),
    "running, busy": (running(), "Switching to llama-70b…", ""),
    "stopped": (stopped(), "", ""),
    "stopped, starting": (stopped(), "Starting smollm2-135m…", ""),
    "stopped after a failed start": (stopped(), "", "out of memory"),
    "stopped, no runtime": (replace(stopped(), runtime_installed=False), "", ""),
    "stopped, no models": (replace(stopped(), models=()), "", ""),
    "stale models": (replace(stopped(), stale=StaleSummary(count=3, size_bytes=12 * GB)), "", ""),
    "crashed": (crashed(), "", ""),
    "a router's model crashed": (_crashed_router(), "", ""),
}


def window_offers(window: ControlWindow) -> dict[str, bool]:
    return {name: b.isEnabled() for name, b in window.buttons.items() if not b.isHidden()}


def menu_offers(snap, busy, last_error) -> dict[str, bool]:
    m, _ = built(snap, busy=busy, last_error=last_error)
    return {name: a.isEnabled() for name, a in items(m).items() if name in actions.BY_ID}


@pytest.mark.parametrize("case", SNAPSHOTS)
def test_the_menu_and_the_window_offer_the_same_actions_enabled_alike(case, qtbot):
    snap, busy, last_error = SNAPSHOTS[case]
    window = ControlWindow(FakeApp(snap, busy, last_error), no_tray=False)
    qtbot.addWidget(window)
    expected = actions.offered(actions.View(snap, busy, last_error))
    assert menu_offers(snap, busy, last_error) == expected
    assert window_offers(window) == expected


def test_the_rules_where_the_two_used_to_differ(qtbot):
    """Busy blocks a start and a switch in both (the window used to allow them); a crash offers a restart and
    the log in both (the window used to offer neither)."""
    busy = actions.offered(actions.View(stopped(), "Starting smollm2-135m…"))
    assert busy["start"] is False and busy["switch"] is False and "stop" not in busy
    down = actions.offered(actions.View(crashed()))
    assert down["start"] and down["show_log"] and "stop" not in down
    assert actions.BY_ID["start"].text(crashed()) == "Restart SmolLM2 135M Instruct"
    both = actions.offered(actions.View(_crashed_router()))
    assert both["start"] and both["stop"]


def test_a_window_click_calls_what_the_menu_item_calls(qtbot):
    app = FakeApp(crashed())
    window = ControlWindow(app, no_tray=False)
    qtbot.addWidget(window)
    m, ctl = built(crashed())
    for name in ("start", "show_log", "download", "settings"):
        items(m)[name].trigger()
        window.buttons[name].click()
    assert app.ctl.calls == ctl.calls == [("restart_server",), ("show_log",), ("open_download",), ("open_settings",)]
    window.update_from(stopped())
    app.snapshot = stopped()
    window.buttons["start"].click()
    assert app.ctl.calls[-1] == ("start_server", "smollm2-135m")  # the menu's Start model, until one is chosen
    window.models.activated.emit(0)  # a person picks the first model in the list
    assert window.buttons["start"].text() == "Start Qwen2.5 Coder 7B Instruct"
    window.buttons["start"].click()
    assert app.ctl.calls[-1] == ("start_server", "qwen2.5-coder-7b")


def test_the_window_starts_the_model_the_menu_names(qtbot):
    """The window used to preselect the first model in the list while the menu started the default one."""
    for default in ("smollm2-135m", "llama-70b", "qwen2.5-coder-7b"):
        snap = replace(stopped(), start_model=default)
        window = ControlWindow(FakeApp(snap), no_tray=False)
        qtbot.addWidget(window)
        m, ctl = built(snap)
        assert window.models.currentData() == default
        assert window.buttons["start"].text() == items(m)["start"].text()
        window.buttons["start"].click()
        assert window.app.ctl.calls == [("start_server", default)]


def test_the_window_says_what_the_menu_says_and_works_from_the_keyboard(qtbot):
    snap = replace(running(), pressure="critical")
    window = ControlWindow(FakeApp(snap), no_tray=False)
    qtbot.addWidget(window)
    window.show()
    assert window.state.text() == "Running · SmolLM2 135M Instruct"
    assert window.lines["detail"].text() == "Q4_1 · 98 MB · port 8080"
    assert window.memory.accessibleDescription().startswith("Memory: critical")
    assert "●" in window.memory.text() and "critical" in window.memory.text()  # a word, not colour alone
    assert {window.lines[n].accessibleName() for n in ("state", "memory")} == {"Server state", "Memory pressure"}
    assert window.models.accessibleName() == "Model to serve"
    assert window.buttons["stop"].shortcut().toString() == "Ctrl+T"
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    window.models.setFocus()
    names = [QApplication.focusWidget().objectName()]
    for _ in range(4):
        window.focusNextChild()  # what Tab does
        names.append(QApplication.focusWidget().objectName())
    assert names == ["models", "switch", "stop", "chat", "copy"]  # in the order shown; hidden ones skipped


@pytest.mark.parametrize("case", ["running", "crashed", "stale models"])
def test_the_window_fills_its_grid_with_the_shown_actions_leaving_no_hole(case, qtbot):
    snap, busy, last_error = SNAPSHOTS[case]
    window = ControlWindow(FakeApp(snap, busy, last_error), no_tray=False)
    qtbot.addWidget(window)
    grid = window.grid
    placed = {grid.itemAt(i).widget().objectName(): grid.getItemPosition(i)[:2] for i in range(grid.count())}
    shown = [a.id for a in actions.ACTIONS if a.id not in control_window.ROW and a.shown(actions.View(snap))]
    assert sorted(placed) == sorted(shown)
    columns = control_window.GRID_COLUMNS
    assert [placed[name] for name in shown] == [(i // columns, i % columns) for i in range(len(shown))]
