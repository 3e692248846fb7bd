"""`doctor`: check what the tool depends on and say what to fix.

Each check only looks (opening the database applies its pending migrations, as every command does): the
runtime (installed, runs, a previous build kept), what the build does for security, the models' files
(present, their recorded size, and with ``hashes`` their sha256), the usage database (readable, undamaged,
migrated), the keyring, the port, the tray host and the free disk. A check that cannot finish says so as its
own result instead of stopping the others.

This module runs the checks in their order and counts the report; the checks live by concern in
doctor_runtime (app, runtime, server security), doctor_data (models, database, disk) and doctor_desktop
(keyring, port, tray host). The notifications check needs the tray's desktop-notifier, which core does not
import: the caller that has it (the CLI, from the tray package) passes it in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..system import config
from ..system.errors import LocalModelsError
from ..system.progress import ProgressCallback
from .doctor_data import DISK_FAIL_BYTES, DISK_WARN_BYTES, check_database, check_disk, check_models
from .doctor_desktop import GNOME_TRAY_HINT, SNI_WATCHER, check_keyring, check_port, check_tray_host
from .doctor_result import FAIL, OK, WARN, Check
from .doctor_runtime import (
    check_app_version,
    check_macos,
    check_previous_runtime,
    check_runtime,
    check_server_security,
)

__all__ = [
    "DISK_FAIL_BYTES",
    "DISK_WARN_BYTES",
    "FAIL",
    "GNOME_TRAY_HINT",
    "OK",
    "SNI_WATCHER",
    "WARN",
    "Check",
    "DoctorReport",
    "check_app_version",
    "check_database",
    "check_disk",
    "check_keyring",
    "check_macos",
    "check_models",
    "check_port",
    "check_previous_runtime",
    "check_runtime",
    "check_server_security",
    "check_tray_host",
    "run",
]


@dataclass(frozen=True)
class DoctorReport:
    checks: tuple[Check, ...]
    failed: int = 0
    warned: int = 0
    ok: bool = True  # no check failed


def run(
    *,
    hashes: bool = False,
    progress: ProgressCallback | None = None,
    notifications: Callable[[], Check | None] | None = None,
) -> DoctorReport:
    """Every check in its order. ``notifications`` is the tray's check of the notification centre, between the
    tray host and the disk; without it (no tray libraries to ask) there is no such check."""
    settings, settings_check = _settings()
    checks = [
        settings_check,
        check_app_version(),
        _guarded("runtime", check_runtime),
        _guarded("previous runtime", check_previous_runtime),
        _guarded("macOS", check_macos),
        _guarded("server security", lambda: check_server_security(settings)),
        _guarded("database", check_database),
        _guarded("models", lambda: check_models(hashes=hashes, progress=progress)),
        _guarded("keyring", lambda: check_keyring(settings)),
        _guarded("port", lambda: check_port(settings)),
        _guarded("tray host", check_tray_host),
        _guarded("notifications", notifications) if notifications else None,
        _guarded("disk", check_disk),
    ]
    checks = [c for c in checks if c is not None]
    failed = sum(c.status == FAIL for c in checks)
    warned = sum(c.status == WARN for c in checks)
    return DoctorReport(checks=tuple(checks), failed=failed, warned=warned, ok=failed == 0)


def _settings() -> tuple[config.Settings, Check]:
    """The settings and their check. A file that does not load fails that check, and the others look at the
    defaults (what would be used once the file is fixed or deleted)."""
    path = config.paths().config_file
    try:
        settings = config.load_settings()
    except LocalModelsError as exc:
        return config.Settings(), Check("settings", FAIL, exc.message, fix=exc.hint)
    where = str(path) if path.exists() else f"defaults (no {path})"
    return settings, Check("settings", OK, f"{where}: every value in range")


def _guarded(name: str, check: Callable[[], Check | None]) -> Check | None:
    """A check that hits an error reports it as its result: the doctor must not fall over what it examines."""
    try:
        return check()
    except LocalModelsError as exc:
        return Check(name, FAIL, f"could not be checked: {exc.message}", fix=exc.hint)
    except OSError as exc:
        return Check(name, FAIL, f"could not be checked: {exc}")
