"""`aidevops-local tray` and the GUI entry point: registered, documented, and Qt-free until they run."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

from aidevops_local.cli.main import build_parser


def test_tray_command_is_registered_with_its_options():
    args = build_parser().parse_args(["tray", "--wizard", "--no-tray"])
    assert args.wizard and args.no_tray and args.func.__name__ == "cmd_tray"


def test_cli_help_does_not_import_qt():
    code = (
        "import sys; from aidevops_local.cli.main import build_parser; build_parser().format_help(); "
        "sys.exit(1 if 'PySide6' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_gui_script_points_at_the_tray_main():
    scripts = {e.name: e.value for e in entry_points(group="gui_scripts")}
    assert scripts.get("aidevops-local-tray") == "aidevops_local.tray.main:main"


def test_tray_help_runs():
    done = subprocess.run(
        [sys.executable, "-m", "aidevops_local.tray", "--help"],
        capture_output=True,
        text=True,
        check=False,
        env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0 and "--wizard" in done.stdout
