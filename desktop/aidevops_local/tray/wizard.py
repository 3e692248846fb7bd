"""The first-run wizard, three screens from launch to a model answering: (1) this machine and the model we
suggest (wizard_choose.py), (2) one progress screen that installs, downloads, verifies and starts it
(wizard_setup.py), (3) the endpoint and how to use it (wizard_done.py).

What a step finished is read back from reality (a runtime installed, a model on disk, a server running), plus
the one choice reality cannot tell (the pick, kept in ``wizard.json``; wizard_steps.py), so closing the
wizard and opening it later goes on where it stopped, and a half-finished download resumes from its last byte.
Keyboard: Tab moves between the controls, Enter presses the main button (Set up, Resume, Done), Escape
closes.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWizard, QWizardPage

from . import dialogs
from .wizard_choose import ChoosePage
from .wizard_done import DonePage
from .wizard_setup import SetupPage
from .wizard_steps import PAGE_ID, Pick, Progress, load_pick, read_progress, save_pick

__all__ = ["PAGE_ID", "Pick", "Wizard", "load_pick", "save_pick"]


class Wizard(QWizard):
    def __init__(self, app):
        super().__init__()
        self.app = app
        self.progress: Progress | None = None
        self.setObjectName("wizard")
        self.setWindowTitle("Set up aidevops Local Models")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.setWizardStyle(QWizard.WizardStyle.ClassicStyle)  # the screens draw their own headers
        self.setOption(QWizard.WizardOption.NoBackButtonOnStartPage)
        self.setButtonText(QWizard.WizardButton.CancelButton, "Close")
        self.setMinimumSize(620, 460)
        self.pages = {"choose": ChoosePage(self), "setup": SetupPage(self), "done": DonePage(self)}
        for name, page in self.pages.items():
            self.setPage(PAGE_ID[name], page)
        self.setEnabled(False)
        self.ready = False
        app.workers.submit(read_progress, name="wizard-progress", on_done=self._loaded, on_error=self._failed)

    def _loaded(self, progress: Progress) -> None:
        self.progress = progress
        self.setStartId(PAGE_ID[progress.first_screen()])
        self.setEnabled(True)
        self.restart()
        self.ready = True

    def _failed(self, exc: BaseException) -> None:
        dialogs.show_error(self, exc, "Setup wizard")
        self.close()

    def initializePage(self, page_id: int) -> None:
        if self.progress is not None:  # screens fill in from the progress once it is read (restart() again)
            super().initializePage(page_id)

    def done(self, result: int) -> None:
        self.pages["setup"].stop()  # a download in flight pauses; it resumes next time
        super().done(result)

    def page_named(self, name: str) -> QWizardPage:
        return self.pages[name]

    def screens_seen(self) -> list[str]:
        """The screens this run of the wizard showed, in order (its history and the current one)."""
        names = {i: n for n, i in PAGE_ID.items()}
        return [names[i] for i in self.visitedIds()]
