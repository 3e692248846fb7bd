"""Settings: port, context size, start at login, keep the server on quit, idle unload (where the runtime has
it), automatic restart, sharing on the local network with the API key shown (settings_sharing.py), workers on
other machines (settings_workers.py), and the Hugging Face token (set, test, forget) kept in the OS keyring
only.

Reading and writing (config file, autostart entry, keyring, the Hub) all happen in workers; the token goes
from the text field to the keyring job and is cleared from the field at once.
"""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..core.system import autostart, config, secrets
from . import dialogs, settings_sharing, settings_workers
from .window_keys import close_on_escape, shortcut


def _load(job) -> tuple[config.Settings, bool, secrets.KeyringStatus, secrets.TokenInfo, settings_sharing.SharingFacts]:
    settings = config.load_settings()
    return (
        settings,
        autostart.status().enabled,
        secrets.keyring_status(),
        secrets.hf_token_info(),
        settings_sharing.read_facts(settings),
    )


def _save(settings: config.Settings) -> tuple[config.Settings, str | None]:
    key = settings_sharing.ensure_key(settings)  # first: a key the keyring cannot keep saves nothing
    config.save_settings(settings)
    if autostart.status().enabled != settings.start_at_login:
        autostart.set_enabled(settings.start_at_login)
    return settings, key


class SettingsWindow(QWidget):
    def __init__(self, app):
        super().__init__()
        self.app = app
        self.settings: config.Settings | None = None
        self.setObjectName("settings_window")
        self.setWindowTitle("Settings — aidevops Local Models")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

        server_box = self._server_box()
        self.sharing = settings_sharing.SharingBox()
        self.workers = settings_workers.WorkersBox(app.workers.submit)
        token_box = self._token_box()

        self.status = QLabel(objectName="status", wordWrap=True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Close)
        buttons.button(QDialogButtonBox.StandardButton.Save).setObjectName("save")
        buttons.accepted.connect(self.save)
        buttons.rejected.connect(self.close)
        self.save_button = buttons.button(QDialogButtonBox.StandardButton.Save)
        self.save_button.setEnabled(False)
        self.save_button.setDefault(True)  # Enter saves
        layout = QVBoxLayout(self)
        layout.addWidget(server_box)
        layout.addWidget(self.sharing)
        layout.addWidget(self.workers)
        layout.addWidget(token_box)
        layout.addWidget(self.status)
        layout.addWidget(buttons)
        close_on_escape(self)
        shortcut(self, "Ctrl+S", self.save)
        self._set_token_busy(True)
        app.workers.submit(_load, name="settings", on_done=self._loaded, on_error=self._failed)

    def _server_box(self) -> QGroupBox:
        """The server's settings and the tray's own (login, quit, restart)."""
        self.port = QSpinBox(objectName="port", minimum=1024, maximum=65535)
        self.ctx = QSpinBox(
            objectName="ctx",
            minimum=0,
            maximum=1 << 20,
            singleStep=1024,
            specialValueText="automatic (largest that fits)",
        )
        self.login = QCheckBox("Start at login", objectName="start_at_login")
        self.keep = QCheckBox("Keep the server running when the tray quits", objectName="keep_server_on_quit")
        self.restart = QCheckBox("Restart the server automatically if it crashes", objectName="auto_restart")
        self.idle = QSpinBox(
            objectName="idle_unload_s",
            minimum=0,
            maximum=86_400,
            singleStep=60,
            suffix=" s",
            specialValueText="never",
        )
        self.idle_label = QLabel("&Unload the model when idle for", buddy=self.idle)
        self.router = QCheckBox(
            "Switch models without a restart (requests must name their model)", objectName="router_mode"
        )
        server_box = QGroupBox("Server")
        form = QFormLayout(server_box)
        form.addRow("&Port", self.port)
        form.addRow("Conte&xt size", self.ctx)
        form.addRow(self.idle_label, self.idle)
        for box, name in ((self.port, "Port"), (self.ctx, "Context size"), (self.idle, "Unload when idle for")):
            box.setAccessibleName(name)
        form.addRow(self.router)
        form.addRow(self.keep)
        form.addRow(self.restart)
        form.addRow(self.login)
        return server_box

    def _token_box(self) -> QGroupBox:
        """The Hugging Face token: typed here, tested against the Hub, kept in the keyring."""
        token_box = QGroupBox("Hugging Face token")
        self.token = QLineEdit(
            objectName="token",
            echoMode=QLineEdit.EchoMode.Password,
            placeholderText="hf_… (needed for gated models)",
        )
        self.token.setAccessibleName("Hugging Face token")
        self.token_state = QLabel(objectName="token_state", wordWrap=True)
        self.save_token = QPushButton("Test and save", objectName="save_token")
        self.test_token = QPushButton("Test", objectName="test_token")
        self.forget_token = QPushButton("Forget", objectName="forget_token")
        self.save_token.clicked.connect(self._save_token)
        self.test_token.clicked.connect(self._test_token)
        self.forget_token.clicked.connect(self._forget_token)
        row = QHBoxLayout()
        for w in (self.save_token, self.test_token, self.forget_token):
            row.addWidget(w)
        token_layout = QVBoxLayout(token_box)
        token_layout.addWidget(self.token)
        token_layout.addLayout(row)
        token_layout.addWidget(self.token_state)
        return token_box

    def _loaded(self, loaded) -> None:
        settings, login, keyring_status, token, sharing = loaded
        self.settings = settings
        self.sharing.show_settings(settings, sharing)
        self.workers.show_settings(settings)
        self.port.setValue(settings.port)
        self.ctx.setValue(settings.ctx_size)
        self.login.setChecked(login)
        self.keep.setChecked(settings.keep_server_on_quit)
        self.restart.setChecked(settings.auto_restart)
        self.idle.setValue(settings.idle_unload_s)
        self.router.setChecked(settings.router_mode)
        support = self.app.snapshot.router
        router_ok = support.router and support.presets and support.models_max
        self.router.setEnabled(router_ok)
        self.router.setToolTip(
            "One server offers every local model and loads the one a request names."
            if router_ok
            else "The installed llama.cpp build has no router mode: switching restarts the server."
        )
        idle_ok = self.app.snapshot.router.sleep_idle
        self.idle.setEnabled(idle_ok)
        self.idle.setToolTip("" if idle_ok else "The installed llama.cpp build has no --sleep-idle-seconds.")
        self.save_button.setEnabled(True)
        self._show_token_state(keyring_status, token)
        self.sharing.share.toggled.connect(self._fit_height)

    def _fit_height(self) -> None:
        """Grow to what the texts now need: wrapped lines filled in after the window opened would be cut."""
        need = self.layout().totalHeightForWidth(self.width())
        if need > self.height():
            self.resize(self.width(), need)

    def _show_token_state(self, ring: secrets.KeyringStatus, token: secrets.TokenInfo) -> None:
        self.keyring = ring
        if token.source == "environment":
            text = "Using HF_TOKEN from the environment (it wins over the keyring)."
        elif token.present:
            text = f"A token is stored in the keyring ({ring.backend})."
        else:
            text = "No token stored."
        if not ring.usable:
            text += f"\n{ring.reason} {ring.hint}"
        self.token_state.setText(text)
        self._set_token_busy(False)
        self.save_token.setEnabled(ring.usable)
        self.forget_token.setEnabled(ring.usable and token.source == "keyring")
        self._fit_height()

    def _set_token_busy(self, busy: bool) -> None:
        for w in (self.save_token, self.test_token, self.forget_token):
            w.setEnabled(not busy)

    def _failed(self, exc: BaseException) -> None:
        message, hint, _ = dialogs.error_text(exc)
        self.status.setText(f"{message} {hint}".strip())
        self._set_token_busy(False)
        if self.settings is not None:
            self.save_button.setEnabled(True)

    def save(self) -> None:
        if self.settings is None:
            return
        new = replace(
            self.workers.settings_from(self.sharing.settings_from(self.settings)),
            port=self.port.value(),
            ctx_size=self.ctx.value(),
            start_at_login=self.login.isChecked(),
            keep_server_on_quit=self.keep.isChecked(),
            auto_restart=self.restart.isChecked(),
            idle_unload_s=self.idle.value(),
            router_mode=self.router.isChecked(),
        )
        self.save_button.setEnabled(False)
        self.app.workers.submit(
            lambda job: _save(new), name="save-settings", on_done=self._saved, on_error=self._failed
        )

    def _saved(self, saved: tuple[config.Settings, str | None]) -> None:
        settings, key = saved
        self.settings = settings
        self.sharing.port = settings.port
        self.sharing.show_key(key)
        self.app.settings = settings
        self.save_button.setEnabled(True)
        note = " The server settings apply at its next start." if self.app.snapshot.status.running else ""
        self.status.setText("Saved." + note)

    def _take_token(self) -> str:
        token = self.token.text().strip()
        self.token.clear()  # the secret leaves the widget as soon as a job has it
        return token

    def _save_token(self) -> None:
        token = self._take_token()
        if not token:
            self.token_state.setText("Paste a token first.")
            return
        self._set_token_busy(True)
        self.token_state.setText("Checking the token with the Hub…")

        def job(_job):
            account = secrets.check_hf_token(token)
            secrets.store(secrets.HF_TOKEN, token)
            return account, secrets.keyring_status(), secrets.hf_token_info()

        self.app.workers.submit(job, name="save-token", on_done=self._token_saved, on_error=self._token_failed)

    def _token_saved(self, result) -> None:
        account, ring, info = result
        self._show_token_state(ring, info)
        self.token_state.setText(f"Saved; the Hub knows it as {account.name}. " + self.token_state.text())

    def _test_token(self) -> None:
        token = self._take_token() or None
        self._set_token_busy(True)
        self.token_state.setText("Checking the token with the Hub…")
        self.app.workers.submit(
            lambda job: secrets.check_hf_token(token),
            name="test-token",
            on_done=self._token_tested,
            on_error=self._token_failed,
        )

    def _token_tested(self, account: secrets.HubAccount) -> None:
        self._set_token_busy(False)
        self.save_token.setEnabled(self.keyring.usable)
        self.forget_token.setEnabled(self.keyring.usable)
        self.token_state.setText(f"The Hub accepts the token: signed in as {account.name}.")

    def _token_failed(self, exc: BaseException) -> None:
        message, hint, _ = dialogs.error_text(exc)
        self._set_token_busy(False)
        self.save_token.setEnabled(getattr(self, "keyring", None) is None or self.keyring.usable)
        self.token_state.setText(f"{message} {hint}".strip())

    def _forget_token(self) -> None:
        self._set_token_busy(True)
        self.app.workers.submit(
            lambda job: (secrets.forget(secrets.HF_TOKEN), secrets.keyring_status(), secrets.hf_token_info()),
            name="forget-token",
            on_done=self._token_forgotten,
            on_error=self._token_failed,
        )

    def _token_forgotten(self, result) -> None:
        forgot, ring, info = result
        self._show_token_state(ring, info)
        if forgot:
            self.token_state.setText("The token was removed from the keyring. " + self.token_state.text())
