"""The menu-bar app's macOS behaviour, with the platform faked at tray/macos.py (no Mac runs these tests): one
menu per click, a reopen from Finder shows the control window, questions come to the front, no Python Dock
icon from a pip install, and notifications the system refuses fall back to something the user sees."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QMessageBox, QSystemTrayIcon

from aidevops_local.tray import macos
from aidevops_local.tray.app import TrayApp
from aidevops_local.tray.notifications import Action, Notice, Notifications
from tests.tray.conftest import dispose


@pytest.fixture
def on_macos(monkeypatch):
    monkeypatch.setattr(macos, "is_macos", lambda: True)


@pytest.fixture
def ns_app(monkeypatch):
    """A stand-in for NSApplication.sharedApplication that records what it was asked."""

    class FakeNSApp:
        def __init__(self):
            self.calls: list[tuple[str, object]] = []

        def setActivationPolicy_(self, policy):  # noqa: N802 - the Objective-C selector's name
            self.calls.append(("setActivationPolicy", policy))
            return True

        def activateIgnoringOtherApps_(self, flag):  # noqa: N802
            self.calls.append(("activateIgnoringOtherApps", flag))

    fake = FakeNSApp()
    monkeypatch.setattr(macos, "_ns_app", lambda: fake)
    return fake


@pytest.fixture
def make_tray(qtbot):
    made: list[TrayApp] = []

    def make(**kw) -> TrayApp:
        t = TrayApp(**{"use_tray": True, "native_notifications": False, **kw})
        t._wizard_offered = True
        made.append(t)
        return t

    yield make
    for t in made:
        dispose(t)


def record_popups(t: TrayApp) -> list:
    popups: list = []
    t.menu.popup = lambda *args: popups.append(args)  # the native menu is Qt's; only our second pop counts
    return popups


def test_a_left_click_on_macos_leaves_the_menu_to_the_system(make_tray, on_macos):
    t = make_tray()
    popups = record_popups(t)
    t.tray.activated.emit(QSystemTrayIcon.ActivationReason.Trigger)
    assert popups == []


def test_a_left_click_elsewhere_still_pops_the_menu(make_tray):
    t = make_tray()
    popups = record_popups(t)
    t.tray.activated.emit(QSystemTrayIcon.ActivationReason.Trigger)
    assert len(popups) == 1


def test_reopening_the_app_from_finder_shows_the_control_window(make_tray, on_macos, qtbot):
    t = make_tray()
    qapp = QApplication.instance()
    qapp.applicationStateChanged.emit(Qt.ApplicationState.ApplicationActive)
    assert "control" in t.windows and t.windows["control"].isVisible()


def test_activation_while_a_window_is_open_opens_nothing_more(make_tray, on_macos, qtbot):
    t = make_tray()
    t.open_usage()
    QApplication.instance().applicationStateChanged.emit(Qt.ApplicationState.ApplicationActive)
    assert "control" not in t.windows


def test_activation_elsewhere_opens_no_window(make_tray, qtbot):
    t = make_tray()
    QApplication.instance().applicationStateChanged.emit(Qt.ApplicationState.ApplicationActive)
    assert "control" not in t.windows


@pytest.fixture
def answered_boxes(monkeypatch, ns_app):
    """QMessageBox.exec replaced: records whether, at that moment, the box was on screen, raised and activated
    and the app activated, then answers with the button named by ``answer[0]``."""
    seen: list[dict] = []
    answer = ["Yes"]
    calls: list[tuple[int, str]] = []
    for name in ("raise_", "activateWindow"):
        original = getattr(QMessageBox, name)
        monkeypatch.setattr(
            QMessageBox, name, lambda box, _n=name, _o=original: (calls.append((id(box), _n)), _o(box))[1]
        )

    def exec_(box):
        mine = {n for i, n in calls if i == id(box)}
        seen.append(
            {
                "visible": box.isVisible(),
                "raised": "raise_" in mine,
                "activated": "activateWindow" in mine,
                "app_activated": ("activateIgnoringOtherApps", True) in ns_app.calls,
            }
        )
        for button in box.buttons():
            if button.text().replace("&", "") == answer[0]:
                button.click()
                return 0
        raise AssertionError(f"no {answer[0]} button in {[b.text() for b in box.buttons()]}")

    monkeypatch.setattr(QMessageBox, "exec", exec_)
    return seen, answer


FRONT = {"visible": True, "raised": True, "activated": True, "app_activated": True}


def test_the_quit_question_comes_to_the_front_before_it_waits(make_tray, on_macos, answered_boxes):
    seen, answer = answered_boxes
    answer[0] = "Leave it running"
    t = make_tray()
    assert t.ask_keep_server() is True
    assert seen == [FRONT]


def test_the_may_not_fit_question_comes_to_the_front_before_it_waits(make_tray, on_macos, answered_boxes):
    seen, answer = answered_boxes
    t = make_tray()
    assert t._confirm("Model may not fit", "Start it anyway?") is True
    answer[0] = "No"
    assert t._confirm("Model may not fit", "Start it anyway?") is False
    assert seen == [FRONT] * 2


def test_from_a_pip_install_the_app_keeps_out_of_the_dock(on_macos, ns_app, monkeypatch):
    monkeypatch.setattr(macos.sys, "executable", "/Users/me/.venv/bin/python3")
    assert macos.use_accessory_policy() is True
    assert ns_app.calls == [("setActivationPolicy", macos.NS_ACTIVATION_POLICY_ACCESSORY)]


def test_inside_the_bundle_info_plist_already_says_so(on_macos, ns_app, monkeypatch):
    app = "/Applications/aidevops Local Models.app"
    monkeypatch.setattr(macos.sys, "executable", f"{app}/Contents/MacOS/aidevops-local")
    assert macos.use_accessory_policy() is False
    assert ns_app.calls == []


def test_elsewhere_no_objective_c_is_called(ns_app):
    assert macos.use_accessory_policy() is False
    macos.activate_app()
    assert ns_app.calls == []


def test_the_tray_entry_point_sets_the_policy_before_the_icon_shows():
    import inspect

    from aidevops_local.tray import main

    source = inspect.getsource(main.main)
    assert source.index("macos.use_accessory_policy()") < source.index("TrayApp(")


# ---- notifications the system refuses ----------------------------------------------------------------------


@pytest.fixture
def notification_centre(monkeypatch):
    """desktop-notifier with a backend that answers as macOS does for an app the user has not allowed (or an
    unsigned bundle): authorisation asked and refused, and send() that raises nothing and shows nothing."""
    from desktop_notifier import main as dn_main
    from desktop_notifier.backends.base import DesktopNotifierBackend

    record = {"asked": 0, "checked": 0, "sent": [], "allowed": False}

    class RefusingNotificationCenter(DesktopNotifierBackend):
        async def request_authorisation(self) -> bool:
            record["asked"] += 1
            return record["allowed"]

        async def has_authorisation(self) -> bool:
            record["checked"] += 1
            return record["allowed"]

        async def _send(self, notification) -> None:
            record["sent"].append(notification.title)

        async def _clear(self, identifier: str) -> None:
            pass

        async def _clear_all(self) -> None:
            pass

        async def _get_capabilities(self):
            from desktop_notifier import Capability

            return frozenset({Capability.TITLE, Capability.MESSAGE, Capability.BUTTONS})

    monkeypatch.setattr(dn_main, "get_backend_class", lambda: RefusingNotificationCenter)
    return record


def test_permission_is_asked_at_first_start(notification_centre, qtbot):
    n = Notifications(None, use_native=True)
    try:
        assert n.backend.name == "desktop-notifier"
        qtbot.waitUntil(lambda: notification_centre["asked"] == 1, timeout=5_000)
    finally:
        n.close()


def test_a_refused_crash_notice_becomes_a_dialog_with_its_actions(notification_centre, qtbot):
    n = Notifications(None, use_native=True)
    chosen: list[tuple[str, str]] = []
    n.action.connect(lambda notice, action: chosen.append((notice.kind, action)))
    try:
        n.notify(
            Notice(
                "crash",
                "llama-server stopped unexpectedly",
                "tiny-a exited.",
                (Action("show_log", "Show log"), Action("restart", "Restart")),
                critical=True,
            )
        )
        qtbot.waitUntil(lambda: n.dialog is not None and n.dialog.isVisible(), timeout=5_000)
    finally:
        n.close()
    assert notification_centre["checked"] >= 1 and notification_centre["sent"] == []
    box = n.dialog
    assert box.text() == "llama-server stopped unexpectedly" and box.informativeText() == "tiny-a exited."
    restart = next(b for b in box.buttons() if b.text() == "Restart")
    restart.click()
    assert chosen == [("crash", "restart")]
    assert not box.isVisible()


def test_a_refused_minor_notice_opens_no_dialog(notification_centre, qtbot):
    n = Notifications(None, use_native=True)
    fell_back: list[Notice] = []
    n.router.denied.connect(fell_back.append)
    try:
        n.notify(Notice("nudge", "Unused local models", "2 models unused."))
        qtbot.waitUntil(lambda: len(fell_back) == 1, timeout=5_000)
    finally:
        n.close()
    assert n.dialog is None and notification_centre["sent"] == []


def test_once_allowed_the_notice_goes_to_the_notification_centre(notification_centre, qtbot):
    notification_centre["allowed"] = True
    n = Notifications(None, use_native=True)
    sent: list[tuple[str, str]] = []
    n.sent.connect(lambda backend, title: sent.append((backend, title)))
    try:
        n.notify(Notice("start_failed", "llama-server failed to start", "port in use", critical=True))
        qtbot.waitUntil(lambda: sent == [("desktop-notifier", "llama-server failed to start")], timeout=5_000)
    finally:
        n.close()
    assert notification_centre["sent"] == ["llama-server failed to start"] and n.dialog is None
