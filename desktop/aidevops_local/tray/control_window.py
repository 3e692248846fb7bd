"""A small window with the menu's controls: shown instead of the icon where the desktop has no tray (GNOME
without the AppIndicator extension), when a second launch asks the running tray to come forward, and from
the menu's header.

It says what the menu says (menu.summary) and offers the same actions (actions.py), and Start serves the
same model the menu's Start names (the snapshot's start_model) until another is chosen in the list. Usable
without a mouse: the model list takes the focus first, Tab walks the buttons in order, and the main actions
have shortcuts (shown in their tooltips).
"""

from __future__ import annotations

from html import escape

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence
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
LINES = (  # the header's labels: object name, accessible name
    ("state", "Server state"),
    ("detail", "Model details"),
    ("activity", "Server activity"),
    ("memory", "Memory pressure"),
    ("feedback", "Last command"),
)


class ControlWindow(QWidget):
    def __init__(self, app, *, no_tray: bool):
        super().__init__()
        self.app = app
        self.no_tray = no_tray
        self._chosen: str | None = None  # a model picked in the list; until then, the menu's Start model
        self.setObjectName("control_window")
        self.setWindowTitle("aidevops Local Models")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        layout = QVBoxLayout(self)
        if no_tray:
            banner = QLabel(NO_TRAY_TEXT, wordWrap=True, objectName="no_tray_banner")
            banner.setStyleSheet("padding: 6px; border: 1px solid palette(mid);")
            layout.addWidget(banner)
        self.lines: dict[str, QLabel] = {}
        for name, accessible in LINES:
            label = QLabel(objectName=name, wordWrap=True)
            label.setAccessibleName(accessible)
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            layout.addWidget(label)
            self.lines[name] = label
        self.state, self.memory = self.lines["state"], self.lines["memory"]
        self.state.setStyleSheet("font-weight: bold; font-size: 12pt")

        # The menu's actions (actions.py), as buttons: start, stop and switch beside the model list, the rest below.
        self.buttons: dict[str, QPushButton] = {}
        for action in actions.ACTIONS:
            button = QPushButton(action.label, self, objectName=action.id)  # parented: never a window of its own
            button.clicked.connect(lambda _checked=False, a=action: self._clicked(a))
            if action.shortcut:
                button.setShortcut(QKeySequence(action.shortcut))
                shown = QKeySequence(action.shortcut).toString(QKeySequence.SequenceFormat.NativeText)
                button.setToolTip(f"{action.label.rstrip('…')} ({shown})")
            self.buttons[action.id] = button
        self.models = QComboBox(objectName="models")
        self.models.setAccessibleName("Model to serve")
        self.models.activated.connect(self._model_chosen)
        self.buttons["switch"].setText("&Serve this model")
        row = QHBoxLayout()
        for widget in (self.models, self.buttons["switch"], self.buttons["start"], self.buttons["stop"]):
            row.addWidget(widget, 1 if widget is self.models else 0)
        layout.addLayout(row)
        self.grid = QGridLayout()
        layout.addLayout(self.grid)
        app.snapshot_changed.connect(self.update_from)
        if hasattr(app, "said"):
            app.said.connect(self.lines["feedback"].setText)
        self.update_from(app.snapshot)
        self.models.setFocus()

    def _model_chosen(self, index: int) -> None:
        self._chosen = self.models.itemData(index)
        self.update_from(self.app.snapshot)

    def update_from(self, snap) -> None:
        self._fill_lines(snap)
        self.models.blockSignals(True)
        self.models.clear()
        for entry in snap.models:
            self.models.addItem(menu.model_label(entry), entry.name)
        # What is served, else the model picked here, else the one the menu's Start names.
        chosen = snap.served[0] if snap.served else self._chosen or snap.start_model
        self.models.setCurrentIndex(max(0, self.models.findData(chosen)))
        self.models.blockSignals(False)
        view = actions.view_of(self.app)
        for action in actions.ACTIONS:
            button = self.buttons[action.id]
            button.setHidden(not action.shown(view))
            button.setEnabled(action.enabled(view))
            if action.id != "switch":
                button.setText(self._label(action, snap, view))
        self._place_below(view)

    def _fill_lines(self, snap) -> None:
        app = self.app
        texts = {
            "state": menu.state_line(snap, app.busy, app.last_error),
            "detail": menu.detail_line(snap),
            "activity": menu.activity_line(snap),
        }
        for name, text in texts.items():
            self.lines[name].setText(text)
            self.lines[name].setHidden(not text)
        line = menu.memory_line(snap)
        colour = menu.LEVEL_COLOURS.get(snap.pressure_level, "")
        # The level's colour beside its word, never instead of it.
        self.memory.setText(f'<span style="color:{colour}">●</span> {escape(line)}' if line else "")
        self.memory.setAccessibleDescription(line)
        self.memory.setHidden(not line)
        self.lines["feedback"].setHidden(not self.lines["feedback"].text())

    def _label(self, action: actions.Action, snap, view: actions.View) -> str:
        """The action's menu text; Start names the model chosen in the list (what a click serves)."""
        if action.id == "start" and snap.status.state != ServerPhase.CRASHED:
            entry = snap.model(self.models.currentData() or "")
            if entry is not None:
                return f"Start {entry.title}"
        return action.text(snap, view)

    def _place_below(self, view: actions.View) -> None:
        """The other actions in a grid, filled in order by those shown: a hidden one leaves no hole. Tab follows
        the same order."""
        below = [self.buttons[a.id] for a in actions.ACTIONS if a.id not in ROW]
        for button in below:
            self.grid.removeWidget(button)
        shown = [self.buttons[a.id] for a in actions.ACTIONS if a.id not in ROW and a.shown(view)]
        for i, button in enumerate(shown):
            self.grid.addWidget(button, i // GRID_COLUMNS, i % GRID_COLUMNS)
        order = [self.models, self.buttons["switch"], self.buttons["start"], self.buttons["stop"], *shown]
        for first, second in zip(order, order[1:]):
            QWidget.setTabOrder(first, second)

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
