"""Commands that say what they did, and errors with a way out, on the real tray controller: copy shows
"Copied" for a moment, a taken port offers a free one (menu and notification) that is then used and kept,
a router's model unloads while the server stays, and the snapshot names models as people know them."""

from __future__ import annotations

import socket

import pytest
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QMenu

from aidevops_local.core.serving import server
from aidevops_local.core.system import config
from aidevops_local.tray import commands, menu, snapshot
from aidevops_local.tray.control_window import ControlWindow
from tests.tray.test_app import TINY_A, tray  # noqa: F401 - the fixture

_MENUS: list[QMenu] = []  # kept: a menu's items live as long as it does


def _items(t) -> dict:
    m = QMenu()
    _MENUS.append(m)
    menu.build(m, t)
    return {a.objectName(): a for a in m.actions() if a.objectName()}


def test_copy_says_copied_for_a_moment_in_the_menu_and_the_window(tray, served, qtbot, monkeypatch):  # noqa: F811
    monkeypatch.setattr(commands, "COPIED_FOR_MS", 300)
    t = tray()
    qtbot.waitUntil(lambda: t.icon_state == "running", timeout=10_000)
    window = ControlWindow(t, no_tray=False)
    qtbot.addWidget(window)
    said: list[str] = []
    t.said.connect(said.append)
    endpoint = t.snapshot.status.endpoint
    _items(t)["copy"].trigger()
    assert QGuiApplication.clipboard().text() == endpoint
    assert said == [f"Copied: {endpoint} is on the clipboard."]
    assert _items(t)["copy"].text() == f"Copied {endpoint}"
    assert window.buttons["copy"].text() == f"Copied {endpoint}" and window.lines["feedback"].text() == said[0]
    qtbot.waitUntil(lambda: not t.copied, timeout=5_000)
    assert _items(t)["copy"].text() == f"Copy {endpoint}" and window.buttons["copy"].text() == f"Copy {endpoint}"


def test_copy_and_chat_without_a_server_say_why(tray, system_runtime, local_models, qtbot):  # noqa: F811
    t = tray()
    said: list[str] = []
    t.said.connect(said.append)
    t.copy_endpoint()
    t.open_chat()
    assert said == [
        "Nothing to copy: The server is not running: start it first.",
        "Chat not available: The server is not running: start it first.",
    ]


def test_a_taken_port_offers_a_free_one_which_is_used_and_kept(tray, system_runtime, local_models, qtbot, desktop):  # noqa: F811
    t = tray(native_notifications=True)
    port = system_runtime.port
    with socket.create_server(("127.0.0.1", port)):
        t.start_server("tiny-a")
        qtbot.waitUntil(lambda: t.icon_state == "error", timeout=30_000)
        assert "already in use" in t.last_error and t.free_port and t.free_port != port
        offered = t.free_port
        call = desktop.wait_notification("llama-server failed to start", containing=f"Use port {offered}")
        assert call.actions["use_port"] == f"Use port {offered}" and "serve --port" not in call.body
        use = _items(t)["use_port"]
        assert use.text() == f"Use port {offered}" and use.isEnabled()
        desktop.choose_action("llama-server failed to start", f"Use port {offered}")
        try:
            qtbot.waitUntil(lambda: t.icon_state == "running", timeout=30_000)
            assert t.snapshot.status.port == offered and "use_port" not in _items(t)
            assert config.load_settings().port == offered  # remembered: the next start uses it
        finally:
            server.stop(grace=2)


def test_unload_keeps_the_router_running(tray, served, qtbot):  # noqa: F811
    t = tray()
    qtbot.waitUntil(lambda: t.icon_state == "running" and t.snapshot.router_active, timeout=10_000)
    pid = t.snapshot.status.pid
    unload = _items(t)["unload"]
    assert unload.text() == f"Unload {TINY_A} (keep the server)"
    unload.trigger()
    qtbot.waitUntil(lambda: not t.busy and not t.snapshot.served, timeout=30_000)
    assert t.snapshot.status.running and t.snapshot.status.pid == pid and not t.last_error
    assert menu.state_line(t.snapshot) == "Running · no model loaded" and t.icon_state == "running"
    assert "unload" not in _items(t)


@pytest.mark.usefixtures("system_runtime")
def test_the_snapshot_names_models_and_the_model_start_serves(isolated_home, tiny_gguf, smollm2_gguf):
    import shutil

    models = isolated_home / "models"
    models.mkdir(exist_ok=True)
    shutil.copy(tiny_gguf, models / "Llama-3.2-3B-Instruct-Q4_K_M.gguf")
    shutil.copy(smollm2_gguf, models / smollm2_gguf.name)
    snap = snapshot.collect(full=True)
    shown = {m.name: (m.title, m.detail) for m in snap.models}
    size = (models / smollm2_gguf.name).stat().st_size
    assert shown["SmolLM2-135M-Instruct.Q4_1"] == ("SmolLM2 135M Instruct", f"Q4_1 · {menu.human_bytes(size)}")
    assert shown["Llama-3.2-3B-Instruct-Q4_K_M"][0] == "Llama 3.2 3B Instruct"
    config.save_settings(
        config.Settings(**{**config.load_settings().__dict__, "default_model": "SmolLM2-135M-Instruct.Q4_1"})
    )
    assert snapshot.collect(full=True).start_model == "SmolLM2-135M-Instruct.Q4_1"
