"""Screen 2 of the wizard: one progress screen that installs the runtime (if missing), downloads and verifies
the model (if not on disk) and starts it, as a checklist with the current step's progress (speed and time
left for the download). Cancel stops the current step; the wizard's main button then resumes it, and so does
reopening the wizard (a download continues from its last byte). A gated model asks for a Hugging Face token
here, and only then; the token is checked with the Hub and kept in the OS keyring.
"""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QGridLayout, QHBoxLayout, QLabel, QLineEdit, QProgressBar, QPushButton, QWidget, QWizard

from ..core.system.errors import AuthRequired
from ..core.system.units import human_bytes
from . import dialogs
from .wizard_parts import Screen, plain
from .wizard_steps import Rate, download, install_runtime, save_pick, save_token, start

COMMIT = QWizard.WizardButton.CommitButton
MARKS = {"todo": "○", "running": "➜", "done": "✓", "failed": "✗", "paused": "‖"}
STATE_WORDS = {"todo": "to do", "running": "in progress", "done": "done", "failed": "failed", "paused": "paused"}
TOKENS_URL = "https://huggingface.co/settings/tokens"


class Checklist(QWidget):
    """The steps, each a mark and a line; the mark's accessible name says the state in words."""

    def __init__(self):
        super().__init__(objectName="checklist")
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setColumnStretch(1, 1)
        self.rows: dict[str, tuple[QLabel, QLabel]] = {}
        self.states: dict[str, str] = {}

    def set_steps(self, steps: list[tuple[str, str]]) -> None:
        for key, text in steps:
            if key not in self.rows:
                mark, line = QLabel(objectName=f"mark_{key}"), plain("", f"step_{key}")
                self.grid.addWidget(mark, len(self.rows), 0, Qt.AlignmentFlag.AlignTop)
                self.grid.addWidget(line, len(self.rows), 1)
                self.rows[key] = (mark, line)
            self.rows[key][1].setText(text)
            self.set_state(key, self.states.get(key, "todo"))

    def set_state(self, key: str, state: str, text: str | None = None) -> None:
        mark, line = self.rows[key]
        self.states[key] = state
        mark.setText(MARKS[state])
        mark.setAccessibleName(STATE_WORDS[state])
        line.setAccessibleName(f"{line.text()}: {STATE_WORDS[state]}")
        font = line.font()
        font.setBold(state == "running")
        line.setFont(font)
        if text is not None:
            line.setText(text)


class SetupPage(Screen):
    def __init__(self, wizard):
        super().__init__(
            wizard,
            2,
            "Setting up",
            "You can close this window at any time: opening the wizard again continues where it stopped.",
        )
        self.setObjectName("setup")
        self.setCommitPage(True)  # once set up, Back has nothing to undo
        self.checklist = Checklist()
        self.bar = QProgressBar(objectName="progress")
        self.bar.setAccessibleName("Progress of the current step")
        self.detail = plain("", "detail")
        self.cancel = QPushButton("Cancel", objectName="cancel")
        self.cancel.setAccessibleName("Cancel the current step")
        self.cancel.clicked.connect(self.stop)
        row = QHBoxLayout()
        row.addWidget(self.bar, 1)
        row.addWidget(self.cancel)
        self.result = plain("", "result")
        self.result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.token_box = self._token_box()
        self.body.addWidget(self.checklist)
        self.body.addLayout(row)
        self.body.addWidget(self.detail)
        self.body.addWidget(self.result)
        self.body.addWidget(self.token_box)
        self.body.addStretch(1)
        self.job = None
        self.step_running = ""
        self.rate = Rate()
        self.finished = False
        self.waiting = ""  # what the main button does now: "resume", "retry", "token"; "" while a step runs

    def _token_box(self) -> QWidget:
        box = QWidget(objectName="token_box")
        layout = QGridLayout(box)
        layout.setContentsMargins(0, 0, 0, 0)
        self.token_text = QLabel(objectName="token_text", wordWrap=True, openExternalLinks=True)
        self.token = QLineEdit(objectName="token", echoMode=QLineEdit.EchoMode.Password, placeholderText="hf_…")
        self.token.setAccessibleName("Hugging Face token")
        layout.addWidget(self.token_text, 0, 0)
        layout.addWidget(self.token, 1, 0)
        box.hide()
        return box

    # ---- which steps, and running them -------------------------------------------------------------------

    def initializePage(self) -> None:
        pick = self.wiz.progress.pick
        self.title.setText(f"Setting up {pick.title}")
        size = f" ({human_bytes(pick.size_bytes)})" if pick.size_bytes else ""
        self.checklist.set_steps(
            [
                ("runtime", "Install the llama.cpp runtime"),
                ("download", f"Download and verify {pick.title}{size}"),
                ("start", "Start it and check that it answers"),
            ]
        )
        self._waiting("")
        self.run_next()

    def pending(self) -> str:
        """The first step not done yet ("" when all are)."""
        p = self.wiz.progress
        if not p.runtime:
            return "runtime"
        if not p.pick.name:
            return "download"
        return "" if p.running_model == p.pick.name else "start"

    def _mark_done_steps(self) -> None:
        order = ["runtime", "download", "start"]
        current = self.pending()
        for key in order[: order.index(current)] if current else order:
            self.checklist.set_state(key, "done")

    def run_next(self) -> None:
        if self.job is not None:
            return  # one step at a time
        self._mark_done_steps()
        step = self.pending()
        if not step:
            self.finished = True
            self._waiting("")
            QTimer.singleShot(0, self.wiz.next)  # straight on to the last screen, once this call returns
            return
        work = {
            "runtime": install_runtime,
            "download": lambda job: download(job, self.wiz.progress.pick),
            "start": lambda job: start(job, self.wiz.progress.pick.name),
        }[step]
        self.result.setText("")
        self.token_box.hide()
        self.step_running = step
        self.checklist.set_state(step, "running")
        self.bar.setRange(0, 0)
        self.bar.show()
        self.detail.setText("")
        self.cancel.show()
        self.cancel.setEnabled(True)
        self._waiting("")
        self.job = self.wiz.app.workers.submit(
            work,
            name=f"wizard-{step}",
            on_done=self._done,  # bound methods, not lambdas: Qt drops them when a closed wizard is deleted
            on_error=self._failed,
            on_progress=self._progress,
            on_cancelled=self._stopped,
        )

    def stop(self) -> None:
        if self.job is not None:
            self.job.cancel.set()
            self.cancel.setEnabled(False)
            self.detail.setText("Stopping…")

    def _progress(self, p) -> None:
        if p.total:
            self.bar.setRange(0, 1000)
            self.bar.setValue(int(1000 * p.done / p.total))
        else:
            self.bar.setRange(0, 0)
        if p.unit == "B" and p.total:
            self.rate.add(p.task, p.done)
            self.detail.setText(self.rate.words(p.done, p.total))
        else:
            self.detail.setText(p.task)

    def _ended(self) -> str:
        """The step whose job ended."""
        self.job = None
        self.cancel.hide()
        self.bar.hide()
        return self.step_running

    def _done(self, result) -> None:
        step = self._ended()
        p = self.wiz.progress
        if step == "runtime":
            self.wiz.progress = replace(p, runtime=result)
        elif step == "download":
            self.wiz.progress = replace(p, pick=replace(p.pick, name=result))
            save_pick(self.wiz.progress.pick)
        else:
            model = result.model or p.pick.name
            self.wiz.progress = replace(p, running_model=model, endpoint=result.endpoint or "")
        self.checklist.set_state(step, "done")
        self.wiz.app.refresh(full=True)
        self.run_next()

    def _failed(self, exc: BaseException) -> None:
        step = self._ended()
        message, hint, details = dialogs.error_text(exc)
        if step == "download" and isinstance(exc, AuthRequired):
            self.checklist.set_state(step, "paused")  # waits for a token: nothing failed yet
            self._ask_token(message)
            return
        self.checklist.set_state(step, "failed")
        self.result.setText("\n".join(t for t in (message, hint, details) if t))
        self._waiting("retry")

    def _stopped(self) -> None:
        step = self._ended()
        self.checklist.set_state(step, "paused")
        words = "Download paused: it continues from here" if step == "download" else "Stopped"
        self.detail.setText("")
        self.result.setText(f"{words}. Press Resume, now or the next time you open the wizard.")
        self._waiting("resume")

    # ---- the token, only for a gated model -----------------------------------------------------------------

    def _ask_token(self, message: str) -> None:
        repo = self.wiz.progress.pick.repo
        self.token_text.setText(
            f"{_esc(message)}<br>Accept the licence on <a href='https://huggingface.co/{_esc(repo)}'>"
            f"its model page</a>, then paste a token from <a href='{TOKENS_URL}'>your Hugging Face settings</a> "
            "(read access is enough). It is checked with the Hub and kept in your OS keyring."
        )
        self.token_box.show()
        self.token.setFocus()
        self._waiting("token")

    def _save_token(self) -> None:
        token = self.token.text().strip()
        self.token.clear()  # the secret leaves the widget at once
        if not token:
            self.result.setText("Paste a token first.")
            return
        self._waiting("")
        self.result.setText("Checking the token with the Hub…")
        self.wiz.app.workers.submit(
            lambda job: save_token(token), name="wizard-token", on_done=self._token_saved, on_error=self._token_failed
        )

    def _token_saved(self, _account) -> None:
        self.result.setText("Token saved in the keyring.")
        self.run_next()

    def _token_failed(self, exc: BaseException) -> None:
        message, hint, _ = dialogs.error_text(exc)
        self.result.setText(f"{message} {hint}".strip())
        self._waiting("token")

    # ---- the wizard's main button: Resume, Retry, Save token -------------------------------------------------

    def _waiting(self, action: str) -> None:
        self.waiting = action
        texts = {"resume": "Resume", "retry": "Retry", "token": "Save token and continue", "": "Continue"}
        self.set_primary(COMMIT, texts[action])
        self.completeChanged.emit()

    def isComplete(self) -> bool:
        return self.finished or bool(self.waiting)

    def validatePage(self) -> bool:
        if self.finished:
            return True
        action, self.waiting = self.waiting, ""
        if action == "token":
            self._save_token()
        elif action:
            self.run_next()
        return False


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("'", "&#39;")
