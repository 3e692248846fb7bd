"""The tray controller with the real llama-server: state from the poller, a crash seen within seconds with a
notification in the real daemon, start/stop/switch as jobs, failures as an error state, quitting."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from dataclasses import replace

import psutil
import pytest
from PySide6.QtWidgets import QMenu

from aidevops_local.core.serving import server, supervisor
from aidevops_local.core.serving import state as server_state
from aidevops_local.core.system import config
from aidevops_local.core.system.units import human_bytes
from aidevops_local.tray import app as tray_app
from aidevops_local.tray import menu
from aidevops_local.tray.app import TrayApp
from tests.tray.conftest import dispose

TINY_A = "Tiny Random Llama (tiny-a)"  # tiny-a and tiny-b are copies of one file: the name says which


@pytest.fixture
def tray(qtbot, monkeypatch):
    monkeypatch.setattr(tray_app, "NUDGE_EVERY_MS", 10**9)
    made = []

    def make(**kw) -> TrayApp:
        t = TrayApp(**{"use_tray": False, **kw})
        t._wizard_offered = True  # these tests are not about the first-run wizard
        made.append(t)
        t.start()
        qtbot.waitUntil(lambda: t.snapshot.full_at > 0, timeout=10_000)
        return t

    yield make
    for t in made:
        dispose(t)


def state_line(t: TrayApp) -> str:
    return menu.state_line(t.snapshot, t.busy, t.last_error)


def test_running_server_is_seen_with_its_model(tray, served, qtbot):
    t = tray()
    qtbot.waitUntil(lambda: t.icon_state == "running", timeout=10_000)
    assert state_line(t) == f"Running · {TINY_A}"
    assert (
        menu.detail_line(t.snapshot)
        == f"F32 · {human_bytes(t.snapshot.model('tiny-a').size_bytes)} · port {served.port}"
    )
    assert [m.name for m in t.snapshot.models] == ["tiny-a", "tiny-b"]
    assert t.snapshot.served == ("tiny-a",)


def test_server_killed_from_outside_turns_the_icon_to_error_and_notifies(tray, served, qtbot, desktop):
    t = tray(native_notifications=True)
    qtbot.waitUntil(lambda: t.icon_state == "running", timeout=10_000)
    killed = time.monotonic()
    os.killpg(served.pid, signal.SIGKILL)
    qtbot.waitUntil(lambda: t.icon_state == "error", timeout=10_000)
    assert time.monotonic() - killed < 5
    assert state_line(t) == f"Error: {TINY_A} stopped unexpectedly"
    call = desktop.wait_notification("llama-server stopped unexpectedly")
    assert call.actions == {"default": "", "show_log": "Show log", "restart": "Restart"}
    assert "tiny-a" in call.body

    desktop.choose_action("llama-server stopped unexpectedly", "Show log")
    qtbot.waitUntil(lambda: "log" in t.windows and t.windows["log"].path is not None, timeout=10_000)
    assert "llama" in t.windows["log"].view.toPlainText().lower()  # the server's own log lines


def test_a_model_crash_under_a_running_router_is_an_error_and_restart_loads_it_again(tray, served, qtbot, desktop):
    t = tray(native_notifications=True)
    qtbot.waitUntil(lambda: t.icon_state == "running" and t.snapshot.router_active, timeout=10_000)
    [instance] = psutil.Process(served.pid).children()  # the model's process: what an OOM kill would pick
    instance.kill()
    qtbot.waitUntil(lambda: t.icon_state == "error", timeout=10_000)  # seen by the liveness poll, no HTTP
    assert state_line(t) == f"Error: {TINY_A} stopped unexpectedly"
    call = desktop.wait_notification("llama-server stopped unexpectedly")
    assert "tiny-a" in call.body and call.actions["restart"] == "Restart"
    m = QMenu()
    menu.build(m, t)
    restart = next(a for a in m.actions() if a.objectName() == "start")
    assert restart.text() == f"Restart {TINY_A}" and restart.isEnabled()
    assert "stop" in [a.objectName() for a in m.actions()]  # the router itself still runs
    restart.trigger()
    qtbot.waitUntil(lambda: t.icon_state == "running" or bool(t.last_error), timeout=30_000)
    assert t.last_error == "" and t.icon_state == "running"
    assert t.snapshot.status.pid == served.pid and t.snapshot.status.model == "tiny-a"  # the same router


def test_a_stop_from_elsewhere_is_not_taken_for_a_crash(tray, served, qtbot, monkeypatch):
    """A stop from the CLI: the tray polls after the process exited and before the state file is gone."""
    import threading

    t = tray()
    qtbot.waitUntil(lambda: t.icon_state == "running", timeout=10_000)
    icons_seen: list[str] = []
    t.icon_changed.connect(icons_seen.append)
    notified: list[str] = []
    monkeypatch.setattr(t.notifications, "notify", lambda notice: notified.append(notice.kind))
    polled = threading.Event()
    real_clear = server_state.clear

    def clear_after_a_poll():
        polled.wait(30)
        real_clear()

    monkeypatch.setattr(server_state, "clear", clear_after_a_poll)
    stopper = threading.Thread(target=server.stop, kwargs={"grace": 2})
    stopper.start()
    try:
        qtbot.waitUntil(lambda: not t.snapshot.status.running, timeout=10_000)  # a poll saw the exit
    finally:
        polled.set()
        stopper.join(30)
    qtbot.waitUntil(lambda: t.icon_state == "stopped", timeout=10_000)
    assert "error" not in icons_seen and "crash" not in notified and t.last_error == ""
    assert state_line(t) == "Stopped"


def test_restart_offered_after_a_crash_brings_it_back(tray, served, qtbot):
    t = tray()
    qtbot.waitUntil(lambda: t.icon_state == "running", timeout=10_000)
    os.killpg(served.pid, signal.SIGKILL)
    qtbot.waitUntil(lambda: t.icon_state == "error", timeout=10_000)
    m = QMenu()
    menu.build(m, t)
    restart = next(a for a in m.actions() if a.objectName() == "start")
    assert restart.text() == f"Restart {TINY_A}"
    restart.trigger()
    qtbot.waitUntil(lambda: t.icon_state == "running", timeout=30_000)
    assert server.status().model == "tiny-a"


def test_automatic_restart_with_backoff_when_the_setting_asks(tray, served, qtbot, monkeypatch):
    monkeypatch.setattr(supervisor, "RESTART_BACKOFF_S", (1, 2))
    config.save_settings(config.Settings(**{**config.load_settings().__dict__, "auto_restart": True}))
    t = tray()
    qtbot.waitUntil(lambda: t.icon_state == "running" and t.settings.auto_restart, timeout=10_000)
    first_pid = served.pid
    os.killpg(first_pid, signal.SIGKILL)
    qtbot.waitUntil(lambda: t.icon_state == "error", timeout=10_000)
    qtbot.waitUntil(lambda: t.snapshot.status.state == "running" and t.snapshot.status.pid != first_pid, timeout=30_000)


def test_an_automatic_restart_that_fails_is_tried_again_after_the_next_delay(tray, served, qtbot, monkeypatch):
    """The tray follows the core policy as `serve --supervise` does: a failed restart is a try, not the end."""
    monkeypatch.setattr(supervisor, "RESTART_BACKOFF_S", (1, 2, 2))
    config.save_settings(replace(config.load_settings(), auto_restart=True))
    t = tray(native_notifications=False)  # its notices are not for the shared desktop's later tests
    qtbot.waitUntil(lambda: t.icon_state == "running" and t.settings.auto_restart, timeout=10_000)
    first_pid, port = served.pid, served.port
    os.killpg(first_pid, signal.SIGKILL)
    qtbot.waitUntil(lambda: t.icon_state == "error", timeout=10_000)
    qtbot.waitUntil(lambda: not psutil.pid_exists(first_pid) or not _holds(port), timeout=10_000)
    squatter = socket.create_server(("127.0.0.1", port))  # another program takes the port: the restart fails
    try:
        qtbot.waitUntil(lambda: "in use" in t.last_error, timeout=20_000)
    finally:
        squatter.close()
    qtbot.waitUntil(lambda: t.snapshot.status.state == "running" and t.snapshot.status.pid != first_pid, timeout=30_000)
    assert t.snapshot.status.port == port  # where the crashed server listened


def test_a_stop_during_the_backoff_cancels_the_automatic_restart(tray, served, qtbot, monkeypatch):
    monkeypatch.setattr(supervisor, "RESTART_BACKOFF_S", (2, 2))
    config.save_settings(replace(config.load_settings(), auto_restart=True))
    t = tray(native_notifications=False)  # its notices are not for the shared desktop's later tests
    qtbot.waitUntil(lambda: t.icon_state == "running" and t.settings.auto_restart, timeout=10_000)
    os.killpg(served.pid, signal.SIGKILL)
    qtbot.waitUntil(lambda: t.icon_state == "error", timeout=10_000)
    t.stop_server()  # the user's word: no server now
    qtbot.waitUntil(lambda: t.icon_state == "stopped", timeout=10_000)
    qtbot.wait(3_000)  # past the restart's delay
    assert server.status().state == "stopped" and t.snapshot.status.state == "stopped"


def _holds(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_start_stop_and_switch_from_the_tray(tray, system_runtime, local_models, qtbot):
    t = tray()
    assert t.snapshot.status.state == "stopped"
    t.start_server("tiny-a")
    assert t.icon_state == "starting"
    qtbot.waitUntil(lambda: t.icon_state == "running", timeout=30_000)
    assert t.snapshot.router_active  # this build has router mode: switching is a load request, not a restart
    pid = t.snapshot.status.pid
    t.switch_model("tiny-b")
    qtbot.waitUntil(lambda: t.snapshot.status.model == "tiny-b" and t.icon_state == "running", timeout=30_000)
    assert t.snapshot.status.pid == pid and t.snapshot.served == ("tiny-b",)
    assert config.load_settings().default_model == "tiny-b"  # Start serves the last model chosen

    config.save_settings(replace(config.load_settings(), router_mode=False))  # one model per server
    t.stop_server()
    assert t.icon_state == "stopping"  # its own shape, not the starting one
    qtbot.waitUntil(lambda: t.icon_state == "stopped", timeout=30_000)
    t.start_server()
    qtbot.waitUntil(lambda: t.snapshot.status.model == "tiny-b" and t.icon_state == "running", timeout=30_000)
    pid = t.snapshot.status.pid
    t.switch_model("tiny-a")  # without router mode: a restart
    qtbot.waitUntil(lambda: t.snapshot.status.model == "tiny-a" and t.icon_state == "running", timeout=30_000)
    assert t.snapshot.status.pid != pid and not t.snapshot.router_active
    t.stop_server()
    qtbot.waitUntil(lambda: t.icon_state == "stopped", timeout=30_000)
    assert server.status().state == "stopped"


def test_tray_start_and_switch_wait_for_a_start_elsewhere(tray, system_runtime, local_models, qtbot):
    """A start from the CLI holds the start lock; the tray's start and switch wait for it, then go on."""
    import threading

    t = tray()

    def hold_the_start_lock() -> threading.Event:
        release, held = threading.Event(), threading.Event()

        def hold():
            with server.start_lock():
                held.set()
                release.wait(30)

        threading.Thread(target=hold, daemon=True).start()
        assert held.wait(10)
        return release

    release = hold_the_start_lock()
    try:
        t.start_server("tiny-a")
        qtbot.waitUntil(lambda: t.busy == "Waiting for another start to finish…", timeout=10_000)
        assert server_state.read() is None
        release.set()
        qtbot.waitUntil(lambda: t.icon_state == "running" and t.snapshot.status.model == "tiny-a", timeout=30_000)

        release = hold_the_start_lock()
        t.switch_model("tiny-b")
        qtbot.waitUntil(lambda: t.busy == "Waiting for another start to finish…", timeout=10_000)
        release.set()
        qtbot.waitUntil(lambda: t.snapshot.status.model == "tiny-b" and not t.busy, timeout=30_000)
    finally:
        release.set()
        t.workers.wait(30)
        server.stop(grace=2)


def test_menu_opens_at_once_while_the_server_is_loading(tray, system_runtime, local_models, qtbot, monkeypatch):
    """The start is held mid-load (a big model loading) until the menu is built: a menu that waited for the
    start would see the hold end only at the 30 s safety release, and the assertion below says so."""
    real_wait = server._wait_healthy
    loading, release, held_to_the_end = threading.Event(), threading.Event(), threading.Event()

    def held_wait(*args, **kw):
        loading.set()
        if not release.wait(30):
            held_to_the_end.set()
        return real_wait(*args, **kw)

    monkeypatch.setattr(server, "_wait_healthy", held_wait)
    t = tray()
    t.start_server("tiny-a")
    assert loading.wait(30)
    m = QMenu()
    try:
        menu.build(m, t)
        assert not held_to_the_end.is_set(), "the menu waited for the start"
    finally:
        release.set()
    assert m.actions()[0].text() == f"Starting {TINY_A}…"
    qtbot.waitUntil(lambda: t.icon_state == "running", timeout=30_000)
    t.stop_server()
    qtbot.waitUntil(lambda: t.icon_state == "stopped", timeout=30_000)


def test_start_failure_is_an_error_state_with_a_notification(tray, system_runtime, local_models, qtbot, desktop):
    t = tray(native_notifications=True)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", system_runtime.port))
        holder.listen()
        t.start_server("tiny-a")
        qtbot.waitUntil(lambda: t.icon_state == "error", timeout=30_000)
    assert "already in use" in state_line(t)
    call = desktop.wait_notification("llama-server failed to start", containing=str(system_runtime.port))
    assert "show_log" in call.actions


def test_quit_can_leave_the_server_running_or_stop_it(tray, served, qtbot, monkeypatch):
    t = tray()
    qtbot.waitUntil(lambda: t.icon_state == "running", timeout=10_000)
    monkeypatch.setattr(t, "ask_keep_server", lambda: None)
    monkeypatch.setattr(t, "_finish_quit", lambda: setattr(t, "finished", True))
    t.quit()  # cancelled: nothing happens
    assert not t.quitting
    monkeypatch.setattr(t, "ask_keep_server", lambda: True)
    t.quit()
    qtbot.waitUntil(lambda: getattr(t, "finished", False), timeout=10_000)
    assert server.status().state == "running"
    t.finished = False
    t._quitting = False
    t.shutdown(stop_server=True)
    qtbot.waitUntil(lambda: getattr(t, "finished", False), timeout=30_000)
    assert server.status().state == "stopped"


def test_without_a_tray_the_window_has_the_same_controls(tray, served, qtbot):
    t = tray(use_tray=None)  # offscreen has no tray: the real detection path
    assert t.tray is None
    window = t.windows["control"]
    assert window.isVisible()
    assert "AppIndicator" in window.findChild(type(window.state), "no_tray_banner").text()
    qtbot.waitUntil(lambda: window.state.text() == f"Running · {TINY_A}", timeout=10_000)
    assert not window.buttons["stop"].isHidden() and window.buttons["start"].isHidden()
    assert [window.models.itemData(i) for i in range(window.models.count())] == ["tiny-a", "tiny-b"]
    assert window.models.currentData() == "tiny-a"
    assert window.buttons["chat"].isEnabled()


def test_tray_without_a_display_says_so_instead_of_aborting(tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    done = subprocess.run(
        [sys.executable, "-m", "aidevops_local", "tray"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 1
    assert "no display" in done.stderr and "aidevops-local install" in done.stderr
