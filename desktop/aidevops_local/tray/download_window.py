"""Download a model: search the Hub, pick a repo, pick a GGUF file (each marked by whether it fits this
machine), download with progress and cancel. A cancelled or dropped download resumes where it stopped when
started again (core.downloads keeps the partial file). Search, listing and download are core calls in workers.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core.system import hardware
from ..core.system.progress import Progress
from ..core.system.units import human_bytes
from ..core.system.untrusted import printable
from . import dialogs
from .notifications import Action, Notice


def search(query: str):
    from ..core.models import hub

    return hub.search(query)


def list_files(repo_id: str):
    from ..core.llamacpp import installed
    from ..core.models import hub

    return hub.list_files(repo_id, hardware=hardware.detect(server=installed.server_or_none()))


def pull(job, repo_id: str, filename: str):
    from ..core.models import downloads

    return downloads.pull(repo_id, filename, progress=job.report, cancel=job.cancel)


class DownloadWindow(QWidget):
    def __init__(self, app):
        super().__init__()
        self.app = app
        self.job = None
        self.setObjectName("download_window")
        self.setWindowTitle("Download a model — aidevops Local Models")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.resize(860, 520)

        self.query = QLineEdit(objectName="query", placeholderText="Search GGUF models on Hugging Face…")
        self.query.returnPressed.connect(self.search)
        go = QPushButton("Search", objectName="search")
        go.clicked.connect(self.search)
        top = QHBoxLayout()
        top.addWidget(self.query, 1)
        top.addWidget(go)

        self.repos = QTreeWidget(objectName="repos")
        self.repos.setHeaderLabels(["Repository", "Downloads"])
        self.repos.setRootIsDecorated(False)
        self.repos.currentItemChanged.connect(lambda item, _prev: self.list_files(item))
        self.files = QTreeWidget(objectName="files")
        self.files.setHeaderLabels(["File", "Quant", "Size", "Fits"])
        self.files.setRootIsDecorated(False)
        self.files.currentItemChanged.connect(lambda *_: self._update_buttons())
        split = QSplitter()
        split.addWidget(self.repos)
        split.addWidget(self.files)
        split.setSizes([360, 500])

        self.bar = QProgressBar(objectName="progress")
        self.bar.hide()
        self.note = QLabel(wordWrap=True, objectName="note")
        self.note.setTextFormat(Qt.TextFormat.PlainText)  # it quotes Hub names: never read them as HTML
        self.download_button = QPushButton("Download", objectName="download")
        self.cancel_button = QPushButton("Cancel", objectName="cancel")
        self.download_button.clicked.connect(self.download)
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.hide()
        bottom = QHBoxLayout()
        bottom.addWidget(self.note, 1)
        bottom.addWidget(self.download_button)
        bottom.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(split, 1)
        layout.addWidget(self.bar)
        layout.addLayout(bottom)
        self._update_buttons()

    # ---- search and listing -------------------------------------------------------------------------

    def search(self) -> None:
        query = self.query.text().strip()
        self.note.setText("Searching…")
        self.app.workers.submit(
            lambda job: search(query), name="hub-search", on_done=self._found, on_error=self._failed
        )

    def _found(self, results) -> None:
        self.repos.clear()
        self.files.clear()
        for repo in results:
            # Hub text is shown without control characters; the item keeps the real id for the Hub calls.
            item = QTreeWidgetItem([printable(repo.repo_id), f"{repo.downloads:,}" if repo.downloads else ""])
            item.setData(0, Qt.ItemDataRole.UserRole, repo.repo_id)
            self.repos.addTopLevelItem(item)
        self.repos.resizeColumnToContents(0)
        self.note.setText(f"{len(results)} repositories" if results else "Nothing found.")

    def list_files(self, item: QTreeWidgetItem | None) -> None:
        self.files.clear()
        if item is None:
            return
        repo_id = item.data(0, Qt.ItemDataRole.UserRole)
        self.note.setText(f"Listing {printable(repo_id)}…")
        self.app.workers.submit(
            lambda job: list_files(repo_id),
            name="hub-files",
            on_done=lambda files: self._listed(repo_id, files),
            on_error=self._failed,
        )

    def _listed(self, repo_id: str, files) -> None:
        self.files.clear()
        for f in files:
            fits = {True: "yes", False: f"no, needs {human_bytes(f.needs_bytes)}", None: "?"}[f.fits]
            item = QTreeWidgetItem([printable(f.filename), printable(f.quant or ""), human_bytes(f.size_bytes), fits])
            item.setData(0, Qt.ItemDataRole.UserRole, (repo_id, f.filename))
            if f.fits is False:
                item.setForeground(3, Qt.GlobalColor.darkRed)
            self.files.addTopLevelItem(item)
        for column in range(4):
            self.files.resizeColumnToContents(column)
        self.note.setText(f"{len(files)} GGUF files in {printable(repo_id)}")
        self._update_buttons()

    # ---- downloading --------------------------------------------------------------------------------

    def _update_buttons(self) -> None:
        self.download_button.setEnabled(self.job is None and self.files.currentItem() is not None)

    def download(self) -> None:
        item = self.files.currentItem()
        if item is None or self.job is not None:
            return
        repo_id, filename = item.data(0, Qt.ItemDataRole.UserRole)
        self.bar.setRange(0, 0)
        self.bar.show()
        self.cancel_button.show()
        self.note.setText(f"Downloading {printable(filename)}…")
        self.job = self.app.workers.submit(
            lambda job: pull(job, repo_id, filename),
            name="pull",
            on_done=self._downloaded,
            on_error=self._download_failed,
            on_progress=self._progress,
            on_cancelled=self._cancelled,
        )
        self._update_buttons()

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel.set()

    def _progress(self, p: Progress) -> None:
        if p.total:
            self.bar.setRange(0, 1000)
            self.bar.setValue(int(1000 * p.done / p.total))
            self.bar.setFormat(f"{human_bytes(p.done)} of {human_bytes(p.total)}  %p%")

    def _end(self) -> None:
        self.job = None
        self.bar.hide()
        self.cancel_button.hide()
        self._update_buttons()

    def _downloaded(self, model) -> None:
        self._end()
        self.note.setText(f"Downloaded {model.name}.")
        self.app.refresh(full=True)
        self.app.notifications.notify(
            Notice(
                "download",
                "Download finished",
                f"{model.name} is ready to serve.",
                (Action("serve", "Serve it now"),),
                ref=model.name,
            )
        )

    def _download_failed(self, exc: BaseException) -> None:
        self._end()
        message, hint, _ = dialogs.error_text(exc)
        self.note.setText(f"{message} {hint} Download again to resume.".strip())

    def _cancelled(self) -> None:
        self._end()
        self.note.setText("Download paused. Download again to resume where it stopped.")

    def _failed(self, exc: BaseException) -> None:
        message, hint, _ = dialogs.error_text(exc)
        self.note.setText(f"{message} {hint}".strip())

    def closeEvent(self, event) -> None:
        self.cancel()  # a download in flight pauses and resumes next time
        super().closeEvent(event)
