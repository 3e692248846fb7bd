"""The tray's entry point: ``aidevops-local-tray`` (GUI script), ``python -m aidevops_local.tray`` and
``aidevops-local tray``. One instance per user and root; logging to <root>/local-models/logs/tray.log."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path

import psutil
from PySide6.QtCore import QSocketNotifier
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from .. import APP_ID
from ..core.system import config
from . import icons, macos
from .app import TrayApp
from .single_instance import SingleInstance, ask_running_instance

log = logging.getLogger(__name__)


def _setup_logging() -> None:
    from logging.handlers import RotatingFileHandler

    logs = config.paths().logs_dir
    logs.mkdir(parents=True, exist_ok=True)
    handler = RotatingFileHandler(logs / "tray.log", maxBytes=1 << 20, backupCount=3, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)

    def excepthook(kind, value, tb) -> None:
        # Tracebacks carry no locals, so a secret held in a variable never reaches the log.
        log.error("Unhandled exception", exc_info=(kind, value, tb))

    sys.excepthook = excepthook


def _quit_on_signals(app: QApplication, tray: TrayApp) -> None:
    """SIGINT/SIGTERM quit cleanly (leaving the server running). The wakeup fd wakes Qt only when a signal
    arrives, where a polling timer would cost CPU all day."""
    read_end, write_end = socket.socketpair()
    read_end.setblocking(False)
    write_end.setblocking(False)
    signal.set_wakeup_fd(write_end.fileno())
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    notifier = QSocketNotifier(read_end.fileno(), QSocketNotifier.Type.Read, app)

    def woke() -> None:
        try:
            read_end.recv(64)
        except OSError:
            pass
        tray.shutdown(stop_server=False)

    notifier.activated.connect(woke)
    app._signal_sockets = (read_end, write_end, notifier)  # kept alive with the app


def _seconds_since_start() -> float:
    """Since this process was created. On Linux from /proc, to the clock tick: psutil's create_time adds the
    boot time, which /proc gives only in whole seconds."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22, counted after the ")"
        return time.clock_gettime(time.CLOCK_BOOTTIME) - started
    except (OSError, ValueError, IndexError, AttributeError):
        return time.time() - psutil.Process().create_time()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aidevops-local-tray", description="The aidevops Local Models tray.")
    parser.add_argument("--wizard", action="store_true", help="open the setup wizard")
    parser.add_argument("--no-tray", action="store_true", help="use a window instead of a tray icon")
    parser.add_argument(
        "--report-ready",
        action="store_true",
        help="print 'ready <seconds>' once the icon shows its first state (benchmarks, tests)",
    )
    args = parser.parse_args(argv)
    if not config.graphical_session():
        # Without this, Qt aborts the process with a plugin error that says nothing useful.
        print(
            "error: the tray needs a desktop session, and this one has no display (DISPLAY and "
            "WAYLAND_DISPLAY are unset).\nhint: run it from your desktop, or use the commands instead: "
            "aidevops-local install, recommend, pull, serve.",
            file=sys.stderr,
        )
        return 1

    app = QApplication(sys.argv[:1])
    app.setApplicationName("aidevops-local-tray")
    app.setApplicationDisplayName("aidevops Local Models")
    app.setDesktopFileName(APP_ID)  # matches the bundles' .desktop file
    app.setQuitOnLastWindowClosed(False)  # closing a window leaves the tray running
    app.setWindowIcon(QIcon(str(icons.app_icon_path())))
    if ask_running_instance("wizard" if args.wizard else "show"):
        return 0
    _setup_logging()
    macos.use_accessory_policy()  # a pip install has no Info.plist: no Python icon in the Dock
    instance = SingleInstance(app)
    instance.listen()
    tray = TrayApp(use_tray=False if args.no_tray else None)
    instance.requested.connect(tray.handle_request)
    _quit_on_signals(app, tray)
    if args.report_ready:

        def ready(_snap) -> None:
            tray.snapshot_changed.disconnect(ready)
            shown = tray.tray.isVisible() if tray.tray is not None else True
            kind = "yes" if tray.tray else "no"
            print(f"ready {_seconds_since_start():.3f} tray={kind} shown={shown}", flush=True)

        tray.snapshot_changed.connect(ready)
    tray.start()
    if args.wizard:
        tray.open_wizard()
    code = app.exec()
    instance.close()
    return code
