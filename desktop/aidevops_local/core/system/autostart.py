"""Start the tray at login: an XDG autostart entry on Linux, a LaunchAgent on macOS.

Both are plain files in the user's own folders, so enabling needs no privileges and disabling is a delete.
The entry runs the same command the user would: the AppImage itself, or the frozen bundle's executable with
``tray``, or the ``aidevops-local-tray`` script when it is installed, else this Python with
``-m aidevops_local.tray``. The macOS .app is opened by its bundle id (``open -b``), so moving or updating it
does not break the entry; it is refused while the app runs from its disk image or a translocated copy (a
path that is gone after the next login). The tray rewrites the entry at each start (``refresh``).
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from ... import APP_ID
from . import config, hardware
from .errors import Refused
from .files import write_atomically

LABEL = "com.aidevops.local-models.tray"  # the LaunchAgent's label
DESKTOP_ID = "aidevops-local-tray"  # the autostart file's name, without .desktop
# Characters that force quoting in a desktop entry's Exec key (Desktop Entry Specification, "The Exec key").
_EXEC_RESERVED = set(" \t\n\"'\\><~|&;$*?#()`")


@dataclass(frozen=True)
class AutostartEntry:
    path: Path
    enabled: bool
    command: tuple[str, ...]


def _macos_app() -> Path | None:
    """The .app this process runs from, on macOS."""
    executable = Path(sys.executable)
    if hardware.os_name() != "darwin" or not getattr(sys, "frozen", False):
        return None
    return next((p for p in executable.parents if p.suffix == ".app"), None)


def _vanishing_location(path: Path) -> str:
    """Why a program at ``path`` would not be there at the next login, or ""."""
    text = str(path)
    if text.startswith("/Volumes/"):
        return "from a mounted disk image or external volume"
    if "/AppTranslocation/" in text:  # Gatekeeper runs a downloaded app from a random read-only copy
        return "from a temporary copy macOS made (App Translocation) because it was opened where it was downloaded"
    return ""


def launch_command() -> list[str]:
    if _macos_app() is not None:  # Launch Services finds the app wherever it has been moved or updated to
        return ["/usr/bin/open", "-g", "-b", APP_ID]
    appimage = config.appimage_path()
    if appimage:  # sys.executable lives on the AppImage's temporary mount: start the image itself
        return [str(appimage)]
    if getattr(sys, "frozen", False):
        return [sys.executable, "tray"]
    script = shutil.which("aidevops-local-tray")
    if script:
        return [script]
    return [sys.executable, "-m", "aidevops_local.tray"]


def entry_path() -> Path:
    if hardware.os_name() == "darwin":
        return config.launch_agents_dir() / f"{LABEL}.plist"
    return config.xdg_config_home() / "autostart" / f"{DESKTOP_ID}.desktop"


def status() -> AutostartEntry:
    path = entry_path()
    return AutostartEntry(path=path, enabled=path.is_file(), command=tuple(launch_command()))


def enable(command: list[str] | None = None) -> AutostartEntry:
    if command is None:
        _refuse_vanishing_location()
        command = launch_command()
    path = entry_path()
    _write_if_changed(path, _entry_bytes(path, command))
    return AutostartEntry(path=path, enabled=True, command=tuple(command))


def refresh() -> bool:
    """At each start: an existing entry is rewritten when it no longer starts this install (an older version's
    entry, a moved app). Never turns start at login on, and leaves the entry alone while this copy runs from
    somewhere that will be gone. True when the entry was rewritten."""
    path = entry_path()
    if not path.is_file() or _vanishing_location(_macos_app() or Path(sys.executable)):
        return False
    return _write_if_changed(path, _entry_bytes(path, launch_command()))


def _refuse_vanishing_location() -> None:
    if hardware.os_name() != "darwin":
        return
    app = _macos_app()
    where = _vanishing_location(app or Path(sys.executable))
    if where:
        raise Refused(
            f"Start at login cannot be turned on while the app runs {where}: {app or sys.executable}.",
            hint="Drag aidevops Local Models into the Applications folder, open it from there, and "
            "turn Start at login on again.",
        )


def _entry_bytes(path: Path, command: list[str]) -> bytes:
    return _plist(command) if path.suffix == ".plist" else _desktop_entry(command).encode("utf-8")


def _write_if_changed(path: Path, data: bytes) -> bool:
    try:
        if path.read_bytes() == data:
            return False
    except OSError:
        pass
    write_atomically(path, data)
    return True


def disable() -> AutostartEntry:
    path = entry_path()
    path.unlink(missing_ok=True)
    return AutostartEntry(path=path, enabled=False, command=tuple(launch_command()))


def set_enabled(enabled: bool) -> AutostartEntry:
    return enable() if enabled else disable()


def _exec_quote(arg: str) -> str:
    arg = arg.replace("%", "%%")  # field codes
    if arg and not _EXEC_RESERVED & set(arg):
        return arg
    quoted = '"' + "".join("\\" + c if c in '"`$\\' else c for c in arg) + '"'
    # The key file's own string escaping is undone before the quoting rule, so backslashes double again.
    return quoted.replace("\\", "\\\\")


def _desktop_entry(command: list[str]) -> str:
    return "\n".join(
        [
            "[Desktop Entry]",
            "Type=Application",
            "Name=aidevops Local Models",
            "Comment=Local LLM server in the system tray",
            "Exec=" + " ".join(_exec_quote(a) for a in command),
            f"Icon={_icon_path()}",
            "Terminal=false",
            "Categories=Development;Utility;",
            "X-GNOME-Autostart-enabled=true",
            "",
        ]
    )


def _icon_path() -> Path | str:
    if getattr(sys, "frozen", False):
        return APP_ID  # a bundle's files may sit on a temporary mount; the icon theme knows the name
    return Path(__file__).resolve().parent.parent / "resources" / "app-icon.svg"


def _plist(command: list[str]) -> bytes:
    import plistlib  # macOS only, and only when the setting changes: the idle tray never needs its XML parser

    return plistlib.dumps(
        {
            "Label": LABEL,
            "ProgramArguments": list(command),
            "RunAtLoad": True,
            "KeepAlive": False,
            "ProcessType": "Interactive",
            "LimitLoadToSessionType": "Aqua",  # the GUI login, not ssh sessions
        }
    )
