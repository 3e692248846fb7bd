"""The first-run wizard: hardware -> runtime -> recommendation -> token (optional) -> download -> start ->
done.

Every step is a core call in a worker with progress, cancel, a clear failure and a retry. What a step finished
is read back from reality (a runtime installed, a model on disk, a server running), plus the one choice that
reality cannot tell (which recommendation was picked, kept in ``wizard.json``), so closing the wizard and
opening it later resumes at the first step not done, and a half-finished download resumes where it stopped.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices, QGuiApplication
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWizard,
    QWizardPage,
)

from ..core.serving import server
from ..core.system import config, hardware, secrets
from ..core.system.untrusted import printable
from . import dialogs, menu

PAGES = ("hardware", "runtime", "recommend", "token", "download", "start", "done")
PAGE_ID = {name: i for i, name in enumerate(PAGES)}


@dataclass(frozen=True)
class Pick:
    """A model to serve: a recommendation to download (repo + file) or a model already on disk (local)."""

    name: str
    repo: str = ""
    file: str = ""
    quant: str = ""
    memory_bytes: int = 0
    tokens_per_s: float = 0.0
    local: bool = False

    def label(self) -> str:
        if self.local:
            return f"{self.name} (already downloaded)"
        speed = f", about {self.tokens_per_s:.0f} tokens/s" if self.tokens_per_s else ""
        return f"{self.name} · {self.quant} · needs {menu.human_bytes(self.memory_bytes)}{speed}"


@dataclass(frozen=True)
class Progress:
    """Where the wizard stands, read in a worker when it opens."""

    hardware: hardware.Hardware
    runtime: str  # "" when not installed, else "b5432 (cuda)"
    local_models: tuple[str, ...]
    running_model: str  # "" when no server is running
    pick: Pick | None

    def first_unfinished(self) -> str:
        if not self.runtime:
            return "hardware"
        if self.pick is None and not self.local_models:
            return "recommend"
        if self.pick is not None and not self.pick.local and self.pick.name not in self.local_models:
            return "download"
        if not self.running_model:
            return "start"
        return "done"


def _state_file() -> Path:
    return config.paths().app_dir / "wizard.json"


def load_pick() -> Pick | None:
    try:
        return Pick(**json.loads(_state_file().read_text(encoding="utf-8"))["pick"])
    except (OSError, ValueError, TypeError, KeyError):
        return None


def save_pick(pick: Pick | None) -> None:
    path = _state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pick": asdict(pick) if pick else None}), encoding="utf-8")


# ---- the core calls each step makes (run in workers) -------------------------------------------------


def read_progress(job=None) -> Progress:
    from ..core.llamacpp import runtime
    from ..core.models import library

    installed = runtime.installed_runtime()
    status = server.status()
    label = f"{installed.tag or installed.version} ({installed.backend})" if installed else ""
    return Progress(
        hardware=hardware.detect(),
        runtime=label,
        local_models=tuple(m.name for m in library.list_models()),
        running_model=status.model or "" if status.running else "",
        pick=load_pick(),
    )


def install_runtime(job) -> str:
    from ..core.llamacpp import runtime

    installed = runtime.install_release(backend="auto", progress=job.report, cancel=job.cancel)
    return f"{installed.tag or installed.version} ({installed.backend})"


def recommendations(job, hw: hardware.Hardware) -> list[Pick]:
    from ..core.models import recommend

    return [
        Pick(
            name=r.name,
            repo=r.repo,
            file=r.file,
            quant=r.quant,
            memory_bytes=r.memory_bytes,
            tokens_per_s=r.tokens_per_s or 0.0,
        )
        for r in recommend.recommend(hw).picks
    ]


def download(job, pick: Pick) -> str:
    from ..core.models import downloads

    return downloads.pull(pick.repo, pick.file, progress=job.report, cancel=job.cancel).name


def start(job, name: str) -> server.ServerStatus:
    from ..core.serving import supervisor

    status = server.status(probe_health=False)
    if status.running and status.model == name:
        return server.status()
    return supervisor.switch_model(name, progress=job.report, cancel=job.cancel)


# ---- pages ------------------------------------------------------------------------------------------------


class TaskPage(QWizardPage):
    """A step that runs one job: an action button, a progress bar, Cancel, and Retry after a failure."""

    action_text = "Run"

    def __init__(self, wizard: Wizard, title: str, intro: str):
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


class HardwarePage(QWizardPage):
    def __init__(self, wizard: Wizard):
        super().__init__()
        self.wiz = wizard
        self.setTitle("Your machine")
        self.summary = QLabel(wordWrap=True, objectName="summary")
        QVBoxLayout(self).addWidget(self.summary)

    def initializePage(self) -> None:
        hw = self.wiz.progress.hardware
        gpus = ", ".join(g.name for g in hw.gpus) or "none found"
        self.summary.setText(
            f"{hw.os} {hw.arch}, {hw.physical_cores} cores, {menu.human_bytes(hw.memory.total)} memory "
            f"({menu.human_bytes(hw.memory.available)} free)\nGPUs: {gpus}\n"
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
    def __init__(self, wizard: Wizard):
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
    def __init__(self, wizard: Wizard):
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
    def __init__(self, wizard: Wizard):
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

    def initializePage(self) -> None:
        self.endpoint.setText(self.wiz.endpoint or self.wiz.app.snapshot.status.endpoint or "")

    def _chat(self) -> None:
        url = self.endpoint.text().removesuffix("/v1")
        if url:
            QDesktopServices.openUrl(QUrl(url + "/"))


def _with(progress: Progress, **changes) -> Progress:
    return replace(progress, **changes)


def _rename(pick: Pick | None, name: str) -> Pick | None:
    return replace(pick, name=name) if pick is not None else None


class Wizard(QWizard):
    def __init__(self, app):
        super().__init__()
        self.app = app
        self.progress: Progress | None = None
        self.endpoint = ""
        self.setObjectName("wizard")
        self.setWindowTitle("Set up aidevops Local Models")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.setOption(QWizard.WizardOption.NoBackButtonOnStartPage)
        self.pages = {
            "hardware": HardwarePage(self),
            "runtime": RuntimePage(self),
            "recommend": RecommendPage(self),
            "token": TokenPage(self),
            "download": DownloadPage(self),
            "start": StartPage(self),
            "done": DonePage(self),
        }
        for name, page in self.pages.items():
            self.setPage(PAGE_ID[name], page)
        self.setEnabled(False)
        self.ready = False
        app.workers.submit(read_progress, name="wizard-progress", on_done=self._loaded, on_error=self._failed)

    def _loaded(self, progress: Progress) -> None:
        self.progress = progress
        self.setStartId(PAGE_ID[progress.first_unfinished()])
        self.setEnabled(True)
        self.restart()
        self.ready = True

    def _failed(self, exc: BaseException) -> None:
        dialogs.show_error(self, exc, "Setup wizard")
        self.close()

    def initializePage(self, page_id: int) -> None:
        if self.progress is not None:  # pages fill in from the progress once it is read (restart() again)
            super().initializePage(page_id)

    def done(self, result: int) -> None:
        for page in self.pages.values():
            if isinstance(page, TaskPage):
                page.stop()  # a download in flight pauses; it resumes next time
        super().done(result)

    def page_named(self, name: str) -> QWizardPage:
        return self.pages[name]
