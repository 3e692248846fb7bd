"""The `aidevops-local` command: argument parsing and the error table. Each command group registers
itself from its own module; every command calls into core and only renders the result."""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__
from ..core.system.errors import ExitCode, LocalModelsError
from . import framework_words, render

# One module per command group; each exposes register(subparsers).
COMMAND_MODULES = (
    "runtime_cmd",
    "models_cmd",
    "server_cmd",
    "usage_cmd",
    "token_cmd",
    "doctor_cmd",
    "tray_cmd",
    "benchmark_cmd",
    "agents_cmd",
    "worker_cmd",
)

EPILOG = """exit codes:
  0 ok                 1 error               2 usage
  3 server not running 4 runtime not installed
  5 not found          6 verification failed (checksum, corrupt file, unsafe archive)
  7 network error      8 server failed to start   9 port in use
 10 disk full         11 bad configuration   12 refused (unsafe path, foreign process)
 13 database error   130 cancelled

Everything lives under $AIDEVOPS_HOME (default ~/.aidevops)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aidevops-local",
        description="Run local GGUF models with llama.cpp as a $0 tier beside cloud models.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"aidevops-local {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__package__}.{name}").register(subparsers)
    framework_words.add_quiet(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = framework_words.settle(parser, parser.parse_args(argv))  # the framework's words, as ours
    if not getattr(args, "func", None):
        parser.print_help()
        return ExitCode.USAGE
    try:
        return int(args.func(args) or 0)
    except LocalModelsError as exc:
        render.error(exc)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        render.error_text("Interrupted.", "Run the same command again to continue where it stopped.")
        return int(ExitCode.CANCELLED)


if __name__ == "__main__":
    sys.exit(main())
