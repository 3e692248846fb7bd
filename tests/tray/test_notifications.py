"""Notifications reach a real notification daemon (dunst on the test bus), buttons included, and the action a
user picks in dunst comes back to the tray on the GUI thread."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from PySide6.QtCore import QSize
from PySide6.QtGui import QImage

from aidevops_local.core.system import config
from aidevops_local.tray.notifications import Action, DesktopNotifierBackend, Notice, Notifications


def test_notice_with_actions_reaches_dunst_and_the_chosen_action_comes_back(qtbot, desktop):
    notifications = Notifications()
    assert isinstance(notifications.backend, DesktopNotifierBackend)
    notice = Notice(
        "nudge",
        "Unused local models",
        "3 models take 12.0 GB.",
        (Action("review", "Review"), Action("later", "Later")),
    )
    try:
        with qtbot.waitSignal(notifications.sent, timeout=10_000):
            notifications.notify(notice)
        call = desktop.wait_notification("Unused local models", containing="3 models take 12.0 GB.")
        assert call.body == "3 models take 12.0 GB."
        assert call.app_name == "aidevops Local Models"
        assert call.actions["review"] == "Review" and call.actions["later"] == "Later"

        with qtbot.waitSignal(notifications.action, timeout=10_000) as chosen:
            desktop.choose_action("Unused local models", "Review")
        got_notice, action = chosen.args
        assert (got_notice.kind, action) == ("nudge", "review")
        desktop.wait_action_invoked("review")  # the daemon's own signal, seen on the bus
    finally:
        notifications.close()


def test_critical_notice_is_sent_critical(qtbot, desktop):
    notifications = Notifications()
    try:
        with qtbot.waitSignal(notifications.sent, timeout=10_000):
            notifications.notify(
                Notice(
                    "crash",
                    "llama-server stopped unexpectedly",
                    "tiny on port 8080 exited.",
                    (Action("show_log", "Show log"),),
                    critical=True,
                )
            )
        call = desktop.wait_notification("llama-server stopped unexpectedly")
        assert call.urgency == 2
        assert call.actions["show_log"] == "Show log"
    finally:
        notifications.close()


def test_notices_carry_the_app_icon_as_a_png_that_dunst_loads(qtbot, desktop):
    """dunst without an SVG loader showed no icon for app-icon.svg ("No icon found in path" in its log)."""
    notifications = Notifications()
    try:
        with qtbot.waitSignal(notifications.sent, timeout=10_000):
            notifications.notify(Notice("download", "Model downloaded", "Qwen3 8B is ready."))
        call = desktop.wait_notification("Model downloaded")
    finally:
        notifications.close()
    icon = Path(unquote(urlparse(call.icon).path))
    assert call.icon.startswith("file://") and icon.suffix == ".png" and icon.parent == config.paths().cache_dir
    assert QImage(str(icon)).size() == QSize(128, 128)
    log = (desktop.root / "dunst.log").read_text(errors="replace")
    assert f"No icon found in path: '{icon}'" not in log and f"Failed to load image info for {icon}" not in log
