"""Pieces every wizard screen shares: the header (the same title and subtitle style on each screen, drawn by
the screen itself so no wizard style can change it) and the page base that knows its Wizard."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWizard, QWizardPage

STEPS = 3


class Screen(QWizardPage):
    """A wizard screen: its header (step N of 3, a title, one line under it), then its body."""

    def __init__(self, wizard, step: int, title: str, subtitle: str):
        super().__init__()
        self.wiz = wizard  # the Wizard (wizard.py): its app, its progress
        self.body = QVBoxLayout(self)
        self.body.setSpacing(10)
        self.step = QLabel(f"Step {step} of {STEPS}", objectName="step")
        self.title = QLabel(title, objectName="title", wordWrap=True)
        self.subtitle = QLabel(subtitle, objectName="subtitle", wordWrap=True)
        font = self.title.font()
        font.setPointSizeF(font.pointSizeF() * 1.4)
        font.setBold(True)
        self.title.setFont(font)
        quiet(self.step)
        for label in (self.title, self.subtitle):
            label.setTextFormat(Qt.TextFormat.PlainText)  # it carries model names from the Hub
        self.body.addWidget(self.step)
        self.body.addWidget(self.title)
        self.body.addWidget(self.subtitle)
        self.body.addSpacing(6)

    def set_primary(self, which: QWizard.WizardButton, text: str) -> None:
        self.setButtonText(which, text)


def quiet(label: QLabel) -> None:
    """Secondary text in the palette's quiet colour, on light and dark themes alike. Not a disabled label: that
    grey is too faint to read on some themes (Fusion's light one: #bebebe on #efefef)."""
    label.setStyleSheet("color: palette(placeholder-text)")


def plain(text: str = "", name: str = "", *, wrap: bool = True) -> QLabel:
    """A label that shows text as it is (names from the Hub are never HTML), selectable where it wraps."""
    label = QLabel(text, objectName=name, wordWrap=wrap)
    label.setTextFormat(Qt.TextFormat.PlainText)
    return label
