"""Fixtures for the tray tests: the private desktop session (see desktop.py) started once per session, the
tray as a real process on its display, and the real llama-server serving tiny models.

In-process tests run Qt offscreen (logic only, no tray there); the display tests run the tray as a real
process on the Xvfb display. The bus address is put in this process's environment too, before Qt or keyring
first look for it, so in-process notifications and keyring calls reach the same daemons.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.tray.desktop import ARTIFACTS, Desktop  # noqa: F401 - ARTIFACTS: test_display imports it from here

os.environ["QT_QPA_PLATFORM"] = "offscreen"


def _make_qapplication() -> None:
    """Made now, at collection, before any test of the session runs: a test elsewhere that makes a bare
    QGuiApplication first (rendering icons, say) would leave no room for the QApplication widgets need, and
    Qt aborts the whole run. Theirs then finds this one, which is a QGuiApplication too."""
    from PySide6.QtWidgets import QApplication

    if QApplication.instance() is None:
        global _QAPP
        _QAPP = QApplication([sys.argv[0]])


_QAPP = None
_make_qapplication()


@pytest.fixture(scope="session")
def desktop(tmp_path_factory) -> Desktop:
    """One private desktop for every tray test (tests/private_desktop.py)."""
    from tests.private_desktop import desktop_session

    with desktop_session(tmp_path_factory.mktemp("desktop")) as desktop:
        yield desktop


def dispose(t) -> None:
    """What a test's TrayApp leaves: its poll timer, its workers, its notifications and its windows."""
    import shiboken6

    t._quitting = True
    t.timer.stop()
    t.workers.cancel_all()
    t.workers.wait(30)
    t.notifications.close()
    for window in list(t.windows.values()):
        if shiboken6.isValid(window):
            window.close()


@pytest.fixture
def app(qtbot):
    """A TrayApp with no tray icon, not started: for the tests of its windows."""
    from aidevops_local.tray.app import TrayApp

    t = TrayApp(use_tray=False, native_notifications=True)
    yield t
    dispose(t)


@pytest.fixture(autouse=True)
def _desktop_session(desktop):
    """Every tray test runs inside the private desktop session."""
    desktop.close_all()
    yield


@pytest.fixture(autouse=True)
def _own_autostart_folder(tmp_path, monkeypatch):
    """The tray refreshes an existing start-at-login entry when it starts: never the real user's."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))


@pytest.fixture
def tray_env(desktop, isolated_home) -> dict[str, str]:
    """The environment for a tray process on the test display, rooted at this test's home."""
    env = dict(desktop.env)
    env.update({k: v for k, v in os.environ.items() if k.startswith(("AIDEVOPS_", "HF_", "PATH"))})
    env["AIDEVOPS_HOME"] = str(isolated_home)
    env.pop("QT_QPA_PLATFORM", None)  # the real display
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class TrayProcess:
    proc: subprocess.Popen
    ready_s: float
    log: Path

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


@pytest.fixture
def start_tray(tray_env, tmp_path):
    """start_tray(*args) -> TrayProcess: the tray as a real process, once it reports its first state."""
    started: list[TrayProcess] = []

    def start(*args: str, timeout: float = 30) -> TrayProcess:
        log = tmp_path / f"tray-{len(started)}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "aidevops_local.tray", "--report-ready", *args],
            env=tray_env,
            stdout=subprocess.PIPE,
            stderr=open(log, "wb"),
            text=True,
        )
        deadline = time.monotonic() + timeout
        line = ""
        while time.monotonic() < deadline and proc.poll() is None:
            line = proc.stdout.readline()
            if line.startswith("ready "):
                break
        if not line.startswith("ready "):
            proc.kill()
            raise AssertionError(f"the tray did not become ready: {line!r}\n{log.read_text(errors='replace')}")
        tray = TrayProcess(proc, float(line.split()[1]), log)
        started.append(tray)
        return tray

    yield start
    for tray in started:
        tray.stop()


@pytest.fixture
def system_runtime(system_runtime, free_port):
    """The root fixture's runtime and settings, on a port of this test's own; returns the settings."""
    from aidevops_local.core.system import config

    settings = config.load_settings()
    settings.port = free_port()
    config.save_settings(settings)
    return settings


@pytest.fixture
def local_models(isolated_home, tiny_gguf) -> list[str]:
    """Two copies of the tiny model in the models folder, as pulled models would be."""
    models = isolated_home / "models"
    models.mkdir(exist_ok=True)
    names = ["tiny-a", "tiny-b"]
    for name in names:
        shutil.copy(tiny_gguf, models / f"{name}.gguf")
    return names


@pytest.fixture
def served(system_runtime, local_models):
    """tiny-a served by the real llama-server; stopped after the test if it still runs."""
    from aidevops_local.core.serving import server

    status = server.serve(local_models[0])
    yield status
    server.stop(grace=2)
