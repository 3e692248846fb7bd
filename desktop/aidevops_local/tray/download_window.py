"""Download a model: the catalog's picks for this machine while the search box is empty, else a Hub search;
for the chosen repo its model card's facts (parameters, trained context, licence, dates) and its GGUF files,
each marked by whether it fits here and whether it is already on disk; download with speed, time left and
cancel. A cancelled or dropped download resumes where it stopped when started again (core.downloads keeps
the partial file). Every Hub and disk call is a core call in a worker."""

from __future__ import annotations

from dataclasses import dataclass

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
from .download_facts import RateMeter, card_text, on_disk_names
from .notifications import Action, Notice
from .window_keys import close_on_escape, shortcut

FILE_COLUMNS = ("File", "Quant", "Size", "Fits", "Here")


@dataclass(frozen=True)
class Suggestion:
    name: str
    repo: str
    file: str
    details: str  # "chat · 2.0 GB · about 25 tokens/s"


@dataclass(frozen=True)
class Listing:
    card: object | None  # hub_card.ModelCard, None when the Hub did not give it
    files: list
    on_disk: frozenset[str]


def _machine():
    from ..core.llamacpp import installed

    return hardware.detect(server=installed.server_or_none())


def suggestions() -> list[Suggestion]:
    """For a worker: what `recommend` picks for this machine, in its words."""
    from ..core.models import recommend

    result = recommend.recommend(_machine())
    return [
        Suggestion(
            p.name,
            p.repo,
            p.file,
            f"{p.use} · {human_bytes(p.size_bytes)} · ~{p.tokens_per_s:.0f} tokens/s",
        )
        for p in result.picks
    ]


def search(query: str):
    from ..core.models import hub

    return hub.search(query)


def list_files(repo_id: str) -> Listing:
    """For a worker: the repo's card, its files marked by fit, and which are on disk already."""
    from ..core.models import hub, hub_card
    from ..core.system.errors import LocalModelsError

    files = hub.list_files(repo_id, hardware=_machine())
    try:
        card = hub_card.model_card(repo_id)
    except LocalModelsError:
        card = None  # the files are what matters; the facts are a courtesy
    return Listing(card, files, on_disk_names(repo_id))


def pull(job, repo_id: str, filename: str):
    from ..core.models import downloads

    return downloads.pull(repo_id, filename, progress=job.report, cancel=job.cancel)


class DownloadWindow(QWidget):
    def __init__(self, app):
        super().__init__()
        self.app = app
        self.job = None
        self.meter = RateMeter()
        self.wanted_file = ""  # a suggestion's file, selected once its repo is listed
        self.asked = 0  # the latest search: an earlier one's answer arriving late is dropped
        self.setObjectName("download_window")
        self.setWindowTitle("Download a model — aidevops Local Models")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.resize(960, 540)

        self.query = QLineEdit(objectName="query", placeholderText="Search GGUF models on Hugging Face…")
        self.query.setAccessibleName("Search models")
        self.query.returnPressed.connect(self.search)
        self.search_button = QPushButton("&Search", objectName="search")
        self.search_button.clicked.connect(self.search)
        top = QHBoxLayout()
        top.addWidget(self.query, 1)
        top.addWidget(self.search_button)

        split = self._lists()

        self.bar = QProgressBar(objectName="progress")
        self.bar.hide()
        self.note = QLabel(wordWrap=True, objectName="note")
        self.note.setTextFormat(Qt.TextFormat.PlainText)  # it quotes Hub names: never read them as HTML
        self.download_button = QPushButton("&Download", objectName="download")
        self.cancel_button = QPushButton("&Pause", objectName="cancel")
        self.cancel_button.setToolTip("Stop now; Download again resumes where it stopped.")
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
        close_on_escape(self)
        shortcut(self, "Ctrl+F", self.query.setFocus)
        self._update_buttons()
        self.search()  # empty: the suggestions for this machine

    def _lists(self) -> QSplitter:
        """The repos (or suggestions) on the left; the chosen repo's card and files on the right."""
        self.repos = QTreeWidget(objectName="repos")
        self.repos.setHeaderLabels(["Repository", "Details"])
        self.repos.setRootIsDecorated(False)
        self.repos.setAccessibleName("Repositories")
        self.repos.currentItemChanged.connect(lambda item, _prev: self.list_files(item))
        self.card = QLabel(objectName="card", wordWrap=True)
        self.card.setTextFormat(Qt.TextFormat.PlainText)  # Hub text is never read as HTML
        self.files = QTreeWidget(objectName="files")
        self.files.setHeaderLabels(FILE_COLUMNS)
        self.files.setRootIsDecorated(False)
        self.files.setAccessibleName("GGUF files")
        self.files.currentItemChanged.connect(lambda *_: self._update_buttons())
        self.files.itemActivated.connect(lambda *_: self.download())
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(self.card)
        right_layout.addWidget(self.files, 1)
        split = QSplitter()
        split.addWidget(self.repos)
        split.addWidget(right)
        split.setSizes([390, 570])  # each side's columns whole: no sideways scrolling to see Details or Here
        return split

    # ---- suggestions, search and listing ------------------------------------------------------------

    def search(self) -> None:
        query = self.query.text().strip()
        self.asked += 1
        asked = self.asked

        def latest(show):
            return lambda result: show(result) if asked == self.asked else None

        if not query:
            self.note.setText("Finding the models that suit this machine…")
            self.app.workers.submit(
                lambda job: suggestions(), name="suggest", on_done=latest(self._suggested), on_error=self._failed
            )
            return
        self.note.setText("Searching…")
        self.app.workers.submit(
            lambda job: search(query), name="hub-search", on_done=latest(self._found), on_error=self._failed
        )

    def _suggested(self, picks: list[Suggestion]) -> None:
        self._clear()
        for pick in picks:
            item = QTreeWidgetItem([pick.name, pick.details])
            item.setData(0, Qt.ItemDataRole.UserRole, pick.repo)
            item.setData(1, Qt.ItemDataRole.UserRole, pick.file)
            item.setToolTip(0, pick.repo)
            self.repos.addTopLevelItem(item)
        self._fit_columns(self.repos, 2)
        self.note.setText(
            "Suggested for this machine. Type a name to search Hugging Face."
            if picks
            else "No catalog model suits this machine. Type a name to search Hugging Face."
        )

    def _found(self, results) -> None:
        self._clear()
        for repo in results:
            # Hub text is shown without control characters; the item keeps the real id for the Hub calls.
            downloads = f"{repo.downloads:,} downloads" if repo.downloads else ""
            item = QTreeWidgetItem([printable(repo.repo_id), downloads])
            item.setData(0, Qt.ItemDataRole.UserRole, repo.repo_id)
            self.repos.addTopLevelItem(item)
        self._fit_columns(self.repos, 2)
        n = len(results)
        self.note.setText(f"{n} repositor{'ies' if n != 1 else 'y'}" if results else "Nothing found.")

    def _clear(self) -> None:
        self.repos.clear()
        self.files.clear()
        self.card.clear()

    def list_files(self, item: QTreeWidgetItem | None) -> None:
        self.files.clear()
        self.card.clear()
        if item is None:
            return
        repo_id = item.data(0, Qt.ItemDataRole.UserRole)
        self.wanted_file = item.data(1, Qt.ItemDataRole.UserRole) or ""
        self.note.setText(f"Listing {printable(repo_id)}…")
        self.app.workers.submit(
            lambda job: list_files(repo_id),
            name="hub-files",
            on_done=lambda listing: self._listed(repo_id, listing),
            on_error=self._failed,
        )

    def _listed(self, repo_id: str, listing: Listing) -> None:
        current = self.repos.currentItem()
        if current is None or current.data(0, Qt.ItemDataRole.UserRole) != repo_id:
            return  # the user moved on while this was listed
        self.files.clear()
        self.card.setText(card_text(listing.card))
        self.card.setVisible(bool(self.card.text()))
        chosen = None
        for f in listing.files:
            fits = {True: "yes", False: f"no, needs {human_bytes(f.needs_bytes)}", None: "?"}[f.fits]
            here = "on disk" if f.filename.rsplit("/", 1)[-1] in listing.on_disk else ""
            item = QTreeWidgetItem(
                [printable(f.filename), printable(f.quant or ""), human_bytes(f.size_bytes), fits, here]
            )
            item.setData(0, Qt.ItemDataRole.UserRole, (repo_id, f.filename))
            item.setTextAlignment(2, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            if f.fits is False:
                item.setForeground(3, Qt.GlobalColor.red)
            self.files.addTopLevelItem(item)
            if f.filename == self.wanted_file or len(listing.files) == 1:
                chosen = item
        self._fit_columns(self.files, len(FILE_COLUMNS))
        if chosen is not None:
            self.files.setCurrentItem(chosen)  # a lone file, or the suggestion's, is the obvious choice
        n = len(listing.files)
        self.note.setText(f"{n} GGUF file{'s' if n != 1 else ''} in {printable(repo_id)}")
        self._update_buttons()

    @staticmethod
    def _fit_columns(tree: QTreeWidget, count: int) -> None:
        for column in range(count):
            tree.resizeColumnToContents(column)

    # ---- downloading --------------------------------------------------------------------------------

    def _selected_on_disk(self) -> bool:
        item = self.files.currentItem()
        return item is not None and item.text(4) == "on disk"

    def _update_buttons(self) -> None:
        item = self.files.currentItem()
        on_disk = self._selected_on_disk()
        self.download_button.setEnabled(self.job is None and item is not None and not on_disk)
        self.download_button.setToolTip("Already on disk: serve it from Models…" if on_disk else "")

    def download(self) -> None:
        item = self.files.currentItem()
        if item is None or self.job is not None or self._selected_on_disk():
            return
        repo_id, filename = item.data(0, Qt.ItemDataRole.UserRole)
        self.bar.setRange(0, 0)
        self.bar.show()
        self.cancel_button.show()
        self.meter = RateMeter()
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
        if not p.total:
            return
        self.bar.setRange(0, 1000)
        self.bar.setValue(int(1000 * p.done / p.total))
        self.bar.setFormat(f"{human_bytes(p.done)} of {human_bytes(p.total)}  %p%")
        self.note.setText(self.meter.describe(p.done, p.total))

    def _end(self) -> None:
        self.job = None
        self.bar.hide()
        self.cancel_button.hide()
        self._update_buttons()

    def _downloaded(self, model) -> None:
        self._end()
        self.note.setText(f"Downloaded {model.name}.")
        item = self.files.currentItem()
        if item is not None:
            item.setText(4, "on disk")
            self._update_buttons()
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
