"""doctor: check the runtime, models, database, keyring, port, tray host and disk; say what to fix."""

from __future__ import annotations

import argparse

from rich.markup import escape

from ..core.maintenance import doctor
from ..core.system.errors import ExitCode
from ..tray.notification_check import check_notifications
from . import render

EXAMPLES = """examples:
  aidevops-local doctor                        # every check, with what to do about each problem
  aidevops-local doctor --hashes               # also re-hash every pulled model (reads every byte: slow)
  aidevops-local doctor --json                 # for scripts

exit status: 0 when no check failed (warnings allowed), 1 otherwise."""

_STYLE = {doctor.OK: "green", doctor.WARN: "yellow", doctor.FAIL: "bold red"}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "doctor",
        help="check the runtime, models, database, keyring, port and tray host",
        description="Check what aidevops-local depends on and print what to fix. Changes nothing.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--hashes", action="store_true", help="re-hash pulled models against their recorded sha256")
    p.add_argument("--json", action="store_true", help="print the checks as JSON")
    p.set_defaults(func=cmd_doctor)


def cmd_doctor(args) -> int:
    with render.progress_bar(quiet=args.json or not args.hashes) as progress:
        result = doctor.run(hashes=args.hashes, progress=progress, notifications=check_notifications)
    if args.json:
        render.as_json(result)
    else:
        _print(result)
    return ExitCode.OK if result.ok else ExitCode.ERROR


def _print(result: doctor.DoctorReport) -> None:
    for check in result.checks:
        render.out.print(
            f"[{_STYLE[check.status]}]{check.status:>4}[/]  [bold]{escape(check.name)}[/]: {escape(check.summary)}",
            markup=True,
            highlight=False,
        )
        for line in check.details:
            render.out.print(f"{'':6}{line}", markup=False, highlight=False)
        if check.fix and check.status != doctor.OK:
            render.out.print(f"{'':6}[cyan]fix:[/] {escape(check.fix)}", markup=True, highlight=False)
    verdict = (
        "no problems"
        if not result.failed and not result.warned
        else f"{result.failed} failed, {result.warned} warning(s)"
    )
    render.out.print(f"\n{verdict}", markup=False, highlight=False)
