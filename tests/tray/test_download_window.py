"""Download a model from the tray: search a (local) Hub, files marked by fit, download with progress, and the
"Download finished" notification whose action serves the model."""

from __future__ import annotations

from PySide6.QtCore import Qt


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
    """A search result whose repo id holds escape sequences and a bidi override is left out (no repository can
    have that name, so nothing could be pulled from it); what the window shows holds no control character."""
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    fake_hub.add_repo(HOSTILE, files={"x-Q4_K_M.gguf": tiny_gguf}, downloads=3)
    fake_hub.add_repo("org/red-GGUF", files={"x-Q4_K_M.gguf": tiny_gguf}, downloads=2)
    app.open_download()
    window = app.windows["download"]
    window.query.setText("red")
    window.search()
    qtbot.waitUntil(lambda: window.repos.topLevelItemCount() == 1, timeout=15_000)
    item = window.repos.topLevelItem(0)
    assert (item.text(0), item.data(0, 0x0100)) == ("org/red-GGUF", "org/red-GGUF")  # 0x0100: Qt.UserRole
    window.repos.setCurrentItem(item)
    qtbot.waitUntil(lambda: "Listing" not in window.note.text(), timeout=15_000)
    assert window.files.topLevelItemCount() == 1
    assert not _has_controls(window.note.text()), repr(window.note.text())


def test_empty_search_suggests_the_catalog_picks_for_this_machine(qtbot, app, fake_hub, tiny_gguf, monkeypatch):
    """The picks `recommend` makes here, in its words; choosing one lists its repo and selects its file."""
    from aidevops_local.core.models import recommend

    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    picks = recommend.recommend().picks
    assert picks, "this machine should get at least one pick"
    first = picks[0]
    fake_hub.add_repo(first.repo, files={"other-Q8_0.gguf": tiny_gguf, first.file: tiny_gguf})
    app.open_download()
    window = app.windows["download"]
    qtbot.waitUntil(lambda: window.repos.topLevelItemCount() == len(picks), timeout=30_000)
    assert [window.repos.topLevelItem(i).text(0) for i in range(len(picks))] == [p.name for p in picks]
    assert f"{first.use} · " in window.repos.topLevelItem(0).text(1) and "tokens/s" in window.repos.topLevelItem(
        0
    ).text(1)
    assert window.note.text().startswith("Suggested for this machine")
    window.repos.setCurrentItem(window.repos.topLevelItem(0))
    qtbot.waitUntil(lambda: window.files.topLevelItemCount() == 2, timeout=15_000)
    assert window.files.currentItem().text(0) == first.file  # the suggestion's own file, not the other
    assert window.note.text().startswith("2 GGUF files")


def test_card_facts_a_lone_file_selected_and_one_on_disk_not_offered(qtbot, app, fake_hub, tiny_gguf, monkeypatch):
    import shutil

    from aidevops_local.core.system import config

    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    fake_hub.add_repo(
        "org/lone-GGUF",
        files={"lone-Q8_0.gguf": tiny_gguf},
        card_data={"license": "apache-2.0"},
        created_at="2024-09-25T10:00:00Z",
        last_modified="2024-10-01T10:00:00Z",
    )
    app.open_download()
    window = app.windows["download"]
    window.query.setText("lone")
    qtbot.keyClick(window.query, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: window.repos.topLevelItemCount() == 1, timeout=15_000)
    assert window.note.text() == "1 repository"
    window.repos.setCurrentItem(window.repos.topLevelItem(0))
    qtbot.waitUntil(lambda: window.files.topLevelItemCount() == 1, timeout=15_000)
    assert window.note.text() == "1 GGUF file in org/lone-GGUF"  # singular
    assert window.files.currentItem() is window.files.topLevelItem(0)  # the only choice is made
    assert window.download_button.isEnabled() and window.files.currentItem().text(4) == ""
    card = window.card.text()
    assert "context (trained)" in card and "32K" in card and "licence: apache-2.0" in card, card
    assert "parameters" in card and "created 2024-09-25" in card and "updated 2024-10-01" in card, card

    models = config.paths().models_dir
    models.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tiny_gguf, models / "lone-Q8_0.gguf")  # now on disk: listed again, marked, not offered
    window.list_files(window.repos.currentItem())
    qtbot.waitUntil(lambda: window.files.topLevelItemCount() == 1, timeout=15_000)
    assert window.files.currentItem().text(4) == "on disk"
    assert not window.download_button.isEnabled()


def test_progress_says_speed_and_time_left(qtbot, app, fake_hub, smollm2_gguf, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    fake_hub.add_repo("org/SmolLM2-GGUF", files={"SmolLM2-135M-Instruct.Q4_1.gguf": smollm2_gguf})
    fake_hub.throttle(20 * 1024 * 1024)  # ~5 s for 98 MB: several progress reports with a speed
    app.open_download()
    window = app.windows["download"]
    window.query.setText("SmolLM2")
    window.search()
    qtbot.waitUntil(lambda: window.repos.topLevelItemCount() == 1, timeout=15_000)
    window.repos.setCurrentItem(window.repos.topLevelItem(0))
    qtbot.waitUntil(lambda: window.files.currentItem() is not None, timeout=15_000)
    window.download()
    qtbot.waitUntil(lambda: " left" in window.note.text(), timeout=30_000)
    assert "/s · " in window.note.text() and "of 94 MB" in window.note.text(), window.note.text()
    window.cancel()
    qtbot.waitUntil(lambda: window.note.text().startswith("Download paused"), timeout=15_000)


def test_rate_meter_reports_speed_and_time_left_from_its_clock():
    from aidevops_local.tray.download_facts import RateMeter

    now = [0.0]
    meter = RateMeter(clock=lambda: now[0])
    assert meter.describe(0, 10_000_000) == "Downloading: 0 B of 10 MB"  # too soon for a speed
    now[0] = 2.0
    text = meter.describe(2_000_000, 10_000_000)  # 1 MB/s, 8 MB to go
    assert text.endswith("/s · 8 s left"), text
    now[0] = 4.0
    assert meter.describe(2_000_000, 10_000_000).endswith("stalled") is False  # the window still sees progress
    now[0] = 12.0
    assert meter.describe(2_000_000, 10_000_000).endswith("stalled")


def test_download_window_keys_and_no_text_cut(qtbot, app, monkeypatch):
    from tests.tray.text_fit import cut_texts

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    app.open_download()
    window = app.windows["download"]
    qtbot.waitUntil(lambda: window.repos.topLevelItemCount() > 0, timeout=30_000)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5_000)
    assert cut_texts(window) == []
    assert window.query.accessibleName() and window.files.accessibleName()
    qtbot.keyClick(window.files, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    assert window.query.hasFocus()
    qtbot.keyClick(window, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: "download" not in app.windows, timeout=5_000)
