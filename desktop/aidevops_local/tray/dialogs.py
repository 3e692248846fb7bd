"""Error dialogs from core's typed errors (message + hint + details, the same strings the CLI prints), and the
server log viewer."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices, QFont, QFontMetrics
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from ..core.system.errors import LocalModelsError
from ..core.system.untrusted import printable
from . import macos

LOG_LINES = 400
APP_NAME = "aidevops Local Models"  # some window managers add it to every title ("Remove models — aidevops ...")
TITLE_BAR_CONTROLS = 140  # px a title bar gives its icon and buttons, beside the title


def error_text(exc: BaseException) -> tuple[str, str, str]:
    """(message, hint, details) for any exception; unexpected ones say so and point at the log. They may quote
    the network (a Hub's name or message): shown without control characters."""
    if isinstance(exc, LocalModelsError):
        return tuple(printable(text, multiline=True) for text in (exc.message, exc.hint, exc.details))
    return (
        f"Something went wrong: {type(exc).__name__}: {printable(exc, multiline=True)}",
        "This is a bug; the tray's log has the details.",
        "",
    )


def show_error(parent: QWidget | None, exc: BaseException, title: str = "aidevops Local Models") -> QMessageBox:
    """Non-modal, so a failure never blocks the tray's event loop."""
    message, hint, details = error_text(exc)
    box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok, parent)
    box.setObjectName("error_dialog")
    if hint:
        box.setInformativeText(hint)
    if details:
        box.setDetailedText(details)
    box.setModal(False)
    box.show()
    return box


def ask(box: QMessageBox) -> None:
    """Run a question where the user sees it: the app active and the box raised and active before it waits.
    A menu-bar app is not the active app after a menu pick, and its dialog would open behind other apps."""
    macos.activate_app()
    box.show()
    box.raise_()
    box.activateWindow()
    box.exec()


class ConfirmDialog(QDialog):
    """A question before something that cannot be undone. The safe answer is the default button, so Enter
    keeps and Escape cancels; the risky one must be chosen. Wide enough that the title bar shows its whole
    title, the application's name included where the window manager adds it."""

    def __init__(self, parent: QWidget | None, title: str, text: str, details: str = "", *, confirm: str, keep: str):
        super().__init__(parent)
        self.setObjectName("confirm_dialog")
        self.setWindowTitle(title)
        icon = QLabel(objectName="icon")
        size = self.style().pixelMetric(QStyle.PixelMetric.PM_MessageBoxIconSize)
        icon.setPixmap(self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxQuestion).pixmap(size, size))
        self.text = QLabel(text, objectName="question", wordWrap=True)
        bold = self.text.font()
        bold.setBold(True)
        self.text.setFont(bold)
        self.details = QLabel(details, objectName="details", wordWrap=True)
        self.details.setVisible(bool(details))
        buttons = QDialogButtonBox()
        self.keep_button = buttons.addButton(keep, QDialogButtonBox.ButtonRole.RejectRole)
        self.confirm_button = buttons.addButton(confirm, QDialogButtonBox.ButtonRole.DestructiveRole)
        self.confirm_button.setAutoDefault(False)
        self.keep_button.setDefault(True)
        self.keep_button.setFocus()
        buttons.rejected.connect(self.reject)
        self.confirm_button.clicked.connect(self.accept)
        words = QVBoxLayout()
        words.addWidget(self.text)
        words.addWidget(self.details)
        top = QHBoxLayout()
        top.addWidget(icon, 0, Qt.AlignmentFlag.AlignTop)
        top.addLayout(words, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(buttons)
        self.setMinimumWidth(max(380, title_width(title) + TITLE_BAR_CONTROLS))


def title_width(title: str) -> int:
    """What a title bar needs for the title, with the application's name some window managers add (their
    title font is the application's, bold on most)."""
    font = QApplication.font()
    font.setBold(True)
    return QFontMetrics(font).horizontalAdvance(f"{title} — {APP_NAME}")


def confirm(dialog: ConfirmDialog) -> bool:
    """Ask where the user sees it (see ask): True only when the risky answer was chosen."""
    macos.activate_app()
    dialog.show()
    dialog.raise_()
    dialog.activateWindow()
    return dialog.exec() == QDialog.DialogCode.Accepted


class LogWindow(QWidget):
    """The last lines of the server's log; the text is read by a worker and handed in with ``set_text``."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("llama-server log")
        self.resize(760, 420)
        self.path: Path | None = None
        self.view = QPlainTextEdit(readOnly=True)
        self.view.setObjectName("log_text")
        self.view.setFont(QFont("monospace"))
        self.view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.open_button = QPushButton("Open file")
        buttons.addButton(self.open_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.open_button.clicked.connect(self._open_file)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.view)
        layout.addWidget(buttons)

    def set_text(self, path: Path | None, text: str) -> None:
        self.path = path
        self.setWindowTitle(f"llama-server log: {path}" if path else "llama-server log")
        self.view.setPlainText(text or "(no log yet)")
        self.view.verticalScrollBar().setValue(self.view.verticalScrollBar().maximum())
        self.open_button.setEnabled(path is not None)

    def _open_file(self) -> None:
        if self.path:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.path)))


def read_log(path: Path | None, lines: int = LOG_LINES) -> str:
    """For a worker: the log's last lines."""
    if path is None:
        return ""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - 256 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError as exc:
        return f"(cannot read {path}: {exc.strerror})"
    return "\n".join(text.splitlines()[-lines:])
