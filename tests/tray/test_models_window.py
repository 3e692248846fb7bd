"""The Models window over real GGUF files: one dropped into the models folder, one in LM Studio's folder; their
facts in the table, Set as default written to config.toml, Remove asking first (naming the model and its size,
Keep as the default answer), Show in folder saying what it did, the keys, and no text cut."""

from __future__ import annotations

import shutil

import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from aidevops_local.core.system import config
from aidevops_local.core.system.units import human_bytes
from tests.tray.text_fit import cut_texts


@pytest.fixture
def two_models(isolated_home, tmp_path, monkeypatch, tiny_gguf):
    """A copy of the tiny model in the models folder, and another in LM Studio's (under a home of its own)."""
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    models = config.paths().models_dir
    models.mkdir(parents=True, exist_ok=True)
    ours = models / "tiny-chat-Q8_0.gguf"
    shutil.copyfile(tiny_gguf, ours)
    studio = home / ".lmstudio" / "models" / "lmstudio-community" / "tiny-GGUF" / "tiny-coder-Q4_K_M.gguf"
    studio.parent.mkdir(parents=True)
    shutil.copyfile(tiny_gguf, studio)
    return ours, studio


def _open(qtbot, app):
    app.open_models()
    window = app.windows["models"]
    qtbot.waitUntil(lambda: window.table.topLevelItemCount() == 2, timeout=15_000)
    window.activateWindow()  # keys go to the active window: shortcuts and mnemonics need it
    qtbot.waitUntil(window.isActiveWindow, timeout=5_000)
    return window


def _row(window, stem: str):
    for i in range(window.table.topLevelItemCount()):
        item = window.table.topLevelItem(i)
        if item.data(0, Qt.ItemDataRole.UserRole) == stem:
            return item
    raise AssertionError(f"{stem} not listed")


def test_the_table_says_what_each_model_is_and_where_it_came_from(qtbot, app, two_models):
    window = _open(qtbot, app)
    ours = _row(window, "tiny-chat-Q8_0")
    assert ours.text(1) == human_bytes(two_models[0].stat().st_size)
    assert ours.text(2) == "Q8_0" and "Q8_0" not in ours.text(0)  # the quant once, in its column
    assert ours.text(3) == "32,768"  # the context it was trained for, from its header
    assert ours.text(4) == "never" and ours.text(5) == "0"
    assert ours.text(6) == "Put in the models folder"
    assert _row(window, "tiny-coder-Q4_K_M").text(6) == "LM Studio's folder"
    assert window.note.text().startswith("2 models")


def test_set_as_default_is_saved_and_start_then_serves_it(qtbot, app, two_models):
    window = _open(qtbot, app)
    window.table.setCurrentItem(_row(window, "tiny-coder-Q4_K_M"))
    qtbot.keyClick(window.table, Qt.Key.Key_D, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: "is the default" in window.note.text(), timeout=10_000)
    assert config.load_settings().default_model == "tiny-coder-Q4_K_M"
    assert app.settings.default_model == "tiny-coder-Q4_K_M"
    assert _row(window, "tiny-coder-Q4_K_M").text(0).endswith("(default)")
    assert not window.default_button.isEnabled()


def _answer_removal(choice: str, seen: dict) -> None:
    """When the question opens: note its text and default button, then press ``choice``."""

    def answer():
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            QTimer.singleShot(50, answer)
            return
        seen.update(text=box.text(), default=box.defaultButton().text(), title=box.windowTitle())
        next(b for b in box.buttons() if b.text() == choice).click()

    QTimer.singleShot(50, answer)


def test_remove_asks_naming_the_model_and_keep_is_the_default(qtbot, app, two_models):
    ours, _ = two_models
    window = _open(qtbot, app)
    window.table.setCurrentItem(_row(window, "tiny-chat-Q8_0"))
    seen: dict = {}
    _answer_removal("Keep", seen)
    qtbot.keyClick(window.table, Qt.Key.Key_Delete)
    size = human_bytes(ours.stat().st_size)
    assert seen["default"] == "Keep" and seen["title"] == "Remove model"
    assert "Q8_0" in seen["text"] and size in seen["text"], seen
    assert ours.exists()

    _answer_removal("Remove", seen)
    window.remove()
    qtbot.waitUntil(lambda: window.table.topLevelItemCount() == 1, timeout=15_000)
    assert not ours.exists()
    assert window.note.text().startswith("Removed ") and f"freed {size}" in window.note.text()


def test_show_in_folder_says_what_happened(qtbot, app, two_models, monkeypatch):
    from PySide6.QtGui import QDesktopServices

    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url.toLocalFile()) or False)
    window = _open(qtbot, app)
    window.table.setCurrentItem(_row(window, "tiny-chat-Q8_0"))
    qtbot.keyClick(window.table, Qt.Key.Key_O, Qt.KeyboardModifier.ControlModifier)
    assert opened == [str(two_models[0].parent)], window.note.text()
    assert window.note.text().startswith("No file manager opened") and str(two_models[0]) in window.note.text()


def test_keyboard_and_accessible_names_and_no_text_cut(qtbot, app, two_models):
    window = _open(qtbot, app)
    qtbot.waitExposed(window)
    assert cut_texts(window) == []
    for button in (window.serve_button, window.default_button, window.remove_button, window.folder_button):
        assert button.accessibleName() and button.toolTip()  # the tooltip says its key
    assert window.table.accessibleName() == "Local models"
    served = []
    app.start_server = served.append  # Enter on the list serves the selected model
    window.table.setCurrentItem(_row(window, "tiny-chat-Q8_0"))
    qtbot.keyClick(window.table, Qt.Key.Key_Return)
    assert served == ["tiny-chat-Q8_0"]
    qtbot.keyClick(window, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: "models" not in app.windows, timeout=5_000)
