"""One tray per user and root: a second launch hands its request to the first."""

from __future__ import annotations

import os
import subprocess
import sys

from aidevops_local.tray import single_instance
from aidevops_local.tray.single_instance import SingleInstance, ask_running_instance


def test_second_launch_reaches_the_first(qtbot, isolated_home):
    first = SingleInstance()
    assert first.listen()
    try:
        with qtbot.waitSignal(first.requested, timeout=5000) as got:
            # A real second process, as a second launch would be.
            code = (
                "import sys; from PySide6.QtCore import QCoreApplication; app = QCoreApplication([]); "
                "from aidevops_local.tray.single_instance import ask_running_instance; "
                "sys.exit(0 if ask_running_instance('wizard') else 1)"
            )
            proc = subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ))
            qtbot.waitUntil(lambda: proc.poll() is not None, timeout=10_000)
        assert proc.returncode == 0
        assert got.args == ["wizard"]
    finally:
        first.close()


def test_nobody_listening_means_first_instance(qapp, isolated_home):
    assert ask_running_instance("show") is False


def test_stale_socket_is_taken_over(qapp, isolated_home, tmp_path):
    name = single_instance.server_name()
    first = SingleInstance(name=name)
    assert first.listen()
    first.server.close()  # as if it died: on Unix the socket file may stay behind
    second = SingleInstance(name=name)
    assert second.listen()
    second.close()


def test_each_root_is_its_own_instance(monkeypatch, tmp_path):
    monkeypatch.setenv("AIDEVOPS_HOME", str(tmp_path / "a"))
    a = single_instance.server_name()
    monkeypatch.setenv("AIDEVOPS_HOME", str(tmp_path / "b"))
    assert single_instance.server_name() != a
