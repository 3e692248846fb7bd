"""The question before cleanup deletes anything: it names the models and their sizes, keeps them on Enter and
Escape (the safe answer is the default), fits its title and text, and says where a model came from in words,
not the inventory's ("pulled")."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime

import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication

from aidevops_local.core.maintenance.cleanup import StaleModel
from aidevops_local.tray import cleanup_texts, dialogs
from aidevops_local.tray.cleanup_texts import StaleRow
from tests.tray.test_cleanup_and_usage import GIB, LLAMA, QWEN, pulled
from tests.tray.text_fit import cut_texts


def row(title: str, size: int, source: str = "pulled") -> StaleRow:
    model = StaleModel(title, [], size, datetime(2025, 1, 1, tzinfo=UTC), 40, source, True)
    return StaleRow(model, title, "Downloaded by aidevops-local")


def shown_question() -> dialogs.ConfirmDialog | None:
    found = [w for w in QApplication.topLevelWidgets() if isinstance(w, dialogs.ConfirmDialog) and w.isVisible()]
    return found[0] if found else None


def loaded_window(qtbot, app, count: int):
    app.open_cleanup()
    window = app.windows["cleanup"]
    qtbot.waitUntil(lambda: window.tree.topLevelItemCount() == count, timeout=10_000)
    return window


def test_confirm_names_the_model_and_its_size_and_keeps_it_by_default(qtbot, app, isolated_home, tiny_gguf):
    pulled(isolated_home, tiny_gguf, *LLAMA)
    window = loaded_window(qtbot, app, 1)
    dialog = window.confirm_dialog(window.selected())
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.text.text() == "Delete Llama 3.2 3B Instruct (2.0 GB)?"
    assert dialog.windowTitle() == "Remove model"
    assert dialog.keep_button.isDefault() and not dialog.confirm_button.isDefault()
    assert not dialog.confirm_button.autoDefault()  # focus on it must not make Enter delete
    assert (dialog.keep_button.text(), dialog.confirm_button.text()) == ("Keep", "Delete")
    # The whole title, with the app name some window managers add, fits the title bar, beside its buttons.
    assert dialogs.title_width(dialog.windowTitle()) + dialogs.TITLE_BAR_CONTROLS <= dialog.width()
    assert cut_texts(dialog) == []


@pytest.mark.parametrize("key", [Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Escape])
def test_enter_and_escape_keep_the_models(qtbot, app, isolated_home, tiny_gguf, key):
    path = pulled(isolated_home, tiny_gguf, *LLAMA)
    window = loaded_window(qtbot, app, 1)
    pressed = []

    def press() -> None:
        dialog = shown_question()
        pressed.append((dialog, dialog.focusWidget()))
        qtbot.keyClick(dialog.focusWidget(), key)

    QTimer.singleShot(200, press)
    window.remove()  # the real question, modal, answered from the keyboard
    dialog, focused = pressed[0]
    assert focused is dialog.keep_button and dialog.result() == dialog.DialogCode.Rejected
    qtbot.wait(300)
    assert path.exists() and window.tree.topLevelItemCount() == 1


def test_choosing_delete_removes_them(qtbot, app, isolated_home, tiny_gguf):
    paths = [pulled(isolated_home, tiny_gguf, *spec) for spec in (LLAMA, QWEN)]
    window = loaded_window(qtbot, app, 2)
    asked = []

    def answer() -> None:
        dialog = shown_question()
        asked.append(dialog.text.text())
        dialog.confirm_button.click()

    QTimer.singleShot(200, answer)
    window.remove()
    assert asked == ["Delete 2 models (3.0 GB)?"]
    qtbot.waitUntil(lambda: not any(p.exists() for p in paths), timeout=10_000)


def test_a_question_about_many_lists_a_few_then_says_how_many_more():
    chosen = [row(f"Model {i}", (i + 1) * GIB) for i in range(6)]
    question = cleanup_texts.removal_question(chosen)
    assert (question.title, question.text) == ("Remove models", "Delete 6 models (21.0 GB)?")
    lines = question.details.splitlines()
    assert lines[:5] == [
        "• Model 0 (1.0 GB)",
        "• Model 1 (2.0 GB)",
        "• Model 2 (3.0 GB)",
        "• Model 3 (4.0 GB)",
        "and 2 more",
    ]


def test_the_dialog_is_wide_enough_for_a_long_title(qtbot):
    title = "Remove models you have not used in a long while"
    dialog = dialogs.ConfirmDialog(None, title, "Delete 2 models?", confirm="Delete", keep="Keep")
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialogs.title_width(title) + dialogs.TITLE_BAR_CONTROLS <= dialog.width()


def test_sources_are_said_in_words(isolated_home, tmp_path, monkeypatch, tiny_gguf):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    lmstudio = tmp_path / "home" / ".lmstudio" / "models" / "lmstudio-community" / "Qwen3-8B-GGUF"
    lmstudio.mkdir(parents=True)
    shutil.copy(tiny_gguf, lmstudio / "Qwen3-8B-Q4_K_M.gguf")

    def stale(source: str, files: list[str]) -> StaleModel:
        return StaleModel("m", files, 1, None, None, source, False, "not downloaded by aidevops-local")

    assert cleanup_texts.source_text(stale("pulled", [])) == "Downloaded by aidevops-local"
    assert cleanup_texts.source_text(stale("legacy", [])) == "Left by the old shell helper"
    found = stale("external", [str(lmstudio / "Qwen3-8B-Q4_K_M.gguf")])
    assert cleanup_texts.source_text(found) == "Found in LM Studio's folder"
    assert cleanup_texts.kept_because(found) == "Another app's file: aidevops-local leaves it where it is."
