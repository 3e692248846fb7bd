"""One tray per user and root: a second launch hands its request to the first."""

from __future__ import annotations

import os
import stat
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


def test_stale_socket_is_taken_over(qtbot, isolated_home):
    # A real first instance, killed: SIGKILL leaves no chance to remove its socket file.
    name = single_instance.server_name()
    code = (
        "import sys, time; from PySide6.QtCore import QCoreApplication; app = QCoreApplication([]); "
        "from aidevops_local.tray.single_instance import SingleInstance; "
        f"first = SingleInstance(name={name!r}); assert first.listen(); "
        "print(first.server.fullServerName(), flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        path = holder.stdout.readline().strip()
    finally:
        holder.kill()
        holder.wait()
    assert path and stat.S_ISSOCK(os.lstat(path).st_mode), "the killed holder's socket file should stay"
    assert ask_running_instance("show", name=name) is False  # nobody answers on it

    second = SingleInstance(name=name)
    try:
        assert second.listen()
        with qtbot.waitSignal(second.requested, timeout=5000) as got:
            asker = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    (
                        "import sys; from PySide6.QtCore import QCoreApplication; app = QCoreApplication([]); "
                        "from aidevops_local.tray.single_instance import ask_running_instance; "
                        f"sys.exit(0 if ask_running_instance('wizard', name={name!r}) else 1)"
                    ),
                ],
                env=dict(os.environ),
            )
            qtbot.waitUntil(lambda: asker.poll() is not None, timeout=10_000)
        assert asker.returncode == 0 and got.args == ["wizard"]
    finally:
        second.close()


def test_a_live_instance_keeps_its_name(qapp, isolated_home):
    name = single_instance.server_name()
    code = (
        "from PySide6.QtCore import QCoreApplication; app = QCoreApplication([]); "
        "from aidevops_local.tray.single_instance import SingleInstance; "
        f"first = SingleInstance(name={name!r}); assert first.listen(); "
        "first.requested.connect(lambda r: (print('got', r, flush=True), app.quit())); "
        "print('ready', flush=True); app.exec()"
    )
    first = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        assert first.stdout.readline().strip() == "ready"
        second = SingleInstance(name=name)
        try:
            assert second.listen() is False  # a late second launch must not take the name from the first
        finally:
            second.close()
        assert ask_running_instance("wizard", name=name)
        assert first.stdout.readline().strip() == "got wizard"  # the first one still owns the name
    finally:
        first.kill()
        first.wait()


def test_each_root_is_its_own_instance(monkeypatch, tmp_path):
    monkeypatch.setenv("AIDEVOPS_HOME", str(tmp_path / "a"))
    a = single_instance.server_name()
    monkeypatch.setenv("AIDEVOPS_HOME", str(tmp_path / "b"))
    assert single_instance.server_name() != a
