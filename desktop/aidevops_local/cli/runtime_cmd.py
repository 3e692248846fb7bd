"""`install` and `update`: the llama.cpp runtime."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.llamacpp import runtime
from ..core.system import hardware
from ..core.system.errors import ExitCode
from . import render

INSTALL_EPILOG = """examples:
  aidevops-local install                      # the latest release, best backend for this machine
  aidevops-local install --backend vulkan     # a specific backend
  aidevops-local install --tag b5432          # a specific release
  aidevops-local install --use-system         # use the llama-server on PATH (Homebrew, distro)
  aidevops-local install --use-system /opt/llama.cpp/bin/llama-server
  aidevops-local install --json               # the installed runtime as JSON on stdout

Downloads are checked against the sha256 digest GitHub publishes for each asset. The build that is
replaced is kept: `aidevops-local update --rollback` brings it back.
Set GITHUB_TOKEN to lift GitHub's API rate limit; AIDEVOPS_LLAMA_RELEASES_URL points at a mirror."""

UPDATE_EPILOG = """examples:
  aidevops-local update --check       # is a newer llama.cpp release out?
  aidevops-local update               # install it, keeping the current build as the previous one
  aidevops-local update --rollback    # swap the previous build back in
  aidevops-local update --check --json"""


def register(subparsers) -> None:
    install = subparsers.add_parser(
        "install",
        aliases=["setup"],
        help="install llama.cpp (llama-server) for this machine",
        description="Install the official llama.cpp build that fits this machine, verified, under $AIDEVOPS_HOME/bin.",
        epilog=INSTALL_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    install.add_argument(
        "--backend",
        choices=("auto", *hardware.BACKENDS),
        default="auto",
        help="which build to install (default: the best one this machine can use)",
    )
    install.add_argument("--tag", metavar="bNNNN", help="a release tag (default: the latest release)")
    install.add_argument(
        "--use-system",
        nargs="?",
        const="",
        metavar="PATH",
        help="record an existing llama-server (default: the one on PATH) instead of downloading",
    )
    install.add_argument(
        "--insecure-skip-checksum", action="store_true", help="install an asset that has no published sha256 digest"
    )
    install.add_argument("--force", action="store_true", help="reinstall even if this build is installed")
    install.add_argument("--update", action="store_true", help="the same as `update` (the framework's spelling)")
    install.add_argument("--json", action="store_true", help="print the result as JSON")
    install.set_defaults(func=_install)

    update = subparsers.add_parser(
        "update",
        help="update llama.cpp to the latest release, or roll back",
        description="Update the installed llama.cpp build to the latest release (same backend), or roll back.",
        epilog=UPDATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = update.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="only say whether a newer release is out")
    mode.add_argument("--rollback", action="store_true", help="make the previous build active again")
    update.add_argument(
        "--insecure-skip-checksum", action="store_true", help="install an asset that has no published sha256 digest"
    )
    update.add_argument("--json", action="store_true", help="print the result as JSON")
    update.set_defaults(func=_update)


def _describe(rt: runtime.InstalledRuntime) -> str:
    if rt.source == "system":
        return f"the system llama-server at {rt.server_path} ({rt.version})"
    return f"llama.cpp {rt.tag} ({rt.backend}) at {Path(rt.server_path).parent} ({rt.version})"


def _install(args) -> int:
    if args.use_system is not None:
        if args.tag or args.backend != "auto" or args.insecure_skip_checksum:
            render.error_text(
                "--use-system records an existing llama-server; it takes no --tag, --backend "
                "or --insecure-skip-checksum."
            )
            return ExitCode.USAGE
        result = runtime.use_system(path=Path(args.use_system) if args.use_system else None)
        return _show(args, result, f"Using {_describe(result)}.")
    before = runtime.installed_runtime()
    with render.progress_bar(quiet=args.json) as progress:
        result = runtime.install_release(
            tag=args.tag,
            backend=args.backend,
            progress=progress,
            insecure_skip_checksum=args.insecure_skip_checksum,
            force=args.force,
        )
    if not result.verified:
        render.warn(f"{result.asset} was installed without checking its checksum.")
    if before is not None and before.installed_at == result.installed_at:
        return _show(args, result, f"Already installed: {_describe(result)}. Use --force to reinstall.")
    return _show(args, result, f"Installed {_describe(result)}.")


def _update(args) -> int:
    if args.check:
        check = runtime.check_update()
        if args.json:
            render.as_json(check)
        elif check.installed is None:
            render.out.print(f"llama.cpp is not installed; the latest release is {check.latest_tag}.", markup=False)
        elif check.update_available:
            render.out.print(
                f"Update available: {check.installed.tag or check.installed.version} -> "
                f"{check.latest_tag}. Run `aidevops-local update`.",
                markup=False,
            )
        else:
            render.out.print(
                f"Up to date: {_describe(check.installed)}; the latest release is {check.latest_tag}.", markup=False
            )
        return ExitCode.OK
    if args.rollback:
        result = runtime.rollback()
        gone = f" ({_describe(result.previous)} is now the previous build)" if result.previous else ""
        return _show(args, result, f"Rolled back to {_describe(result.runtime)}{gone}.")
    with render.progress_bar(quiet=args.json) as progress:
        result = runtime.update(progress=progress, insecure_skip_checksum=args.insecure_skip_checksum)
    if not result.updated:
        return _show(args, result, f"Up to date: {_describe(result.runtime)}.")
    if not result.runtime.verified:
        render.warn(f"{result.runtime.asset} was installed without checking its checksum.")
    kept = f" (kept {result.replaced.tag} as the previous build)" if result.replaced else ""
    return _show(args, result, f"Updated to {_describe(result.runtime)}{kept}.")


def _show(args, result, message: str) -> int:
    if args.json:
        render.as_json(result)
    else:
        render.out.print(message, markup=False)
    return ExitCode.OK
