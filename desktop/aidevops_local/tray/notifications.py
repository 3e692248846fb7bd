"""Native notifications with action buttons.

Backends behind one small base, chosen by priority (as vorta does): desktop-notifier, which speaks the
freedesktop notification service on Linux (actions included) and the user notification centre on macOS
(inside an app bundle), then Qt's own tray balloon, which has no buttons but can still be clicked.

On macOS the notification centre drops a notice without a word when the user has not allowed the app (or the
bundle is unsigned), so permission is asked at start and checked before each send: a refused crash or start
failure is shown as a dialog instead; a refused minor notice is only logged (the icon still shows the state).

desktop-notifier is asyncio code. Rather than replacing Qt's event loop, it runs on a loop of its own in one
daemon thread; its callbacks cross back to the GUI thread as a queued Qt signal. An idle asyncio loop sleeps
in epoll, so the thread costs nothing between notifications. On Linux it starts with the first notice, not
with the tray: an idle tray that has nothing to say loads neither asyncio nor the D-Bus library.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QMessageBox, QSystemTrayIcon

from . import macos

log = logging.getLogger(__name__)
APP_NAME = "aidevops Local Models"


@dataclass(frozen=True)
class Action:
    id: str  # what the tray acts on: "review", "later", "show_log", "restart", "open_chat"
    label: str


@dataclass(frozen=True)
class Notice:
    kind: str  # "crash", "start_failed", "download", "nudge": the tray routes actions by it
    title: str
    body: str
    actions: tuple[Action, ...] = field(default_factory=tuple)
    critical: bool = False
    ref: str = ""  # what the notice is about (a model name), for the action handler


class Backend(ABC):
    name = "base"

    @abstractmethod
    def send(self, notice: Notice) -> None:
        """Show the notice; never raises (a notification that cannot be shown is only logged)."""

    def close(self) -> None:  # noqa: B027 - optional hook: most backends hold nothing to release
        pass


class Router(QObject):
    """Carries "this action of this notice was chosen" to the GUI thread."""

    action = Signal(object, str)  # the Notice, the action id ("default" for a click on the body)
    sent = Signal(str, str)  # backend name, title: for tests and the log
    unavailable = Signal(object)  # a Notice the backend could not deliver: the next backend gets it
    denied = Signal(object)  # a Notice the system would drop: notifications are not allowed for this app


class DesktopNotifierBackend(Backend):
    name = "desktop-notifier"

    def __init__(self, router: Router):
        import asyncio  # imported when first used: keeps the idle tray light

        self.router = router
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._notifier = None
        self._thread = threading.Thread(target=self._run, name="notifications", daemon=True)
        self._thread.start()
        self._ready.wait(5)

    def _run(self) -> None:
        import asyncio

        asyncio.set_event_loop(self._loop)
        from desktop_notifier import DesktopNotifier, Icon

        from ..core.system import config
        from .icons import app_icon_png

        # A PNG: a daemon without an SVG loader (dunst without librsvg) shows no icon for an SVG.
        icon = app_icon_png(config.paths().cache_dir)
        self._notifier = DesktopNotifier(app_name=APP_NAME, app_icon=Icon(path=icon))
        self._loop.create_task(self._ask_permission())  # macOS asks the user once; later it only answers
        self._ready.set()
        self._loop.run_forever()

    async def _ask_permission(self) -> None:
        try:
            if not await self._notifier.request_authorisation():
                log.warning("Notifications are not allowed for this app; crashes will be shown as dialogs")
        except Exception as exc:
            log.warning("Could not ask for notification permission (%s)", type(exc).__name__)

    @staticmethod
    def usable() -> bool:
        from desktop_notifier.main import get_backend_class

        return get_backend_class().__name__ != "DummyNotificationCenter"

    def send(self, notice: Notice) -> None:
        import asyncio

        asyncio.run_coroutine_threadsafe(self._send(notice), self._loop)

    async def _send(self, notice: Notice) -> None:
        from desktop_notifier import Button, Urgency

        emit = self.router.action.emit
        try:
            if not await self._notifier.has_authorisation():  # send() would drop it without a word
                log.warning("Notification not allowed by the system: %s", notice.title)
                self.router.denied.emit(notice)
                return
            await self._notifier.get_capabilities()  # fails fast when no notification service answers
            buttons = [
                Button(title=a.label, identifier=a.id, on_pressed=lambda a=a: emit(notice, a.id))
                for a in notice.actions
            ]
            await self._notifier.send(
                title=notice.title,
                message=notice.body,
                buttons=buttons,
                urgency=Urgency.Critical if notice.critical else Urgency.Normal,
                on_clicked=lambda: emit(notice, "default"),
            )
        except Exception as exc:
            log.warning("Notification service unavailable (%s); falling back", type(exc).__name__)
            self.router.unavailable.emit(notice)
            return
        self.router.sent.emit(self.name, notice.title)

    def close(self) -> None:
        import asyncio

        if self._loop.is_running():
            try:  # let notifications already on their way reach the daemon
                asyncio.run_coroutine_threadsafe(self._drain(), self._loop).result(3)
            except Exception:
                pass
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(2)

    async def _drain(self) -> None:
        import asyncio

        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if pending:
            await asyncio.wait(pending, timeout=2)


class BalloonBackend(Backend):
    """Qt's tray message: drawn by the tray host (or Qt itself under XEmbed). One click = the first action."""

    name = "balloon"

    def __init__(self, router: Router, tray: QSystemTrayIcon | None):
        self.router = router
        self.tray = tray
        self._last: Notice | None = None
        if tray is not None:
            tray.messageClicked.connect(self._clicked)

    def send(self, notice: Notice) -> None:
        if self.tray is None or not self.tray.isVisible():
            log.info("No way to show a notification: %s", notice.title)
            return
        self._last = notice
        icon = QSystemTrayIcon.MessageIcon.Critical if notice.critical else QSystemTrayIcon.MessageIcon.Information
        hint = f"\n(click: {notice.actions[0].label})" if notice.actions else ""
        self.tray.showMessage(notice.title, notice.body + hint, icon, 10_000)
        self.router.sent.emit(self.name, notice.title)

    def _clicked(self) -> None:
        if self._last is not None:
            first = self._last.actions[0].id if self._last.actions else "default"
            self.router.action.emit(self._last, first)


class Notifications(QObject):
    """The tray's one way to notify. ``action`` fires on the GUI thread with (Notice, action id)."""

    action = Signal(object, str)
    sent = Signal(str, str)

    def __init__(self, tray: QSystemTrayIcon | None = None, parent: QObject | None = None, use_native: bool = True):
        super().__init__(parent)
        self.router = Router(self)
        self.router.action.connect(self.action)
        self.router.sent.connect(self.sent)
        self.fallback = BalloonBackend(self.router, tray)
        self.router.unavailable.connect(self.fallback.send)
        self.router.denied.connect(self._denied)
        self.dialog: QMessageBox | None = None  # the last refused critical notice, shown instead
        self._native: Backend | None = None
        self._native_wanted = use_native  # until the first notice (or macOS's start) decides it
        if use_native and macos.is_macos():
            self._choose()  # macOS asks the user's permission at start, not with the first crash

    @property
    def backend(self) -> Backend:
        return self._choose()

    def _choose(self) -> Backend:
        """desktop-notifier where it is usable, else the balloon. Chosen on first use (at start on macOS): its
        asyncio loop, D-Bus library and thread load only once there is something to say, keeping the idle tray
        light."""
        if self._native_wanted:
            self._native_wanted = False
            if DesktopNotifierBackend.usable():
                self._native = DesktopNotifierBackend(self.router)
        return self._native or self.fallback

    def notify(self, notice: Notice) -> None:
        self.backend.send(notice)

    def _denied(self, notice: Notice) -> None:
        if notice.critical:
            self._show_dialog(notice)

    def _show_dialog(self, notice: Notice) -> None:
        """A refused crash or start failure as a non-modal dialog with the notice's actions as buttons."""
        if self.dialog is not None:
            self.dialog.close()
        box = QMessageBox(QMessageBox.Icon.Warning, notice.title, notice.title)  # macOS alerts show no title bar
        box.setInformativeText(notice.body)
        box.setObjectName("notification_dialog")
        actions = {box.addButton(a.label, QMessageBox.ButtonRole.ActionRole): a.id for a in notice.actions}
        box.addButton(QMessageBox.StandardButton.Close)
        box.buttonClicked.connect(lambda button: button in actions and self.action.emit(notice, actions[button]))
        box.setModal(False)
        self.dialog = box
        macos.activate_app()
        box.show()
        box.raise_()

    def close(self) -> None:
        if self._native is not None:  # never started: nothing to close
            self._native.close()
        self._native_wanted = False
