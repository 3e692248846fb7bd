"""Download a model from the tray: search a (local) Hub, files marked by fit, download with progress, and the
"Download finished" notification whose action serves the model."""

from __future__ import annotations


def test_search_pick_download_and_notify(qtbot, app, fake_hub, tiny_gguf, smollm2_gguf, monkeypatch, desktop):
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    fake_hub.add_repo("org/tiny-GGUF", files={"tiny.F32.gguf": tiny_gguf}, downloads=10)
    fake_hub.add_repo("org/SmolLM2-GGUF", files={"SmolLM2-135M-Instruct.Q4_1.gguf": smollm2_gguf}, downloads=99)
    app.open_download()
    window = app.windows["download"]
    window.query.setText("GGUF")
    window.search()
    qtbot.waitUntil(lambda: window.repos.topLevelItemCount() == 2, timeout=15_000)
    assert window.repos.topLevelItem(0).text(0) == "org/SmolLM2-GGUF"  # most downloaded first
    window.repos.setCurrentItem(window.repos.topLevelItem(1))
    qtbot.waitUntil(lambda: window.files.topLevelItemCount() == 1, timeout=15_000)
    item = window.files.topLevelItem(0)
    assert item.text(0) == "tiny.F32.gguf" and item.text(3) == "yes"  # fits this machine
    window.files.setCurrentItem(item)
    assert window.download_button.isEnabled()
    window.download()
    qtbot.waitUntil(lambda: window.note.text().startswith("Downloaded"), timeout=30_000)
    call = desktop.wait_notification("Download finished")
    assert call.actions["serve"] == "Serve it now"


HOSTILE = "evil/\x1b]0;pwned\x07\x9b2J\u202ered-GGUF"


def _has_controls(text: str) -> bool:
    return any(c in text for c in "\x1b\x07\x9b\u202e")


def test_hub_text_is_shown_without_control_characters(qtbot, app, fake_hub, tiny_gguf, monkeypatch):
    """A repo id with escape sequences and a bidi override shows cleaned; the window still uses the real id."""
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    fake_hub.add_repo(HOSTILE, files={"x-Q4_K_M.gguf": tiny_gguf}, downloads=3)
    app.open_download()
    window = app.windows["download"]
    window.query.setText("red")
    window.search()
    qtbot.waitUntil(lambda: window.repos.topLevelItemCount() == 1, timeout=15_000)
    item = window.repos.topLevelItem(0)
    assert item.text(0) == "evil/]0;pwned2Jred-GGUF"
    assert item.data(0, 0x0100) == HOSTILE  # Qt.UserRole: what the listing asks the Hub for
    window.repos.setCurrentItem(item)
    qtbot.waitUntil(lambda: "Listing" not in window.note.text(), timeout=15_000)
    assert not _has_controls(window.note.text()), repr(window.note.text())
