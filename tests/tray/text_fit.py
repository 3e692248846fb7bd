"""The check that no label, button or check box of a window is cut or elided at the default font size: each
one's text (as the font measures it) must fit the width its layout gave it once the window is shown, and a
wrapped label must have the height its lines need."""

from __future__ import annotations

from PySide6.QtGui import (
    Qt,  # the Qt namespace with QtGui's functions too (mightBeRichText)
    QTextDocument,
)
from PySide6.QtWidgets import QAbstractButton, QLabel, QWidget


def cut_texts(window: QWidget) -> list[str]:
    """'name: "text" needs N px, has M' for every visible text that does not fit."""
    cut = []
    for widget in window.findChildren(QWidget):
        if not widget.isVisible():
            continue
        if isinstance(widget, QLabel) and widget.wordWrap() and widget.text():
            need, have = widget.heightForWidth(widget.width()), widget.height()  # wrapped: every line shows
        elif isinstance(widget, QLabel) and widget.text():
            need = _text_width(widget)
            have = widget.contentsRect().width()
        elif isinstance(widget, QAbstractButton) and widget.text():
            need, have = widget.sizeHint().width(), widget.width()  # the text plus the box or the frame
        else:
            continue
        if need > have:
            cut.append(f'{widget.objectName() or type(widget).__name__}: "{widget.text()}" needs {need} px, has {have}')
    return cut


def _text_width(label: QLabel) -> int:
    """The widest line of an unwrapped label: rich text as a document lays it out, plain text line by line."""
    text = label.text()
    rich = label.textFormat() == Qt.TextFormat.RichText or (
        label.textFormat() == Qt.TextFormat.AutoText and Qt.mightBeRichText(text)
    )
    if rich:
        document = QTextDocument()
        document.setDefaultFont(label.font())
        document.setDocumentMargin(0)
        document.setHtml(text)
        return round(document.idealWidth())
    metrics = label.fontMetrics()
    return max(metrics.horizontalAdvance(line.replace("&", "")) for line in text.split("\n"))
