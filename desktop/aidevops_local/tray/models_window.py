"""The models on this machine, as a library: name, size, quant, trained context, last use, requests and where
each came from, with Serve, Set as default, Remove and Show in folder. Reading the disk and removing run in
workers (core.models.library and core.maintenance.removal, the same calls as `models` and `rm`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices, QKeySequence
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core.models.library import LocalModel
from ..core.system.units import human_bytes
from ..core.system.untrusted import printable
from . import dialogs
from .window_keys import close_on_escape, shortcut

COLUMNS = ("Name", "Size", "Quant", "Context", "Last used", "Requests", "From")
# Where a model lives, in the words of the place a person knows (library.LocalModel.where).
FROM_WORDS = {
    "HF cache": "Hugging Face cache",
    "llama.cpp cache": "llama.cpp's cache",
    "LM Studio": "LM Studio's folder",
    "old helper": "The old aidevops helper",
    "path": "A file you chose",
}


@dataclass(frozen=True)
class ModelRow:
    model: LocalModel
    context: int | None  # the context it was trained for (its header), None when unreadable
    shown: str = ""  # the name a person recognises ("Llama 3.2 3B Instruct"); the quant has its column


def load() -> list[ModelRow]:
    """For a worker: every model `models` lists, with its trained context from the (cached) header."""
    from ..core.models import library
    from ..core.models.display_names import display_names
    from ..core.models.gguf_meta import cached_header
    from ..core.system.errors import LocalModelsError

    models = library.list_models()
    names = display_names(models)
    rows = []
    for model in models:
        try:
            context = cached_header(model.path).arch_value("context_length")
        except (LocalModelsError, OSError):
            context = None
        context = context if isinstance(context, int) and context > 0 else None
        rows.append(ModelRow(model, context, names[model.name].name if model.name in names else model.name))
    return rows


def came_from(model: LocalModel) -> str:
    if model.where == "models":
        return "Downloaded here" if model.source == "pulled" else "Put in the models folder"
    return FROM_WORDS.get(model.where, model.where or "Elsewhere")


def last_used_text(value: str | None) -> str:
    """'YYYY-MM-DD HH:MM:SS' UTC -> the local day, or "never"."""
    if not value:
        return "never"
    try:
        when = datetime.strptime(value[:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return value[:10]
    return when.astimezone().strftime("%Y-%m-%d")


def _remove(model: LocalModel) -> int:
    from ..core.maintenance import removal

    return removal.remove_model(model, confirmed=True)  # the user confirmed, warning included


def _set_default(name: str):
    from ..core.system import config

    settings = config.load_settings()
    config.save_settings(replace(settings, default_model=name))
    return config.load_settings()


class ModelsWindow(QWidget):
    def __init__(self, app):
        super().__init__()
        self.app = app
        self.rows: list[ModelRow] = []
        self.done_note = ""  # what the last action did, said again once the list is read afresh
        self.setObjectName("models_window")
        self.setWindowTitle("Models — aidevops Local Models")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.resize(900, 420)

        self.table = QTreeWidget(objectName="models")
        self.table.setHeaderLabels(COLUMNS)
        self.table.setRootIsDecorated(False)
        self.table.setSortingEnabled(False)
        self.table.setAccessibleName("Local models")
        self.table.currentItemChanged.connect(lambda *_: self._update_buttons())
        self.table.itemActivated.connect(lambda *_: self.serve())  # Enter or a double click serves
        self.note = QLabel(objectName="note", wordWrap=True)
        self.note.setTextFormat(Qt.TextFormat.PlainText)
        # Keys, said in each button's tooltip: Enter serves the selected model (as a double click does).
        self.serve_button = self._button("Serve", "serve", self.serve, "Enter")
        self.default_button = self._button("Set as default", "set_default", self.set_default, "Ctrl+D")
        self.remove_button = self._button("Remove…", "remove", self.remove, "Delete")
        self.folder_button = self._button("Show in folder", "show_folder", self.show_folder, "Ctrl+O")
        buttons = QHBoxLayout()
        for b in (self.serve_button, self.default_button, self.remove_button, self.folder_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)
        layout.addWidget(self.note)
        close_on_escape(self)
        shortcut(self, "Ctrl+D", self.set_default)
        shortcut(self, QKeySequence(QKeySequence.StandardKey.Delete), self.remove)
        shortcut(self, "Ctrl+O", self.show_folder)
        shortcut(self, QKeySequence(QKeySequence.StandardKey.Refresh), self.reload)
        self.setTabOrder(self.table, self.serve_button)
        self._update_buttons()
        self.reload()

    def _button(self, text: str, name: str, slot, keys: str) -> QPushButton:
        button = QPushButton(text, objectName=name)
        button.setAccessibleName(text.rstrip("…"))
        button.setToolTip(keys)
        button.clicked.connect(slot)
        return button

    # ---- the list -----------------------------------------------------------------------------------

    def reload(self) -> None:
        self.note.setText("Reading the models on this machine…")
        self.app.workers.submit(lambda job: load(), name="models", on_done=self.show_rows, on_error=self._failed)

    def show_rows(self, rows: list[ModelRow]) -> None:
        current = self.selected()
        self.rows = rows
        self.table.clear()
        default = self.app.settings.default_model
        for row in rows:
            m = row.model
            name = printable(row.shown or m.name) + ("  (default)" if m.name == default else "")
            values = (
                name,
                human_bytes(m.size_bytes),
                m.quant or "?",
                f"{row.context:,}" if row.context else "?",
                last_used_text(m.last_used),
                f"{m.total_requests:,}",
                came_from(m),
            )
            item = QTreeWidgetItem(values)
            item.setData(0, Qt.ItemDataRole.UserRole, m.name)
            item.setToolTip(0, f"{m.name}\n{m.path}")  # the name the CLI and the API take, and the file
            for col in (1, 3, 5):
                item.setTextAlignment(col, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.table.addTopLevelItem(item)
            if current is not None and m.name == current.name:
                self.table.setCurrentItem(item)
        if self.table.currentItem() is None and rows:
            self.table.setCurrentItem(self.table.topLevelItem(0))
        for col in range(len(COLUMNS)):
            self.table.resizeColumnToContents(col)
        total = sum(r.model.size_bytes for r in rows)
        n = len(rows)
        summary = (
            f"{n} model{'s' if n != 1 else ''}, {human_bytes(total)} on disk."
            if rows
            else "No models on this machine yet: download one (Download a model…)."
        )
        self.note.setText(f"{self.done_note} {summary}".strip())
        self.done_note = ""
        self._update_buttons()

    def selected(self) -> LocalModel | None:
        item = self.table.currentItem()
        if item is None:
            return None
        name = item.data(0, Qt.ItemDataRole.UserRole)
        return next((r.model for r in self.rows if r.model.name == name), None)

    def _update_buttons(self) -> None:
        model = self.selected()
        for button in (self.serve_button, self.default_button, self.remove_button, self.folder_button):
            button.setEnabled(model is not None)
        if model is not None:
            serving = model.name in self.app.snapshot.served and self.app.snapshot.status.running
            self.serve_button.setEnabled(not serving)
            self.default_button.setEnabled(model.name != self.app.settings.default_model)

    def _failed(self, exc: BaseException) -> None:
        message, hint, _ = dialogs.error_text(exc)
        self.note.setText(f"{message} {hint}".strip())

    # ---- actions ------------------------------------------------------------------------------------

    def serve(self) -> None:
        model = self.selected()
        if model is None or not self.serve_button.isEnabled():
            return
        if self.app.snapshot.status.running:
            self.app.switch_model(model.name)
        else:
            self.app.start_server(model.name)
        self.note.setText(f"Starting {self.shown_name(model)}… The menu shows when it answers.")

    def set_default(self) -> None:
        model = self.selected()
        if model is None:
            return
        name = model.name
        self.app.workers.submit(
            lambda job: _set_default(name), name="set-default", on_done=self._default_set, on_error=self._failed
        )

    def _default_set(self, settings) -> None:
        self.app.settings = settings
        model = next((r.model for r in self.rows if r.model.name == settings.default_model), None)
        shown = self.shown_name(model) if model else printable(settings.default_model)
        self.done_note = f"{shown} is the default: Start serves it."
        self.show_rows(self.rows)

    def remove(self) -> None:
        model = self.selected()
        if model is None or not self.remove_button.isEnabled():
            return
        if not self._confirm_removal(model):
            return
        self.remove_button.setEnabled(False)
        self.note.setText(f"Removing {self.shown_name(model)}…")
        self.app.workers.submit(
            lambda job: _remove(model),
            name="remove-model",
            on_done=lambda freed: self._removed(model, freed),
            on_error=self._remove_failed,
        )

    def shown_name(self, model: LocalModel) -> str:
        row = next((r for r in self.rows if r.model.name == model.name), None)
        return printable(row.shown if row and row.shown else model.name)

    def _confirm_removal(self, model: LocalModel) -> bool:
        from ..core.maintenance.removal import removal_warning

        name, size = self.shown_name(model), human_bytes(model.size_bytes)
        if model.quant:
            name = f"{name} {model.quant}"
        box = QMessageBox(
            QMessageBox.Icon.Warning, "Remove model", f"Remove {name} ({size}) from this disk?", parent=self
        )
        box.setObjectName("remove_dialog")
        warning = removal_warning(model)
        box.setInformativeText(
            printable(warning) if warning else "Its file is deleted; download it again to get it back."
        )
        remove = box.addButton("Remove", QMessageBox.ButtonRole.DestructiveRole)
        keep = box.addButton("Keep", QMessageBox.ButtonRole.RejectRole)
        box.setDefaultButton(keep)  # the safe choice is what Enter does
        box.setEscapeButton(keep)
        dialogs.ask(box)
        return box.clickedButton() is remove

    def _removed(self, model: LocalModel, freed: int) -> None:
        self.reload()
        self.done_note = f"Removed {self.shown_name(model)}; freed {human_bytes(freed)}."
        self.app.refresh(full=True)

    def _remove_failed(self, exc: BaseException) -> None:
        self._update_buttons()
        self._failed(exc)

    def show_folder(self) -> None:
        model = self.selected()
        if model is None:
            return
        folder = Path(model.path).parent
        if QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder))):
            self.note.setText(f"Opened {folder} in the file manager.")
        else:
            self.note.setText(f"No file manager opened {folder}. The file is {model.path}")
