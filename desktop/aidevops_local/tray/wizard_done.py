"""Screen 3 of the wizard: the endpoint with Copy (and a "Copied" that stays a few seconds), Open chat (which
says so, and shows the address, when no browser opens), and how to use it from aidevops: the helper's one
line, and the offer to make this the framework's local tier where the framework is on this machine."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, QUrl
from PySide6.QtGui import QDesktopServices, QGuiApplication
from PySide6.QtWidgets import QHBoxLayout, QLineEdit, QPushButton, QWizard

from ..core.maintenance import framework_install
from ..core.system import config
from ..core.system.errors import LocalModelsError
from .wizard_parts import Screen, plain

COPIED_MS = 4000  # how long "Copied" stays


class DonePage(Screen):
    def __init__(self, wizard):
        super().__init__(
            wizard,
            3,
            "Ready",
            "Any OpenAI-compatible tool can use it: give it this address as its base URL.",
        )
        self.setObjectName("done")
        self.endpoint = QLineEdit(objectName="endpoint", readOnly=True)
        self.endpoint.setAccessibleName("Endpoint address")
        self.copy = QPushButton("Copy", objectName="copy")
        self.copy.setAccessibleName("Copy the endpoint address")
        self.copied = plain("", "copied", wrap=False)
        # A timer of the page's own: it dies with a wizard closed within the few seconds, a bare one would not.
        self.copied_timer = QTimer(self, singleShot=True, interval=COPIED_MS)
        self.copied_timer.timeout.connect(self.copied.clear)
        self.chat = QPushButton("Open chat", objectName="chat")
        self.chat.setAccessibleName("Open the chat page in a browser")
        self.copy.clicked.connect(self._copy)
        self.chat.clicked.connect(self._chat)
        row = QHBoxLayout()
        row.addWidget(self.endpoint, 1)
        row.addWidget(self.copy)
        row.addWidget(self.chat)
        self.chat_note = plain("", "chat_note")
        self.chat_note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.aidevops = plain(
            "From aidevops: local-model-helper.sh status --json shows this endpoint and the model it serves.",
            "aidevops",
        )
        self.aidevops.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # The aidevops framework, when it is on this machine: offer to make this its local tier.
        self.framework_text = plain("", "framework_text")
        self.add_framework = QPushButton("Add to aidevops", objectName="add_framework")
        self.add_framework.clicked.connect(self._add_framework)
        self.body.addLayout(row)
        self.body.addWidget(self.copied)
        self.body.addWidget(self.chat_note)
        self.body.addSpacing(12)
        self.body.addWidget(self.aidevops)
        self.body.addWidget(self.framework_text)
        self.body.addWidget(self.add_framework, 0, Qt.AlignmentFlag.AlignLeft)
        self.body.addStretch(1)
        self.chat_note.hide()
        self.set_primary(QWizard.WizardButton.FinishButton, "Done")

    def initializePage(self) -> None:
        p = self.wiz.progress
        self.endpoint.setText(p.endpoint or self.wiz.app.snapshot.status.endpoint or "")
        if p.pick is not None:
            self.title.setText(f"Ready: {p.pick.title} answers on this machine")
        text, can_add = framework_offer()
        self.framework_text.setVisible(bool(text))
        self.framework_text.setText(text)
        self.add_framework.setVisible(can_add)

    def _copy(self) -> None:
        QGuiApplication.clipboard().setText(self.endpoint.text())
        self.copied.setText(f"Copied {self.endpoint.text()} to the clipboard.")
        self.copied_timer.start()

    def chat_url(self) -> str:
        url = self.endpoint.text().removesuffix("/v1")
        return url + "/" if url else ""

    def _chat(self) -> None:
        url = self.chat_url()
        if not url:
            self._say_chat("The server is not running, so there is no chat page to open.")
        elif not QDesktopServices.openUrl(QUrl(url)):  # False: no browser, or no desktop to ask
            self._say_chat(f"No browser opened. Open {url} in your browser.")
        else:
            self._say_chat(f"Opened {url} in your browser.")

    def _say_chat(self, text: str) -> None:
        self.chat_note.setText(text)
        self.chat_note.show()

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
