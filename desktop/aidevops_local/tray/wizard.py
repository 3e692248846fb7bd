"""The first-run wizard: hardware -> runtime -> recommendation -> token (optional) -> download -> start ->
done.

Every step is a core call in a worker with progress, cancel, a clear failure and a retry. What a step finished
is read back from reality (a runtime installed, a model on disk, a server running), plus the one choice that
reality cannot tell (which recommendation was picked, kept in ``wizard.json``), so closing the wizard and
opening it later resumes at the first step not done, and a half-finished download resumes where it stopped.

The state and the steps' core calls are wizard_steps.py's, the step that runs a job wizard_task.py's, the
pages wizard_pages.py's; this module strings the pages together.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWizard, QWizardPage

from . import dialogs
from .wizard_pages import DonePage, DownloadPage, HardwarePage, RecommendPage, RuntimePage, StartPage, TokenPage
from .wizard_steps import PAGE_ID, Pick, Progress, load_pick, read_progress, save_pick
from .wizard_task import TaskPage

__all__ = ["PAGE_ID", "Pick", "TokenPage", "Wizard", "load_pick", "save_pick"]


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
