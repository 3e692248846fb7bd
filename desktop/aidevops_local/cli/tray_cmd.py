"""tray: start the desktop tray app (PySide6 is imported only when this command runs)."""

from __future__ import annotations

import argparse

TRAY_EXAMPLES = """examples:
  aidevops-local tray                # the tray icon (a second launch brings the first forward)
  aidevops-local tray --wizard       # open the setup wizard
  aidevops-local tray --no-tray      # a window instead of an icon (desktops without a tray)"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "tray",
        help="start the desktop tray app",
        description="Start the tray app: the server's state, model and memory at a "
        "glance, and every command one click away.",
        epilog=TRAY_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--wizard", action="store_true", help="open the setup wizard")
    p.add_argument("--no-tray", action="store_true", help="use a window instead of a tray icon")
    p.set_defaults(func=cmd_tray)


def cmd_tray(args) -> int:
    try:
        from ..tray.main import main as tray_main
    except ImportError as exc:
        from ..core.system.errors import LocalModelsError

        raise LocalModelsError(
            f"The tray needs PySide6, which is not installed ({exc.name}).",
            hint="pip install 'aidevops-local[gui]'",
        ) from None
    argv = (["--wizard"] if args.wizard else []) + (["--no-tray"] if args.no_tray else [])
    return tray_main(argv)
