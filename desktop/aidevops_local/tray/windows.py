"""The tray controller's windows and questions: one window of each kind, shown and raised again when asked
for twice; the log; the dialogs that ask (may not fit, quit and leave the
server running?); the nudge about unused models. Copying the endpoint and opening chat are commands.py's.

Kept apart from app.py, which owns the timers, the polling and the icon; this part only opens things. It is
a mixin of TrayApp and reads what TrayApp holds (windows, workers, snapshot, settings, tray).
"""

from __future__ import annotations

import logging

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QMessageBox

from . import dialogs, snapshot
from .notifications import Notice
from .workers import Job

log = logging.getLogger(__name__)


class Windows:
    """TrayApp's windows and dialogs (a mixin: TrayApp holds the state)."""

    def show_log(self) -> None:
        snap = self.snapshot

        def read(job: Job):
            path = snapshot.log_path(snap)
            return path, dialogs.read_log(path)

        window = self._window("log", dialogs.LogWindow)
        self.workers.submit(read, name="log", on_done=lambda r: window.set_text(*r))

    def _window(self, key: str, factory):
        window = self.windows.get(key)
        if window is None:
            window = factory()
            self.windows[key] = window
            window.destroyed.connect(lambda *_: self.windows.pop(key, None))
        window.show()
        window.raise_()
        window.activateWindow()
        return window

    def _error_dialog(self, exc: BaseException) -> None:
        dialogs.show_error(None, exc)

    def _confirm(self, title: str, text: str) -> bool:
        box = QMessageBox(
            QMessageBox.Icon.Question, title, text, QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No
        )
        dialogs.ask(box)
        return box.standardButton(box.clickedButton()) == QMessageBox.StandardButton.Yes

    def _app_state_changed(self, state: Qt.ApplicationState) -> None:
        """macOS: opening the app again (Finder, Spotlight) sends no second process but a reopen event, which
        Qt reports as the app becoming active. With none of our windows open that is the user asking for the
        app: show the control window (the only way in when the icon hides behind the notch)."""
        if state != Qt.ApplicationState.ApplicationActive or self._quitting:
            return
        if QApplication.activeModalWidget() is not None or any(w.isVisible() for w in self.windows.values()):
            return  # one of ours was brought forward (a dialog, a window): that is all this activation means
        self.show_control_window()

    def show_control_window(self) -> None:
        from .control_window import ControlWindow

        self._window("control", lambda: ControlWindow(self, no_tray=self.tray is None))

    def open_models(self) -> None:
        from .models_window import ModelsWindow

        self._window("models", lambda: ModelsWindow(self))

    def open_download(self) -> None:
        from .download_window import DownloadWindow

        self._window("download", lambda: DownloadWindow(self))

    def open_usage(self) -> None:
        from .usage_window import UsageWindow

        self._window("usage", lambda: UsageWindow(self))

    def open_cleanup(self) -> None:
        from .cleanup_window import CleanupWindow

        self._window("cleanup", lambda: CleanupWindow(self))

    def open_settings(self) -> None:
        from .settings_window import SettingsWindow

        self._window("settings", lambda: SettingsWindow(self))

    def open_wizard(self) -> None:
        from .wizard import Wizard

        self._window("wizard", lambda: Wizard(self))

    def handle_request(self, request: str) -> None:
        """What a second launch asked for."""
        if request == "wizard":
            self.open_wizard()
        else:
            self.show_control_window()

    def _notification_action(self, notice: Notice, action: str) -> None:
        log.info("notification %s: %s", notice.kind, action)
        if action == "show_log" or (notice.kind in ("crash", "start_failed") and action == "default"):
            self.show_log()
        elif action == "restart":
            self.restart_server(notice.ref or None)
        elif action == "serve":
            self.switch_model(notice.ref)
        elif action == "review" or (notice.kind == "nudge" and action == "default"):
            self.open_cleanup()

    def check_nudge(self) -> None:
        from ..core.maintenance import cleanup
        from .cleanup_texts import nudge_notice

        self.workers.submit(
            lambda job: nudge_notice(cleanup.nudge()),  # names the models: reads their headers, off the GUI thread
            name="nudge",
            on_done=self._nudge_result,
            on_error=lambda exc: log.warning("nudge: %s", exc),
        )

    def _nudge_result(self, notice: Notice | None) -> None:
        if notice is not None:
            self.notifications.notify(notice)

    # ---- quitting -----------------------------------------------------------------------------------

    def quit(self) -> None:
        if not self.snapshot.status.running:
            self.shutdown(stop_server=False)
            return
        choice = self.ask_keep_server()
        if choice is not None:
            self.shutdown(stop_server=not choice)

    def ask_keep_server(self) -> bool | None:
        """True: leave the server running; False: stop it; None: do not quit."""
        box = QMessageBox(
            QMessageBox.Icon.Question,
            "Quit aidevops Local Models",
            f"The server is running {self.snapshot.status.model}. Leave it running for other "
            "tools after the tray quits?",
        )
        box.setObjectName("quit_dialog")
        leave = box.addButton("Leave it running", QMessageBox.ButtonRole.AcceptRole)
        stop = box.addButton("Stop the server", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(leave if self.settings.keep_server_on_quit else stop)
        dialogs.ask(box)
        clicked = box.clickedButton()
        return True if clicked is leave else False if clicked is stop else None
