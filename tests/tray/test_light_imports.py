"""The idle tray stays light: what it imports to start and to refresh leaves out what only a window, a
notification, a download or the server's front needs (the memory goal, tests/benchmarks/bench_tray.py).

Each module's cost is memory the idle tray holds all day (measured with psutil against the bare Qt imports):
asyncio with desktop-notifier and dbus_fast about 12 MiB, httpx about 4 MiB, http.client with the ssl module it
loads about 2 MiB (the health probe speaks HTTP with h11 instead), importlib.metadata about 2 MiB. Checked
without timing, in a fresh process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

# Loaded on first use only: by a notice (desktop-notifier, asyncio), by the server's front process
# (host_guard_front), by a runtime install or update (releases, httpx), by a pull (huggingface_hub), by the About
# item (importlib.metadata), by the autostart setting on macOS (plistlib) and by each window when it opens. Never:
# ssl and http.client (requests to our own server use h11 over a plain socket).
HEAVY = (
    "asyncio",
    "ssl",
    "http.client",
    "plistlib",
    "desktop_notifier",
    "dbus_fast",
    "httpx",
    "huggingface_hub",
    "importlib.metadata",
    "aidevops_local.core.serving.host_guard_front",
    "aidevops_local.core.llamacpp.releases",
    "aidevops_local.core.llamacpp.runtime",
    "aidevops_local.tray.control_window",
    "aidevops_local.tray.models_window",
    "aidevops_local.tray.download_window",
    "aidevops_local.tray.usage_window",
    "aidevops_local.tray.cleanup_window",
    "aidevops_local.tray.settings_window",
    "aidevops_local.tray.wizard",
)
QT_IDLE = {"PySide6.QtCore", "PySide6.QtGui", "PySide6.QtWidgets", "PySide6.QtNetwork"}  # QtNetwork: one instance

# The tray as main.py builds it (native notifications on), then the full refresh its worker runs at start and
# every minute, in this process: what an idle tray has imported.
IDLE_TRAY = """
import json, sys
from PySide6.QtWidgets import QApplication
import aidevops_local.tray.main
from aidevops_local.tray import snapshot
from aidevops_local.tray.app import TrayApp

app = QApplication([])
tray = TrayApp(use_tray=False)
tray.snapshot = snapshot.collect(full=True)
print(json.dumps(sorted(name for name, module in sys.modules.items() if module is not None)))  # None: a failed try
"""


def idle_modules(tmp_path) -> set[str]:
    env = dict(os.environ, AIDEVOPS_HOME=str(tmp_path), QT_QPA_PLATFORM="offscreen")
    out = subprocess.run(
        [sys.executable, "-c", IDLE_TRAY], env=env, capture_output=True, text=True, timeout=120, check=True
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_the_idle_tray_imports_nothing_it_only_needs_later(tmp_path):
    loaded = idle_modules(tmp_path)
    assert "aidevops_local.tray.app" in loaded and "aidevops_local.core.serving.server" in loaded  # it ran
    heavy = [m for m in HEAVY if m in loaded or any(name.startswith(m + ".") for name in loaded)]
    assert heavy == [], f"the idle tray imported {heavy}: import them where they are first used"
    qt = {m for m in loaded if m.startswith("PySide6.Qt")}
    assert qt <= QT_IDLE, f"the idle tray loaded Qt modules it does not use idle: {sorted(qt - QT_IDLE)}"
