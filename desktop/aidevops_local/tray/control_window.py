"""A small window with the menu's controls: shown instead of the icon where the desktop has no tray (GNOME
without the AppIndicator extension), and when a second launch asks the running tray to come forward."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QGridLayout, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ..core.serving.state import ServerPhase
from . import menu

NO_TRAY_TEXT = (
    "Your desktop shows no system tray, so aidevops Local Models runs in this window. "
    "On GNOME, install and enable the AppIndicator extension "
    "(package gnome-shell-extension-appindicator) and start the app again to get a tray icon."
)


class ControlWindow(QWidget):
    def __init__(self, app, *, no_tray: bool):
        super().__init__()
        self.app = app
        self.no_tray = no_tray
        self.setObjectName("control_window")
        self.setWindowTitle("aidevops Local Models")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        layout = QVBoxLayout(self)
        if no_tray:
            banner = QLabel(NO_TRAY_TEXT, wordWrap=True, objectName="no_tray_banner")
            banner.setStyleSheet("padding: 6px; border: 1px solid palette(mid);")
            layout.addWidget(banner)
        self.state = QLabel(objectName="state")
        self.state.setStyleSheet("font-weight: bold")
        self.memory = QLabel(objectName="memory")
        layout.addWidget(self.state)
        layout.addWidget(self.memory)

        row = QHBoxLayout()
        self.start_stop = QPushButton(objectName="start_stop")
        self.start_stop.clicked.connect(self._start_stop)
        self.models = QComboBox(objectName="models")
        self.switch = QPushButton("Serve this model", objectName="switch")
        self.switch.clicked.connect(self._switch)
        row.addWidget(self.start_stop)
        row.addWidget(self.models, 1)
        row.addWidget(self.switch)
        layout.addLayout(row)

        grid = QGridLayout()
        buttons = [
            ("Open chat", app.open_chat, "chat"),
            ("Copy API endpoint", app.copy_endpoint, "copy"),
            ("Download a model…", app.open_download, "download"),
            ("Usage…", app.open_usage, "usage"),
            ("Clean up…", app.open_cleanup, "cleanup"),
            ("Settings…", app.open_settings, "settings"),
            ("Setup wizard…", app.open_wizard, "wizard"),
            ("Quit", app.quit, "quit"),
        ]
        self.buttons: dict[str, QPushButton] = {}
        for i, (text, slot, name) in enumerate(buttons):
            button = QPushButton(text, objectName=name)
            button.clicked.connect(slot)
            grid.addWidget(button, i // 4, i % 4)
            self.buttons[name] = button
        layout.addLayout(grid)
        app.snapshot_changed.connect(self.update_from)
        self.update_from(app.snapshot)

    def update_from(self, snap) -> None:
        self.state.setText(menu.state_line(snap, self.app.busy, self.app.last_error))
        self.memory.setText("   ".join(menu.memory_lines(snap)))
        running = snap.status.running
        self.start_stop.setText("Stop server" if running else "Start server")
        self.start_stop.setEnabled(running or (snap.runtime_installed and bool(snap.models)))
        current = self.models.currentData()
        self.models.blockSignals(True)
        self.models.clear()
        for entry in snap.models:
            self.models.addItem(menu.model_label(entry), entry.name)
        served = snap.served[0] if snap.served else current
        index = self.models.findData(served)
        self.models.setCurrentIndex(max(0, index))
        self.models.blockSignals(False)
        self.switch.setEnabled(bool(snap.models))
        self.buttons["chat"].setEnabled(snap.status.state == ServerPhase.RUNNING)
        self.buttons["copy"].setEnabled(running)
        self.buttons["cleanup"].setEnabled(bool(snap.stale and snap.stale.count))

    def _start_stop(self) -> None:
        if self.app.snapshot.status.running:
            self.app.stop_server()
        else:
            self.app.start_server(self.models.currentData())

    def _switch(self) -> None:
        name = self.models.currentData()
        if name:
            self.app.switch_model(name)

    def closeEvent(self, event) -> None:
        # Without a tray this window is the app: closing it is quitting (which asks about the server).
        if self.no_tray and not self.app.quitting:
            event.ignore()
            self.app.quit()
            return
        super().closeEvent(event)
