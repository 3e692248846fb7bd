"""A wizard step that runs one job (install, download, start): an action button, a progress bar, Cancel,
and Retry or Resume after a failure. The pages of those steps (wizard_pages.py) say what the job is and what
to show when it is done.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWizardPage

from . import dialogs


class TaskPage(QWizardPage):
    """A step that runs one job: an action button, a progress bar, Cancel, and Retry after a failure."""

    action_text = "Run"

    def __init__(self, wizard, title: str, intro: str):  # the Wizard (wizard.py): its app and its progress
        super().__init__()
        self.wiz = wizard
        self.setTitle(title)
        self.done = False
        self.job = None
        self.intro = QLabel(intro, wordWrap=True)
        self.result = QLabel(wordWrap=True, objectName="result")
        self.result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.bar = QProgressBar(objectName="progress")
        self.bar.hide()
        self.action = QPushButton(self.action_text, objectName="action")
        self.cancel = QPushButton("Cancel", objectName="cancel")
        self.cancel.hide()
        self.action.clicked.connect(self.run)
        self.cancel.clicked.connect(self.stop)
        buttons = QHBoxLayout()
        buttons.addWidget(self.action)
        buttons.addWidget(self.cancel)
        buttons.addStretch(1)
        self.body = QVBoxLayout(self)
        self.body.addWidget(self.intro)
        self.body.addLayout(buttons)
        self.body.addWidget(self.bar)
        self.body.addWidget(self.result)
        self.body.addStretch(1)

    def isComplete(self) -> bool:
        return self.done

    # Each step page overrides these two: what its worker does, and what the page shows when it is done.
    def work(self, job):
        raise NotImplementedError(f"{type(self).__name__} must define work()")

    def succeeded(self, result) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define succeeded()")

    def run(self) -> None:
        if self.job is not None:
            return
        self.result.setText("")
        self.action.setEnabled(False)
        self.cancel.show()
        self.bar.setRange(0, 0)
        self.bar.show()
        self.job = self.wiz.app.workers.submit(
            self.work,
            name=self.objectName(),
            on_done=self._done,
            on_error=self._failed,
            on_progress=self._progress,
            on_cancelled=self._cancelled,
        )

    def stop(self) -> None:
        if self.job is not None:
            self.job.cancel.set()
            self.cancel.setEnabled(False)

    def _progress(self, p) -> None:
        if p.total:
            self.bar.setRange(0, 1000)
            self.bar.setValue(int(1000 * p.done / p.total))
            self.bar.setFormat(f"{p.task}  %p%")
        else:
            self.bar.setRange(0, 0)
        self.bar.setToolTip(p.task)

    def _finish(self) -> None:
        self.job = None
        self.cancel.hide()
        self.cancel.setEnabled(True)
        self.bar.hide()
        self.action.setEnabled(True)

    def _done(self, result) -> None:
        self._finish()
        self.done = True
        self.action.hide()
        self.succeeded(result)
        self.completeChanged.emit()
        self.wiz.app.refresh(full=True)

    def _failed(self, exc: BaseException) -> None:
        self._finish()
        message, hint, details = dialogs.error_text(exc)
        text = f"<b>{_esc(message)}</b>"
        if hint:
            text += f"<br>{_esc(hint)}"
        if details:
            text += f"<pre>{_esc(details)}</pre>"
        self.result.setText(text)
        self.action.setText("Retry")

    def _cancelled(self) -> None:
        self._finish()
        self.result.setText(self.cancelled_text())
        self.action.setText("Resume" if self.resumable() else "Retry")

    def cancelled_text(self) -> str:
        return "Cancelled."

    def resumable(self) -> bool:
        return False

    def mark_done(self, text: str) -> None:
        self.done = True
        self.action.hide()
        self.result.setText(text)
        self.completeChanged.emit()


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
