"""The first-run wizard's pages, one per step: the machine, the runtime, the model's choice, the optional
token, the download, the server's start and the endpoint at the end. Each takes the Wizard (wizard.py), whose
app and progress it reads and updates; the steps' calls are wizard_steps.py's.
"""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices, QGuiApplication
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWizardPage,
)

from ..core.maintenance import framework_install
from ..core.system import config, secrets
from ..core.system.errors import LocalModelsError
from ..core.system.units import human_bytes
from ..core.system.untrusted import printable
from . import dialogs
from .wizard_steps import Pick, Progress, download, install_runtime, recommendations, save_pick, start
from .wizard_task import TaskPage


class HardwarePage(QWizardPage):
    def __init__(self, wizard):
        super().__init__()
        self.wiz = wizard
        self.setTitle("Your machine")
        self.summary = QLabel(wordWrap=True, objectName="summary")
        QVBoxLayout(self).addWidget(self.summary)

    def initializePage(self) -> None:
        hw = self.wiz.progress.hardware
        gpus = ", ".join(g.name for g in hw.gpus) or "none found"
        self.summary.setText(
            f"{hw.os} {hw.arch}, {hw.physical_cores} cores, {human_bytes(hw.memory.total)} memory "
            f"({human_bytes(hw.memory.available)} free)\nGPUs: {gpus}\n"
            f"llama.cpp backend: {hw.best_backend}" + (" (unified memory)" if hw.unified_memory else "")
        )


class RuntimePage(TaskPage):
    action_text = "Install llama.cpp"

    def __init__(self, wizard):
        super().__init__(
            wizard,
            "Install the llama.cpp runtime",
            "The official llama.cpp build for this machine is downloaded from its GitHub releases, "
            "checked against its checksum and installed.",
        )
        self.setObjectName("runtime")

    def initializePage(self) -> None:
        p = self.wiz.progress
        self.intro.setText(self.intro.text().split("\n")[0] + f"\nBackend: {p.hardware.best_backend}")
        if p.runtime:
            self.mark_done(f"Installed: {p.runtime}")

    def work(self, job):
        return install_runtime(job)

    def succeeded(self, label: str) -> None:
        self.wiz.progress = _with(self.wiz.progress, runtime=label)
        self.result.setText(f"Installed: {label}")

    def resumable(self) -> bool:
        return True


class RecommendPage(QWizardPage):
    def __init__(self, wizard):
        super().__init__()
        self.wiz = wizard
        self.setObjectName("recommend")
        self.setTitle("Choose a model")
        self.setSubTitle("Models that fit this machine, with the memory they need and the speed to expect.")
        self.list = QListWidget(objectName="picks")
        self.note = QLabel(wordWrap=True, objectName="result")
        self.retry = QPushButton("Retry", objectName="action")
        self.retry.hide()
        self.retry.clicked.connect(self.load)
        self.list.currentItemChanged.connect(lambda *_: self.completeChanged.emit())
        layout = QVBoxLayout(self)
        layout.addWidget(self.list)
        layout.addWidget(self.note)
        layout.addWidget(self.retry)
        self.loaded = False

    def initializePage(self) -> None:
        if not self.loaded:
            self.load()

    def load(self) -> None:
        self.retry.hide()
        self.note.setText("Finding models that fit…")
        hw = self.wiz.progress.hardware
        self.wiz.app.workers.submit(
            lambda job: recommendations(job, hw),
            name="recommend",
            on_done=self._loaded,
            on_error=self._failed,
        )

    def _loaded(self, picks: list[Pick]) -> None:
        self.loaded = True
        self.list.clear()
        local = [Pick(name=n, local=True) for n in self.wiz.progress.local_models]
        chosen = self.wiz.progress.pick
        for pick in local + picks:
            item = QListWidgetItem(pick.label())
            item.setData(Qt.ItemDataRole.UserRole, pick)
            self.list.addItem(item)
            if chosen is not None and pick == chosen:
                self.list.setCurrentItem(item)
        if self.list.currentItem() is None and self.list.count():
            self.list.setCurrentRow(0)
        self.note.setText("" if picks else "No recommendation could be made for this machine.")
        self.completeChanged.emit()

    def _failed(self, exc: BaseException) -> None:
        message, hint, _ = dialogs.error_text(exc)
        self.note.setText(f"{message} {hint}".strip())
        self.retry.show()
        if self.wiz.progress.local_models and not self.list.count():
            self._loaded([])

    def isComplete(self) -> bool:
        return self.list.currentItem() is not None

    def validatePage(self) -> bool:
        pick = self.list.currentItem().data(Qt.ItemDataRole.UserRole)
        self.wiz.progress = _with(self.wiz.progress, pick=pick)
        self.wiz.app.workers.submit(lambda job: save_pick(pick), name="save-pick")
        return True


class TokenPage(QWizardPage):
    def __init__(self, wizard):
        super().__init__()
        self.wiz = wizard
        self.setObjectName("token")
        self.setTitle("Hugging Face token (optional)")
        self.setSubTitle(
            "Only gated models need one. It is checked with the Hub and kept in your OS keyring, "
            "nowhere else. Skip this step if you do not have one."
        )
        self.token = QLineEdit(objectName="token", echoMode=QLineEdit.EchoMode.Password, placeholderText="hf_…")
        self.save = QPushButton("Test and save", objectName="action")
        self.note = QLabel(wordWrap=True, objectName="result")
        self.note.setTextFormat(Qt.TextFormat.PlainText)  # it quotes the Hub's account name: never HTML
        self.save.clicked.connect(self._save)
        layout = QVBoxLayout(self)
        layout.addWidget(self.token)
        layout.addWidget(self.save)
        layout.addWidget(self.note)

    def _save(self) -> None:
        token = self.token.text().strip()
        self.token.clear()
        if not token:
            self.note.setText("Paste a token first, or press Next to skip.")
            return
        self.save.setEnabled(False)
        self.note.setText("Checking the token with the Hub…")

        def job(_job):
            account = secrets.check_hf_token(token)
            secrets.store(secrets.HF_TOKEN, token)
            return account

        self.wiz.app.workers.submit(job, name="token", on_done=self._saved, on_error=self._failed)

    def _saved(self, account) -> None:
        self.save.setEnabled(True)
        self.note.setText(f"Saved in the keyring; the Hub knows it as {printable(account.name)}.")

    def _failed(self, exc: BaseException) -> None:
        self.save.setEnabled(True)
        message, hint, _ = dialogs.error_text(exc)
        self.note.setText(f"{message} {hint}".strip())


class DownloadPage(TaskPage):
    action_text = "Download"

    def __init__(self, wizard):
        super().__init__(
            wizard,
            "Download the model",
            "The model file is downloaded from Hugging Face and checked against its published hash.",
        )
        self.setObjectName("download")

    def initializePage(self) -> None:
        pick = self.wiz.progress.pick
        if pick is None:
            return
        self.intro.setText(f"{pick.name}: {pick.repo}/{pick.file}" if not pick.local else pick.name)
        if pick.local or pick.name in self.wiz.progress.local_models:
            self.mark_done(f"{pick.name} is on disk.")
        else:
            self.done = False
            self.action.show()
            self.action.setText(self.action_text)

    def work(self, job):
        return download(job, self.wiz.progress.pick)

    def succeeded(self, name: str) -> None:
        p = self.wiz.progress
        self.wiz.progress = _with(p, local_models=p.local_models + (name,), pick=_rename(p.pick, name))
        self.result.setText(f"Downloaded {name}.")

    def cancelled_text(self) -> str:
        return "Download paused. Resume continues where it stopped, now or the next time you open the wizard."

    def resumable(self) -> bool:
        return True


class StartPage(TaskPage):
    action_text = "Start the server"

    def __init__(self, wizard):
        super().__init__(
            wizard,
            "Start the server",
            "llama-server starts on 127.0.0.1 and loads the model; this waits until it answers.",
        )
        self.setObjectName("start")

    def model_name(self) -> str:
        p = self.wiz.progress
        return p.pick.name if p.pick is not None else (p.local_models[0] if p.local_models else "")

    def initializePage(self) -> None:
        p = self.wiz.progress
        if p.running_model and p.running_model == self.model_name():
            self.mark_done(f"Serving {p.running_model}.")

    def work(self, job):
        return start(job, self.model_name())

    def succeeded(self, status) -> None:
        self.wiz.progress = _with(self.wiz.progress, running_model=status.model or self.model_name())
        self.wiz.endpoint = status.endpoint or ""
        self.result.setText(f"Serving {status.model} at {status.endpoint}")


class DonePage(QWizardPage):
    def __init__(self, wizard):
        super().__init__()
        self.wiz = wizard
        self.setObjectName("done")
        self.setTitle("Ready")
        self.endpoint = QLineEdit(objectName="endpoint", readOnly=True)
        copy = QPushButton("Copy", objectName="copy")
        chat = QPushButton("Open chat", objectName="chat")
        copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(self.endpoint.text()))
        chat.clicked.connect(self._chat)
        row = QHBoxLayout()
        row.addWidget(self.endpoint, 1)
        row.addWidget(copy)
        row.addWidget(chat)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Your local model answers on this OpenAI-compatible endpoint:"))
        layout.addLayout(row)
        # The aidevops framework, when it is on this machine: offer to make this its local tier.
        self.framework_text = QLabel(objectName="framework_text", wordWrap=True)
        self.add_framework = QPushButton("Add to aidevops", objectName="add_framework")
        self.add_framework.clicked.connect(self._add_framework)
        layout.addSpacing(12)
        layout.addWidget(self.framework_text)
        layout.addWidget(self.add_framework, 0, Qt.AlignmentFlag.AlignLeft)

    def initializePage(self) -> None:
        self.endpoint.setText(self.wiz.endpoint or self.wiz.app.snapshot.status.endpoint or "")
        text, can_add = framework_offer()
        self.framework_text.setVisible(bool(text))
        self.framework_text.setText(text)
        self.add_framework.setVisible(can_add)

    def _add_framework(self) -> None:
        try:
            result = framework_install.install(config.agents_dir())
        except LocalModelsError as exc:
            self.framework_text.setText(f"Could not add it: {exc}")
            return
        self.add_framework.hide()
        self.framework_text.setText(
            f"Added to the aidevops framework in {result.framework}: its agents now route local work here "
            "(`aidevops-local agents uninstall` takes it out again)."
        )

    def _chat(self) -> None:
        url = self.endpoint.text().removesuffix("/v1")
        if url:
            QDesktopServices.openUrl(QUrl(url + "/"))


def framework_offer() -> tuple[str, bool]:
    """What the last page says about the aidevops framework, and whether to offer adding this tool to it:
    nothing where there is no framework; the offer where this is not (or no longer fully) its local tier."""
    try:
        found = framework_install.status(config.agents_dir())
    except LocalModelsError:
        return "", False
    if found.installed and found.current:
        return f"The aidevops framework in {found.framework} uses this as its local tier.", False
    return (
        f"The aidevops framework is on this machine ({found.framework}). Add this local tier to it, so its "
        "agents can route private and cost-free work here?",
        True,
    )


def _with(progress: Progress, **changes) -> Progress:
    return replace(progress, **changes)


def _rename(pick: Pick | None, name: str) -> Pick | None:
    return replace(pick, name=name) if pick is not None else None
