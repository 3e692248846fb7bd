"""Settings through the real window: sharing on the local network binds every address, turns the API key on
and shows the key (made in the real Secret Service keyring) with Copy; turning it off goes back to this
machine; context size and idle unload are saved to config.toml; keys and no text cut."""

from __future__ import annotations

import keyring
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication

from aidevops_local.core.system import config, secrets
from tests.tray.text_fit import cut_texts


@pytest.fixture
def keyring_in_use():
    assert "SecretService" in type(keyring.get_keyring()).__module__, keyring.get_keyring()
    secrets.forget(secrets.API_KEY)
    yield
    secrets.forget(secrets.API_KEY)


@pytest.fixture
def window(qtbot, app):
    app.open_settings()
    window = app.windows["settings"]
    qtbot.waitUntil(lambda: window.save_button.isEnabled(), timeout=10_000)
    return window


def _save(qtbot, window) -> None:
    window.status.clear()
    window.save()
    qtbot.waitUntil(lambda: window.status.text() != "", timeout=15_000)
    assert window.status.text().startswith("Saved"), window.status.text()


def test_lan_sharing_turns_the_key_on_and_shows_it_with_copy(qtbot, window, keyring_in_use):
    sharing = window.sharing
    assert not sharing.share.isChecked() and not sharing.warning.isVisible()
    assert sharing.address.text() == "Only programs on this machine can reach the server."
    sharing.share.setChecked(True)
    assert sharing.require_key.isChecked() and not sharing.require_key.isEnabled()  # sharing needs the key
    assert sharing.warning.isVisible() and "anyone on your network who has the key" in sharing.warning.text()
    _save(qtbot, window)

    settings = config.load_settings()
    assert settings.host == "0.0.0.0" and settings.require_api_key
    key = secrets.read(secrets.API_KEY)
    assert key and sharing.key.text() == key  # shown, as stored in the keyring
    assert f":{settings.port}/v1" in sharing.address.text()
    qtbot.mouseClick(sharing.copy, Qt.MouseButton.LeftButton)
    assert QGuiApplication.clipboard().text() == key
    assert sharing.said.text() == "Copied the key to the clipboard."

    sharing.share.setChecked(False)
    sharing.require_key.setChecked(False)
    _save(qtbot, window)
    settings = config.load_settings()
    assert settings.host == "127.0.0.1" and not settings.require_api_key
    assert secrets.read(secrets.API_KEY) == key  # the key stays for the next time sharing is turned on


def test_a_shared_host_shows_as_shared_when_the_window_opens(qtbot, app, keyring_in_use):
    from dataclasses import replace

    from aidevops_local.core.serving import api_key

    config.save_settings(replace(config.Settings(), host="0.0.0.0", require_api_key=True))
    key = api_key.ensure()
    app.open_settings()
    window = app.windows["settings"]
    qtbot.waitUntil(lambda: window.save_button.isEnabled(), timeout=10_000)
    assert window.sharing.share.isChecked() and window.sharing.key.text() == key


def test_context_size_and_idle_unload_are_saved(qtbot, window):
    window.ctx.setValue(8192)
    window.idle.setValue(600)
    _save(qtbot, window)
    settings = config.load_settings()
    assert settings.ctx_size == 8192 and settings.idle_unload_s == 600


def test_settings_keys_names_and_no_text_cut(qtbot, window, app):
    qtbot.waitExposed(window)
    assert cut_texts(window) == []
    window.sharing.share.setChecked(True)  # the warning and the address lines appear
    assert cut_texts(window) == []
    for widget in (window.port, window.ctx, window.idle, window.token, window.sharing.key, window.sharing.copy):
        assert widget.accessibleName(), widget.objectName()
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5_000)
    window.ctx.setValue(4096)
    qtbot.keyClick(window.ctx, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)  # Ctrl+S saves
    qtbot.waitUntil(lambda: window.status.text().startswith("Saved"), timeout=15_000)
    assert config.load_settings().ctx_size == 4096
    qtbot.keyClick(window, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: "settings" not in app.windows, timeout=5_000)


def test_workers_are_added_checked_tested_and_saved(qtbot, window, system_runtime, llama_server_dir, free_port):
    """A worker is written user@host or host:port (anything else is refused, saying the forms); Test reaches a
    real RPC server the way a start would; Save keeps the list in config.toml."""
    import subprocess

    from aidevops_local.core.rpc import worker

    box = window.workers
    box.entry.setText("me@host;rm -rf")
    box.add_entry()
    assert box.workers() == [] and "user@host" in box.said.text()
    port = free_port()
    rpc = subprocess.Popen([str(llama_server_dir / "ggml-rpc-server"), "--port", str(port)], stderr=subprocess.DEVNULL)
    try:
        qtbot.waitUntil(lambda: worker.answers("127.0.0.1", port), timeout=10_000)
        for text in (f"127.0.0.1:{port}", "me@studio.local"):
            box.entry.setText(text)
            qtbot.keyClick(box.entry, Qt.Key.Key_Return)
        assert box.workers() == [f"127.0.0.1:{port}", "me@studio.local"]
        box.list.setCurrentRow(0)
        qtbot.mouseClick(box.test, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: "answers" in box.said.text(), timeout=30_000)
        assert "GiB free" in box.said.text() and box.test.isEnabled()
    finally:
        rpc.kill()
        rpc.wait()
    box.list.setCurrentRow(1)
    qtbot.mouseClick(box.remove, Qt.MouseButton.LeftButton)
    _save(qtbot, window)
    assert config.load_settings().workers == [f"127.0.0.1:{port}"]
