"""The tray application: one controller that owns the icon, the menu, the windows and the jobs.

The controller holds the latest snapshot (see snapshot.py) and refreshes it on a timer through a worker;
every piece of UI reads that snapshot. Server actions are core calls run as jobs; while one runs, a stop or
restart it causes is not taken for a crash. Each snapshot goes to the core's supervision policy
(core/serving/supervisor.py), which tells a crash from a stop and decides the restart and its backoff; here a
crash turns the icon to error, raises a notification with "Show log" and "Restart", and a timer restarts it
when the policy says so. The windows and dialogs are in windows.py.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QMenu, QSystemTrayIcon, QWidget

from ..core.serving import server, supervisor
from ..core.serving.state import ServerPhase
from ..core.system import autostart, config
from ..core.system.units import human_bytes
from . import commands, dialogs, icons, macos, menu, snapshot
from .commands import Commands
from .notifications import Action, Notice, Notifications
from .windows import Windows
from .workers import Job, Workers

log = logging.getLogger(__name__)

POLL_FAST_MS = 1000  # while something is starting or a job runs
POLL_RUNNING_MS = 2000  # crash detection within a few seconds
POLL_IDLE_MS = 5000
HEALTH_EVERY_S = 30.0  # a healthy server's /health is probed this often; liveness every poll
FULL_EVERY_S = 60.0  # models, stale list and runtime re-read this often (and on menu open, after jobs)
NUDGE_EVERY_MS = 6 * 3600 * 1000  # cleanup decides whether a day has passed; this only asks


class TrayApp(QObject, Commands, Windows):
    snapshot_changed = Signal(object)
    icon_changed = Signal(str)  # the icon's state: stopped, starting, running, error
    said = Signal(str)  # a command's feedback ("Copied: ..."), for the control window

    def __init__(
        self,
        *,
        use_tray: bool | None = None,
        native_notifications: bool = True,
        parent: QObject | None = None,
    ):
        super().__init__(parent)
        self.workers = Workers(self)
        self.snapshot = snapshot.placeholder()
        self.settings = config.Settings()
        self.busy = ""
        self.last_error = ""
        self.free_port: int | None = None  # offered after the configured port was taken
        self.copied = False  # the endpoint was copied a moment ago: the copy item says so
        self.copied_timer = commands.copied_timer(self)
        self.icon_state = "stopped"
        self.windows: dict[str, QWidget] = {}
        self._server_job: Job | None = None
        self._job_icon = "starting"
        self._refreshing = False
        self._pending_full = False
        self._last_probe = 0.0
        self.supervisor = supervisor.Supervisor()  # crash or stop, and when to restart
        self._wizard_offered = False
        self._quitting = False

        self.menu = QMenu()
        self.menu.setObjectName("tray_menu")
        self.menu.aboutToShow.connect(self._menu_about_to_show)
        available = QSystemTrayIcon.isSystemTrayAvailable() if use_tray is None else use_tray
        self.tray: QSystemTrayIcon | None = None
        if available:
            self.tray = QSystemTrayIcon(self)
            self.tray.setContextMenu(self.menu)
            self.tray.activated.connect(self._tray_activated)
        self.notifications = Notifications(self.tray, self, use_native=native_notifications)
        self.notifications.action.connect(self._notification_action)

        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.timeout.connect(self.refresh)
        self.restart_timer = QTimer(self)  # the policy's next automatic restart; a user's own action cancels it
        self.restart_timer.setSingleShot(True)
        self.restart_timer.timeout.connect(self._auto_restart)
        self._restart_model: str | None = None
        self.nudge_timer = QTimer(self)
        self.nudge_timer.setInterval(NUDGE_EVERY_MS)
        self.nudge_timer.timeout.connect(self.check_nudge)
        if macos.is_macos() and QGuiApplication.instance() is not None:
            QGuiApplication.instance().applicationStateChanged.connect(self._app_state_changed)
        self._set_icon("stopped")

    # ---- lifecycle ----------------------------------------------------------------------------------

    @property
    def quitting(self) -> bool:
        return self._quitting

    def start(self) -> None:
        if self.tray is not None:
            self.tray.show()
        else:
            self.show_control_window()
        self.workers.submit(
            lambda job: config.load_settings(),
            name="settings",
            on_done=self._settings_loaded,
            on_error=lambda exc: self._error_dialog(exc),
        )
        self.workers.submit(
            lambda job: autostart.refresh(),
            name="login entry",
            on_error=lambda exc: log.warning("start at login entry not refreshed: %s", exc),
        )
        self._pending_full = True  # right after the first, quick look at the server
        self.refresh()
        self.nudge_timer.start()
        QTimer.singleShot(10_000, self.check_nudge)  # after start-up, not during it

    def _settings_loaded(self, settings: config.Settings) -> None:
        self.settings = settings

    def shutdown(self, *, stop_server: bool) -> None:
        """Leave: stop the server first if asked, cancel jobs (downloads resume next time), close up."""
        self._quitting = True
        self.timer.stop()
        self.restart_timer.stop()
        self.nudge_timer.stop()
        self.workers.cancel_all()
        if stop_server and self.snapshot.status.running:
            self.busy = "Stopping the server…"
            self._set_icon("stopping")
            self.workers.submit(
                lambda job: server.stop(),
                name="stop",
                on_done=lambda _r: self._finish_quit(),
                on_error=lambda _e: self._finish_quit(),
            )
        else:
            self._finish_quit()

    def _finish_quit(self) -> None:
        self.workers.wait(10)
        self.notifications.close()
        for window in list(self.windows.values()):
            window.close()
        if self.tray is not None:
            self.tray.hide()
        app = QGuiApplication.instance()
        if app is not None:
            app.quit()

    # ---- refreshing ---------------------------------------------------------------------------------

    def refresh(self, full: bool = False) -> None:
        if self._refreshing:
            self._pending_full |= full
            return
        self._refreshing = True
        prev = self.snapshot
        now = time.time()
        full = full or (prev.full_at > 0 and now - prev.full_at > FULL_EVERY_S)
        probe = full or prev.status.state != ServerPhase.RUNNING or now - self._last_probe > HEALTH_EVERY_S
        if probe:
            self._last_probe = now
        self.workers.submit(
            lambda job: snapshot.collect(prev, full=full, probe_health=probe),
            name="refresh",
            on_done=self._apply_snapshot,
            on_error=self._refresh_failed,
        )

    def _refresh_failed(self, exc: BaseException) -> None:
        log.warning("refresh failed: %s", exc)
        self._refreshing = False
        self._schedule()

    def _apply_snapshot(self, snap: snapshot.Snapshot) -> None:
        self._refreshing = False
        prev, self.snapshot = self.snapshot, snap
        if snap.settings is not None:  # a full refresh read them: the tray follows edits made elsewhere
            self.settings = snap.settings
        # A stop, ours or from elsewhere (state "stopping"), is intended; only an exit nobody asked for alerts.
        crash = self.supervisor.observe(
            snap.status, acting=self._server_job is not None, auto_restart=self.settings.auto_restart
        )
        if crash is not None:
            self._on_crash(crash)
        self._update_icon()
        if snap.full_at != prev.full_at:
            snapshot.return_freed_memory()
        if self.menu.isVisible():
            menu.update(self.menu, self)  # in place: an open menu does not flicker with each poll
        self.snapshot_changed.emit(snap)
        if not self._wizard_offered and snap.full_at > 0:
            self._wizard_offered = True
            if snapshot.wizard_needed(snap):
                self.open_wizard()
        if self._pending_full:
            self._pending_full = False
            self.refresh(full=True)
        else:
            self._schedule()

    def _schedule(self) -> None:
        if self._quitting:
            return
        state = self.snapshot.status.state
        if self.busy or state == ServerPhase.STARTING:
            interval = POLL_FAST_MS
        elif state == ServerPhase.RUNNING:
            interval = POLL_RUNNING_MS
        else:
            interval = POLL_IDLE_MS
        self.timer.start(interval)

    # ---- icon and menu ------------------------------------------------------------------------------

    def _update_icon(self) -> None:
        state = self.snapshot.state
        if self.last_error and not self.snapshot.status.running:
            state = "error"
        if self._server_job is not None and (state != ServerPhase.RUNNING or self._job_icon == "stopping"):
            state = self._job_icon
        self._set_icon(state)

    def _set_icon(self, state: str) -> None:
        pressure = self.snapshot.pressure != "normal"
        changed = state != self.icon_state
        self.icon_state = state
        if self.tray is not None:
            self.tray.setIcon(icons.state_icon(state, pressure=pressure))
            self.tray.setToolTip("\n".join(menu.summary(self.snapshot, self.busy, self.last_error)))
        if changed:
            self.icon_changed.emit(state)

    def _menu_about_to_show(self) -> None:
        menu.build(self.menu, self)
        self.refresh(full=True)  # the next opening shows anything this one could not know yet

    def _notification_action(self, notice: Notice, action: str) -> None:
        if action == "use_port":  # a failed start's way out; the rest are the windows' (windows.py)
            self.use_port(self.free_port)
        else:
            Windows._notification_action(self, notice, action)

    def _tray_activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        # A left click has no meaning of its own on most desktops; show the same menu. On macOS the system
        # opens the menu on that click already (Qt 6.5+): popping it again would open it twice.
        if macos.is_macos():
            return
        if reason == QSystemTrayIcon.ActivationReason.Trigger and self.tray is not None:
            geometry = self.tray.geometry()
            self.menu.popup(geometry.bottomLeft() if geometry.isValid() else self.menu.pos())

    # ---- server actions -----------------------------------------------------------------------------

    def _server_action(
        self, busy: str, fn, *, on_done=None, on_failure=None, notify_failure: bool = True, icon: str = "starting"
    ) -> None:
        if self._server_job is not None:
            return
        self.busy, self.last_error, self.free_port = busy, "", None
        self._job_icon = icon  # what the icon shows until the job ends: starting, or stopping
        self._set_icon(icon)

        def finished(result) -> None:
            self._server_job = None
            self.busy = ""
            if on_done:
                on_done(result)
            self.refresh(full=True)

        def failed(exc: BaseException) -> None:
            self._server_job = None
            self.busy = ""
            message, hint, _ = dialogs.error_text(exc)
            self.last_error = message
            if free := self.port_taken(exc):  # a way out: the menu and the notice offer a free port
                hint = f"Use port {free} instead (the tray remembers it), or stop the program that holds it."
            self._set_icon("error")
            if notify_failure:
                offer = (Action("use_port", f"Use port {free}"),) if free else ()
                self.notifications.notify(
                    Notice(
                        "start_failed",
                        "llama-server failed to start",
                        f"{message}\n{hint}".strip(),
                        (Action("show_log", "Show log"), *offer),
                        critical=True,
                    )
                )
            else:
                self._error_dialog(exc)
            if on_failure:
                on_failure(exc)
            self.refresh(full=True)

        def progress(p) -> None:
            if p.total:
                self.busy = f"{p.task} {100 * p.done // max(1, p.total)}%"
            else:
                self.busy = f"{p.task}…"

        self._server_job = self.workers.submit(
            fn,
            name="server",
            on_done=finished,
            on_error=failed,
            on_progress=progress,
            on_cancelled=lambda: finished(None),
        )

    def start_server(self, model: str | None = None) -> None:
        # The model the menu's Start names (the snapshot's start_model): the window and the menu start the same.
        snap = self.snapshot
        name = model or snap.start_model or self.settings.default_model or (snap.served[0] if snap.served else None)
        label = snap.title(name) or "the default model"
        self.restart_timer.stop()
        # A start or a stop is a command: it reads the settings once, in its job, as the CLI's do.
        self._server_action(f"Starting {label}…", lambda job: server.serve(name or None, progress=job.report))

    def stop_server(self) -> None:
        self.restart_timer.stop()
        self._server_action("Stopping the server…", lambda job: server.stop(), notify_failure=False, icon="stopping")

    def switch_model(self, name: str) -> None:
        entry = self.snapshot.model(name)
        if name in self.snapshot.served and self.snapshot.status.running:
            return
        if (
            entry is not None
            and entry.fits is False
            and not self._confirm(
                "Model may not fit",
                f"{entry.title} needs about {human_bytes(entry.needs_bytes)} and may not fit in memory. "
                "Start it anyway?",
            )
        ):
            return

        def job_fn(job: Job):
            settings = config.load_settings()  # read once for the switch and the save after it
            status = supervisor.switch_model(name, progress=job.report, cancel=job.cancel, settings=settings)
            if settings.default_model != name:  # Start serves the last model chosen
                config.save_settings(replace(settings, default_model=name))
            return status

        self.settings = replace(self.settings, default_model=name)
        self.restart_timer.stop()
        self._server_action(f"Switching to {self.snapshot.title(name)}…", job_fn)

    # ---- crashes and notifications ------------------------------------------------------------------

    def _on_crash(self, crash: supervisor.Crash) -> None:
        log.warning("llama-server (pid %s) exited on its own", crash.pid)
        actions = (Action("show_log", "Show log"),)
        if crash.restart_in is None:
            actions += (Action("restart", "Restart"),)
        else:
            self._schedule_restart(crash)
        self.notifications.notify(
            Notice(
                "crash", "llama-server stopped unexpectedly", crash.body, actions, critical=True, ref=crash.model or ""
            )
        )

    def _schedule_restart(self, crash: supervisor.Crash) -> None:
        self._restart_model = crash.model
        self.restart_timer.start(int(crash.restart_in * 1000))

    def _auto_restart(self) -> None:
        if self.supervisor.may_restart(self.snapshot.status) and not self._quitting:
            self.restart_server(self._restart_model, automatic=True)

    def restart_server(self, model: str | None = None, *, automatic: bool = False) -> None:
        """After a crash, as `serve --supervise` does (supervisor.restart): a start where the crashed server
        listened, or, where a router outlived its model's instance, a load request. An automatic restart that
        fails counts as a try: the policy schedules the next one, or none when the tries are spent."""
        name = model or self.snapshot.status.model
        crashed = self.snapshot.status
        self.restart_timer.stop()  # one restart at a time: a pending automatic one is this one

        def failed(_exc: BaseException) -> None:
            crash = self.supervisor.restart_failed(crashed)
            if crash.restart_in is not None:
                self._schedule_restart(crash)

        self._server_action(
            f"Restarting {self.snapshot.title(name) or 'the server'}…",
            lambda job: supervisor.restart(name, progress=job.report),
            on_failure=failed if automatic else None,
        )
