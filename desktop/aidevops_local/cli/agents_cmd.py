"""agents install|status|uninstall: this tool's helper and guides in the user's aidevops framework."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.maintenance import framework_install
from ..core.system import config
from ..core.system.errors import ExitCode
from . import render

EXAMPLES = """examples:
  aidevops-local agents install                       # into ~/.aidevops/agents (or $AIDEVOPS_AGENTS_DIR)
  aidevops-local agents install --framework ~/Git/aidevops/.agents
  aidevops-local agents status --json
  aidevops-local agents uninstall                     # every file as it was before install

install copies scripts/local-model-helper.sh (keeping the framework's own, which uninstall puts back) and the
tools/local-models/ guides, and merges the local tier into AGENTS.md, tools/context/model-routing.md,
subagent-index.toon and configs/model-routing-table.json without changing a line of theirs. Running it again
changes nothing unless this version has newer parts. A folder that is not a framework, or a file whose layout
changed so that a part has no place, is refused (exit 12) before anything is written.
status exits 0 when installed, 4 when not."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "agents",
        help="install this tool into the aidevops agent framework, or take it out",
        description="Install aidevops-local's helper and guides into the aidevops framework, or remove them.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = p.add_subparsers(dest="agents_action", metavar="ACTION", required=True)
    for name, text, func in (
        ("install", "copy and merge our parts into the framework", cmd_install),
        ("status", "what is installed, and whether it is current", cmd_status),
        ("uninstall", "put every framework file back as it was", cmd_uninstall),
    ):
        sub = actions.add_parser(
            name,
            help=text,
            description=text[0].upper() + text[1:] + ".",
            epilog=EXAMPLES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.add_argument(
            "--framework",
            metavar="DIR",
            type=Path,
            help="the framework's agents folder (default: $AIDEVOPS_AGENTS_DIR, else ~/.aidevops/agents)",
        )
        sub.add_argument("--json", action="store_true", help="print the result as JSON")
        sub.set_defaults(func=func)


def _framework(args) -> Path:
    return (args.framework or config.agents_dir()).expanduser()


def cmd_install(args) -> int:
    result = framework_install.install(_framework(args))
    if args.json:
        render.as_json(result)
    elif result.changed:
        render.info(f"Installed into {result.framework}: {', '.join(result.changed)}.")
    else:
        render.info(f"Already installed in {result.framework}; nothing changed.")
    return ExitCode.OK


def cmd_status(args) -> int:
    status = framework_install.status(_framework(args))
    if args.json:
        render.as_json(status)
    else:
        render.key_values(
            [
                ("framework", status.framework),
                ("installed", "yes" if status.installed else "no"),
                ("current", "yes" if status.current else "no: run aidevops-local agents install"),
                ("record", status.record if status.installed else None),
            ]
        )
        if status.files:
            render.table(["file", "how", "state"], [[f.path, f.kind, f.state] for f in status.files])
    return ExitCode.OK if status.installed else ExitCode.NOT_INSTALLED


def cmd_uninstall(args) -> int:
    result = framework_install.uninstall(_framework(args))
    if args.json:
        render.as_json(result)
    elif not result.was_installed:
        render.info(f"aidevops-local is not installed in {result.framework}; nothing to do.")
    else:
        render.info(
            f"Uninstalled from {result.framework}: restored {len(result.restored)} files, "
            f"removed {len(result.removed)}."
        )
    for path in result.kept_edited:
        render.warn(f"{path} changed since install, so it was kept as it is (the framework's original is gone).")
    return ExitCode.OK
