"""A small window with the menu's controls: shown instead of the icon where the desktop has no tray (GNOME
without the AppIndicator extension), and when a second launch asks the running tray to come forward."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QGridLayout, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ..core.serving.state import ServerPhase
from . import actions, menu

ROW = ("start", "stop", "switch")  # beside the model list
GRID_COLUMNS = 4

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

        # The menu's actions (actions.py), as buttons: start, stop and switch beside the model list, the rest below.
        self.buttons: dict[str, QPushButton] = {}
        for action in actions.ACTIONS:
            button = QPushButton(action.label, self, objectName=action.id)  # parented: never a window of its own
            button.clicked.connect(lambda _checked=False, a=action: self._clicked(a))
            self.buttons[action.id] = button
        self.models = QComboBox(objectName="models")
        self.buttons["switch"].setText("Serve this model")
        row = QHBoxLayout()
        for widget in (self.buttons["start"], self.buttons["stop"], self.models, self.buttons["switch"]):
            row.addWidget(widget, 1 if widget is self.models else 0)
        layout.addLayout(row)
        self.grid = QGridLayout()
        layout.addLayout(self.grid)
        app.snapshot_changed.connect(self.update_from)
        self.update_from(app.snapshot)

    def update_from(self, snap) -> None:
        self.state.setText(menu.state_line(snap, self.app.busy, self.app.last_error))
        self.memory.setText("   ".join(menu.memory_lines(snap)))
        current = self.models.currentData()
        self.models.blockSignals(True)
        self.models.clear()
        for entry in snap.models:
            self.models.addItem(menu.model_label(entry), entry.name)
        served = snap.served[0] if snap.served else current
        index = self.models.findData(served)
        self.models.setCurrentIndex(max(0, index))
        self.models.blockSignals(False)
        view = actions.View(snap, self.app.busy, self.app.last_error)
        for action in actions.ACTIONS:
            button = self.buttons[action.id]
            button.setHidden(not action.shown(view))
            button.setEnabled(action.enabled(view))
            if action.id != "switch":
                button.setText(action.text(snap))
        self._place_below(view)

    def _place_below(self, view: actions.View) -> None:
        """The other actions in a grid, filled in order by those shown: a hidden one leaves no hole."""
        below = [self.buttons[a.id] for a in actions.ACTIONS if a.id not in ROW]
        for button in below:
            self.grid.removeWidget(button)
        shown = [self.buttons[a.id] for a in actions.ACTIONS if a.id not in ROW and a.shown(view)]
        for i, button in enumerate(shown):
            self.grid.addWidget(button, i // GRID_COLUMNS, i % GRID_COLUMNS)

    def _clicked(self, action: actions.Action) -> None:
        """Start serves the model chosen in the list; switch serves it instead; the rest call the app as is."""
        name = self.models.currentData()
        if action.id == "switch":
            if name:
                self.app.switch_model(name)
        elif action.id == "start" and self.app.snapshot.status.state != ServerPhase.CRASHED:
            self.app.start_server(name)
        else:
            action.slot(self.app, self.app.snapshot)()

    def closeEvent(self, event) -> None:
        # Without a tray this window is the app: closing it is quitting (which asks about the server).
        if self.no_tray and not self.app.quitting:
            event.ignore()
            self.app.quit()
            return
        super().closeEvent(event)
