"""Settings' sharing part: serve the local network (host 0.0.0.0, which turns the API key on), the key itself
shown with Copy, and the address other machines use. The key is made and read by core.serving.api_key (the
OS keyring, nowhere else); this part only shows it and copies it on request."""

from __future__ import annotations

from dataclasses import dataclass, replace

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QCheckBox, QGroupBox, QHBoxLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout

from ..core.system import config
from ..core.system.listening import ANY_ADDRESS

LOCAL_HOST = "127.0.0.1"
WARNING = "Shared: anyone on your network who has the key can use your models and this machine's memory."


@dataclass(frozen=True)
class SharingFacts:
    key: str | None  # the stored API key, when the settings require one
    lan_address: str | None


def read_facts(settings: config.Settings) -> SharingFacts:
    """For a worker: the key (only when it is required) and this machine's address on its network."""
    from ..core.serving import api_key
    from ..core.system.listening import lan_address

    return SharingFacts(api_key.current() if settings.require_api_key else None, lan_address())


def shared(settings: config.Settings) -> bool:
    from ..core.serving.launch import is_loopback

    return not is_loopback(settings.host)


def apply(settings: config.Settings, *, share: bool, require_key: bool) -> config.Settings:
    """Sharing binds every address and always requires the key; not sharing goes back to this machine only
    (a host the user chose by hand that is already local is kept)."""
    if share:
        host = settings.host if shared(settings) else ANY_ADDRESS
        return replace(settings, host=host, require_api_key=True)
    host = settings.host if not shared(settings) else LOCAL_HOST
    return replace(settings, host=host, require_api_key=require_key)


def ensure_key(settings: config.Settings) -> str | None:
    """For the save worker: the key a setting now requires, made the first time (Refused, saying why, when
    the keyring cannot keep one: the settings are then not saved)."""
    if not settings.require_api_key:
        return None
    from ..core.serving import api_key

    return api_key.ensure()


class SharingBox(QGroupBox):
    def __init__(self):
        super().__init__("Sharing")
        self.setObjectName("sharing")
        self.lan_address: str | None = None
        self.port = 0
        self.share = QCheckBox("Share on the local network (requires the API key)", objectName="lan_share")
        self.require_key = QCheckBox("Require the API key on this machine too", objectName="require_api_key")
        self.warning = QLabel(WARNING, objectName="lan_warning")
        self.key = QLineEdit(objectName="api_key", readOnly=True, placeholderText="made when you save")
        self.key.setAccessibleName("API key")
        self.copy = QPushButton("&Copy key", objectName="copy_key")
        self.copy.setAccessibleName("Copy the API key")
        self.copy.clicked.connect(self.copy_key)
        self.address = QLabel(objectName="lan_url", wordWrap=True)
        self.address.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.said = QLabel(objectName="copy_note")
        row = QHBoxLayout()
        row.addWidget(QLabel("API key"))
        row.addWidget(self.key, 1)
        row.addWidget(self.copy)
        layout = QVBoxLayout(self)
        layout.addWidget(self.share)
        layout.addWidget(self.warning)
        layout.addWidget(self.require_key)
        layout.addLayout(row)
        layout.addWidget(self.address)
        layout.addWidget(self.said)
        self.share.toggled.connect(self._update)
        self.require_key.toggled.connect(self._update)

    def show_settings(self, settings: config.Settings, facts: SharingFacts) -> None:
        self.lan_address, self.port = facts.lan_address, settings.port
        self.share.setChecked(shared(settings))
        self.require_key.setChecked(settings.require_api_key)
        self.key.setText(facts.key or "")
        self._update()

    def settings_from(self, settings: config.Settings) -> config.Settings:
        return apply(settings, share=self.share.isChecked(), require_key=self.require_key.isChecked())

    def show_key(self, key: str | None) -> None:
        self.key.setText(key or "")
        self._update()

    def _update(self) -> None:
        sharing = self.share.isChecked()
        if sharing:
            self.require_key.setChecked(True)
        self.require_key.setEnabled(not sharing)
        self.warning.setVisible(sharing)
        uses_key = sharing or self.require_key.isChecked()
        self.key.setEnabled(uses_key)
        self.copy.setEnabled(uses_key and bool(self.key.text()))
        if sharing:
            where = self.lan_address or "this machine's address"
            self.address.setText(f"Other machines use http://{where}:{self.port}/v1 with the key as a Bearer token.")
        else:
            self.address.setText("Only programs on this machine can reach the server.")

    def copy_key(self) -> None:
        key = self.key.text()
        if not key:
            self.said.setText("No key yet: save with sharing on and one is made.")
            return
        QGuiApplication.clipboard().setText(key)
        self.said.setText("Copied the key to the clipboard.")
