"""One tray per user and root: a second launch hands its request to the first over a local socket and exits.

The socket's name includes the user and a hash of the AIDEVOPS_HOME root, so tests (and anyone running two
roots) get separate instances. A socket left by a crashed first instance is taken over when nobody answers on it.
"""

from __future__ import annotations

import hashlib
import os

from PySide6.QtCore import QObject, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket

from ..core.system import config

CONNECT_TIMEOUT_MS = 500


def server_name() -> str:
    root = str(config.root_dir().resolve())
    digest = hashlib.sha256(root.encode()).hexdigest()[:12]
    return f"aidevops-local-tray-{os.getuid()}-{digest}"


def ask_running_instance(request: str = "show", name: str | None = None) -> bool:
    """True when another instance took the request (so this one should exit)."""
    socket = QLocalSocket()
    socket.connectToServer(name or server_name())
    if not socket.waitForConnected(CONNECT_TIMEOUT_MS):
        return False
    socket.write(request.encode() + b"\n")
    socket.waitForBytesWritten(CONNECT_TIMEOUT_MS)
    socket.waitForReadyRead(CONNECT_TIMEOUT_MS)  # the first instance acknowledges, so the request is not lost
    socket.disconnectFromServer()
    return True


def _answers(name: str) -> bool:
    socket = QLocalSocket()
    socket.connectToServer(name)
    connected = socket.waitForConnected(CONNECT_TIMEOUT_MS)
    socket.abort()
    return connected


class SingleInstance(QObject):
    """Listens for later launches; ``requested`` carries what they asked for ("show", "wizard")."""

    requested = Signal(str)

    def __init__(self, parent: QObject | None = None, name: str | None = None):
        super().__init__(parent)
        self.name = name or server_name()
        self.server = QLocalServer(self)
        self.server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        self.server.newConnection.connect(self._accept)

    def listen(self) -> bool:
        """Take the name; False while another instance answers on it. With UserAccessOption Qt binds in a
        private folder and renames the socket over whatever file has the name: a socket left by an instance
        that died is taken over that way, and so would a live instance's be, hence the question first."""
        if _answers(self.name):
            return False
        return self.server.listen(self.name)

    def _accept(self) -> None:
        while self.server.hasPendingConnections():
            conn = self.server.nextPendingConnection()
            conn.readyRead.connect(lambda c=conn: self._read(c))
            conn.disconnected.connect(conn.deleteLater)

    def _read(self, conn: QLocalSocket) -> None:
        if not conn.canReadLine():
            return
        request = bytes(conn.readLine()).decode(errors="replace").strip() or "show"
        conn.write(b"ok\n")
        conn.flush()
        self.requested.emit(request)

    def close(self) -> None:
        self.server.close()
