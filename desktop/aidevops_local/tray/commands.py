"""The tray's smaller commands, each saying what it did or why it could not: copy the endpoint ("Copied" for a
moment), open the chat page (or say no browser opened, with the URL), open the models folder, unload the
model and keep the server, use a free port when the configured one is taken (and remember it), check for a
newer llama.cpp, About.

A mixin of TrayApp, like windows.py: it reads what TrayApp holds (snapshot, settings, workers, tray) and
starts server jobs through its _server_action.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from PySide6.QtCore import QTimer, QUrl
from PySide6.QtGui import QDesktopServices, QGuiApplication
from PySide6.QtWidgets import QMessageBox, QSystemTrayIcon

from ..core.serving import api_key, router, server
from ..core.system import config, ports
from ..core.system.errors import PortInUse
from . import dialogs
from .workers import Job

log = logging.getLogger(__name__)
COPIED_FOR_MS = 2000  # how long the copy item says "Copied"


class Commands:
    """TrayApp's commands with feedback (a mixin: TrayApp holds the state and the `said` signal)."""

    free_port: int | None = None
    copied: bool = False

    def say(self, title: str, text: str, *, warning: bool = False) -> None:
        """Feedback for a command: a tray message where there is a tray; the control window shows it too."""
        log.info("%s: %s", title, text)
        if self.tray is not None:
            icon = QSystemTrayIcon.MessageIcon.Warning if warning else QSystemTrayIcon.MessageIcon.Information
            self.tray.showMessage(title, text, icon, 4000)
        self.said.emit(f"{title}: {text}")

    def copy_endpoint(self) -> None:
        endpoint = self.snapshot.status.endpoint
        if not (endpoint and self.snapshot.status.running):
            self.say("Nothing to copy", "The server is not running: start it first.", warning=True)
            return
        QGuiApplication.clipboard().setText(endpoint)
        self.copied = True
        self.copied_timer.start(COPIED_FOR_MS)
        self.say("Copied", f"{endpoint} is on the clipboard.")
        self.snapshot_changed.emit(self.snapshot)  # the window's button says "Copied" too

    def _copied_over(self) -> None:
        self.copied = False
        self.snapshot_changed.emit(self.snapshot)

    def open_chat(self) -> None:
        endpoint = self.snapshot.status.endpoint  # its host already bracketed where it is IPv6
        if not (self.snapshot.status.running and endpoint):
            self.say("Chat not available", "The server is not running: start it first.", warning=True)
            return
        url = endpoint.removesuffix("/v1") + "/"
        if QDesktopServices.openUrl(QUrl(url)):
            self.say("Opening chat", f"{url} in your browser.")
        else:
            QGuiApplication.clipboard().setText(url)
            self.say("No browser opened", f"Open {url} yourself (it is on the clipboard).", warning=True)

    def open_models_folder(self) -> None:
        folder = config.paths().models_dir
        folder.mkdir(parents=True, exist_ok=True)
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder))):
            QGuiApplication.clipboard().setText(str(folder))
            self.say("No file manager opened", f"The models folder is {folder} (on the clipboard).", warning=True)

    def unload_model(self) -> None:
        """A router's model out of memory, the server kept: the next request that names it loads it again."""
        status = self.snapshot.status
        if not (self.snapshot.router_active and status.model and status.endpoint):
            return
        base, model = status.endpoint.removesuffix("/v1"), status.model
        headers_required = status.api_key_required
        title = self.snapshot.title(model)
        self._server_action(
            f"Unloading {title}…",
            lambda job: router.unload(base, model, headers=api_key.headers(required=headers_required)),
            on_done=lambda _r: self.say("Unloaded", f"{title} left memory; the server still runs."),
            notify_failure=False,
        )

    def port_taken(self, exc: BaseException) -> int | None:
        """After a failed start: a free port to offer when the configured one was taken, else None."""
        if not isinstance(exc, PortInUse):
            self.free_port = None
            return None
        self.free_port = ports.free_port_near(self.settings.host, self.settings.port)
        return self.free_port

    def use_port(self, port: int | None) -> None:
        """Serve on ``port`` and keep it in the settings: the next start, the CLI's too, uses it."""
        if not port:
            return
        self.free_port = None
        model = self.snapshot.start_model or None

        def job_fn(job: Job):
            config.save_settings(replace(config.load_settings(), port=port))
            return server.serve(model, progress=job.report)

        self.settings = replace(self.settings, port=port)
        self.restart_timer.stop()
        self._server_action(f"Starting on port {port}…", job_fn)

    def check_updates(self) -> None:
        from ..core.llamacpp import runtime

        self.workers.submit(
            lambda job: runtime.check_update(),
            name="update check",
            on_done=self._update_checked,
            on_error=lambda exc: self._error_dialog(exc),
        )

    def _update_checked(self, check) -> None:
        if not check.update_available:
            self.say("Up to date", f"llama.cpp {check.latest_tag} is the latest release.")
            return
        have = check.installed.tag or check.installed.version if check.installed else "not installed"
        if self._confirm("Update llama.cpp", f"llama.cpp {check.latest_tag} is out (you have {have}). Update now?"):
            from ..core.llamacpp import runtime

            self._server_action(
                "Updating llama.cpp…",
                lambda job: runtime.update(progress=job.report, cancel=job.cancel),
                on_done=lambda _r: self.say("Updated", f"llama.cpp {check.latest_tag} is installed."),
                notify_failure=False,
            )

    def show_about(self) -> None:
        dialogs.ask(about_box(self.snapshot))


def about_box(snap) -> QMessageBox:
    """The About box for a snapshot (the version, the llama.cpp build); apart, so the screenshots draw it too."""
    from .. import __version__  # read when first shown: importlib.metadata stays out of the idle tray

    runtime = f"llama.cpp {snap.runtime_label}" if snap.runtime_label else "llama.cpp not installed"
    box = QMessageBox(
        QMessageBox.Icon.Information,
        "About aidevops Local Models",
        f"aidevops Local Models {__version__}\n{runtime}\n\nLocal models served by llama.cpp, "
        "with an OpenAI-compatible endpoint on this machine.",
    )
    box.setObjectName("about_dialog")
    return box


def copied_timer(parent) -> QTimer:
    timer = QTimer(parent)
    timer.setSingleShot(True)
    timer.timeout.connect(parent._copied_over)
    return timer
