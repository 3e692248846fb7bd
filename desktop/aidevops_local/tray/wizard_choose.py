"""Screen 1 of the wizard: this machine in one sentence and the one model we suggest (what it is for, its
download size, the speed to expect, why), plus "Choose another": the other picks and the models on disk.
Nothing happens until "Set up" (the wizard's Next): screen 2 then does it all."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout, QWizard

from . import dialogs
from .wizard_parts import Screen, plain, quiet
from .wizard_steps import Pick, save_pick, with_pick
from .wizard_suggest import Suggestions, suggest


class ChoosePage(Screen):
    def __init__(self, wizard):
        super().__init__(
            wizard,
            1,
            "A model for this machine",
            "Nothing is downloaded until you press Set up; the next screen then does everything.",
        )
        self.setObjectName("choose")
        self.machine = plain("Looking at this machine…", "machine")
        self.machine.setAccessibleName("This machine")
        self.card = QFrame(objectName="suggestion", frameShape=QFrame.Shape.StyledPanel)
        self.card.setAccessibleName("Suggested model")
        self.heading = plain("We suggest", "heading")
        quiet(self.heading)
        self.name = plain("", "name")
        font = self.name.font()
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 1.2)
        self.name.setFont(font)
        self.facts = plain("", "facts")
        self.why = plain("", "why")
        card = QVBoxLayout(self.card)
        for label in (self.heading, self.name, self.facts, self.why):
            card.addWidget(label)
        self.another = QPushButton("Choose another…", objectName="another", checkable=True)
        self.another.setAccessibleName("Choose another model")
        self.another.toggled.connect(self._show_list)
        self.list = QListWidget(objectName="picks")
        self.list.setAccessibleName("Models to choose from")
        self.list.setWordWrap(True)  # every word shown: a long name wraps rather than scrolls out of sight
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setSpacing(2)
        self.list.hide()
        self.list.currentItemChanged.connect(self._chosen)
        self.retry = QPushButton("Try again", objectName="retry")
        self.retry.hide()
        self.retry.clicked.connect(self.load)
        for widget in (self.machine, self.card):
            self.body.addWidget(widget)
        self.body.addWidget(self.another, 0, Qt.AlignmentFlag.AlignLeft)
        self.body.addWidget(self.list, 1)
        self.body.addWidget(self.retry, 0, Qt.AlignmentFlag.AlignLeft)
        self.body.addStretch(0)
        self.card.hide()
        self.loaded = False
        self.set_primary(QWizard.WizardButton.NextButton, "Set up")

    def initializePage(self) -> None:
        if not self.loaded:
            self.load()

    def load(self) -> None:
        self.retry.hide()
        progress = self.wiz.progress
        self.wiz.app.workers.submit(
            lambda job: suggest(job, progress.hardware, progress.models),
            name="wizard-suggest",
            on_done=self._loaded,
            on_error=self._failed,
        )

    def _loaded(self, found: Suggestions) -> None:
        self.loaded = True
        self.machine.setText(found.machine)
        self.list.clear()
        saved = self.wiz.progress.pick
        for pick in found.picks:
            item = QListWidgetItem(f"{pick.title}\n{pick.facts()}")
            item.setData(Qt.ItemDataRole.UserRole, pick)
            item.setToolTip(pick.why or pick.title)
            self.list.addItem(item)
            if saved is not None and (pick.repo, pick.file, pick.name) == (saved.repo, saved.file, saved.name):
                self.list.setCurrentItem(item)
        if self.list.currentItem() is None and self.list.count():
            self.list.setCurrentRow(0)
        if not found.picks:
            self.machine.setText(f"{found.machine} {found.note}".strip())
        self.another.setVisible(self.list.count() > 1)
        self.completeChanged.emit()

    def _failed(self, exc: BaseException) -> None:
        message, hint, _ = dialogs.error_text(exc)
        self.machine.setText(f"{message} {hint}".strip())
        self.retry.show()

    def _show_list(self, shown: bool) -> None:
        self.list.setVisible(shown)
        if shown:
            self.list.setFocus()

    def _chosen(self, item: QListWidgetItem | None, _previous=None) -> None:
        pick = self.chosen()
        self.card.setVisible(pick is not None)
        if pick is not None:
            first = item is not None and self.list.row(item) == 0
            self.heading.setText("We suggest" if first else "Your choice")
            self.name.setText(pick.title)
            self.facts.setText(pick.facts())
            self.why.setText(pick.why)
            self.why.setVisible(bool(pick.why))
        self.completeChanged.emit()

    def chosen(self) -> Pick | None:
        item = self.list.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item is not None else None

    def isComplete(self) -> bool:
        return self.chosen() is not None

    def validatePage(self) -> bool:
        pick = self.chosen()
        self.wiz.progress = with_pick(self.wiz.progress, pick)
        save_pick(self.wiz.progress.pick)  # a few bytes: reopening the wizard goes on with this choice
        return True
