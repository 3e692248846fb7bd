"""Review stale models and remove the ones ticked. cleanup.find_stale decides what is stale and what may be
removed (never the served model, never files this tool did not download); this window only shows and asks,
in the words of cleanup_texts (names people know, where each model came from, what a removal deletes)."""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialogButtonBox,
    QLabel,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core.maintenance import cleanup
from ..core.system.units import human_bytes
from . import cleanup_texts, dialogs
from .cleanup_texts import StaleRow


class CleanupWindow(QWidget):
    def __init__(self, app):
        super().__init__()
        self.app = app
        self.plan: cleanup.CleanupPlan | None = None
        self.last_removal = ""  # kept above the refreshed list
        self.setObjectName("cleanup_window")
        self.setWindowTitle("Clean up unused models")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.resize(720, 380)
        self.note = QLabel("Looking for models you have not used in a while…", wordWrap=True, objectName="note")
        self.tree = QTreeWidget(objectName="models")
        self.tree.setHeaderLabels(["Model", "Size", "Unused for", "Source"])
        self.tree.setRootIsDecorated(False)
        self.tree.itemChanged.connect(lambda *_: self._update_button())
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.remove_button = buttons.addButton("Remove selected", QDialogButtonBox.ButtonRole.DestructiveRole)
        self.remove_button.setObjectName("remove")
        self.remove_button.setEnabled(False)
        self.remove_button.clicked.connect(self.remove)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.note)
        layout.addWidget(self.tree)
        layout.addWidget(buttons)
        self.load()

    def load(self) -> None:
        self.app.workers.submit(
            lambda job: self._plan_rows(), name="stale", on_done=self._loaded, on_error=self._failed
        )

    @staticmethod
    def _plan_rows() -> tuple[cleanup.CleanupPlan, list[StaleRow]]:
        plan = cleanup.find_stale()
        return plan, cleanup_texts.rows(plan)

    def _loaded(self, found: tuple[cleanup.CleanupPlan, list[StaleRow]]) -> None:
        plan, rows = found
        self.plan = plan
        self.tree.clear()
        for row in rows:
            model = row.model
            idle = f"{model.idle_days} days" if model.idle_days is not None else "never used"
            item = QTreeWidgetItem([row.title, human_bytes(model.size_bytes), idle, row.source])
            item.setData(0, Qt.ItemDataRole.UserRole, row)
            item.setToolTip(0, model.model)  # the name the CLI and requests use
            if model.removable:
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                item.setCheckState(0, Qt.CheckState.Checked)
            else:
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEnabled)
                item.setToolTip(0, row.kept_because)
            self.tree.addTopLevelItem(item)
        for column in range(4):
            self.tree.resizeColumnToContents(column)
        if plan.models:
            text = f"Models unused for {plan.days}+ days. Removing deletes their files."
        else:
            text = f"No model has gone unused for {plan.days} days. Nothing to clean up."
        self.note.setText(" ".join(filter(None, (self.last_removal, text))))
        self._update_button()

    def selected(self) -> list[StaleRow]:
        chosen = []
        for i in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(i)
            if item.checkState(0) == Qt.CheckState.Checked:
                chosen.append(item.data(0, Qt.ItemDataRole.UserRole))
        return chosen

    def _update_button(self) -> None:
        chosen = self.selected()
        total = sum(r.model.size_bytes for r in chosen)
        self.remove_button.setEnabled(bool(chosen))
        self.remove_button.setText(f"Remove selected ({human_bytes(total)})" if chosen else "Remove selected")

    def remove(self, confirmed: bool = False) -> None:
        chosen = self.selected()
        if not chosen or self.plan is None:
            return
        if not confirmed and not dialogs.confirm(self.confirm_dialog(chosen)):
            return
        plan = replace(self.plan, models=[r.model for r in chosen])
        self.remove_button.setEnabled(False)
        self.app.workers.submit(
            lambda job: cleanup.remove(plan=plan),
            name="cleanup",
            on_done=self._removed,
            on_error=self._failed,
        )

    def confirm_dialog(self, chosen: list[StaleRow]) -> dialogs.ConfirmDialog:
        question = cleanup_texts.removal_question(chosen)
        return dialogs.ConfirmDialog(
            self, question.title, question.text, question.details, confirm="Delete", keep="Keep"
        )

    def _removed(self, result: cleanup.CleanupResult) -> None:
        n = len(result.removed)
        self.last_removal = f"Removed {n} model{'s' if n != 1 else ''}, freed {human_bytes(result.freed_bytes)}."
        self.note.setText(self.last_removal)
        self.app.refresh(full=True)
        self.load()

    def _failed(self, exc: BaseException) -> None:
        message, hint, _ = dialogs.error_text(exc)
        self.note.setText(f"{message} {hint}".strip())
        self._update_button()
