"""hf-token: the Hugging Face token in the OS keyring, for machines without the tray."""

from __future__ import annotations

import argparse
import getpass
import sys

from ..core.system import secrets
from ..core.system.errors import ExitCode, LocalModelsError
from . import render

EXAMPLES = """examples:
  aidevops-local hf-token                      # is a token set, and where from
  aidevops-local hf-token --set                # paste it at the prompt (it is not echoed), checked with the Hub
  printf %s "$TOKEN" | aidevops-local hf-token --set    # from a pipe: never put it on a command line
  aidevops-local hf-token --check              # ask the Hub whose token it is
  aidevops-local hf-token --forget

The token is read from standard input only, never from arguments (they show in `ps`), and kept only in the
OS keyring (macOS Keychain, Secret Service on Linux); HF_TOKEN in the environment still wins."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "hf-token",
        help="set, check or forget the Hugging Face token (OS keyring)",
        description="Keep the Hugging Face token (for gated models) in the OS keyring.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    action = p.add_mutually_exclusive_group()
    action.add_argument("--set", action="store_true", help="read a token from standard input and store it")
    action.add_argument("--check", action="store_true", help="ask the Hub whose token is set")
    action.add_argument("--forget", action="store_true", help="delete the token from the keyring")
    p.add_argument("--no-check", action="store_true", help="with --set: store without asking the Hub first")
    p.set_defaults(func=cmd_hf_token)


def cmd_hf_token(args) -> int:
    if args.set:
        token = _read_token()
        if not args.no_check:
            account = secrets.check_hf_token(token)
            render.info(f"The Hub knows this token as {account.name}.")
        secrets.store(secrets.HF_TOKEN, token)
        render.info(f"Stored in the keyring ({secrets.keyring_status().backend}).")
        return ExitCode.OK
    if args.forget:
        removed = secrets.forget(secrets.HF_TOKEN)
        render.info("Forgot the token." if removed else "No token was stored in the keyring.")
        return ExitCode.OK
    info = secrets.hf_token_info()
    if args.check:
        account = secrets.check_hf_token()
        render.info(
            f"The token from the {info.source} belongs to {account.name}"
            + (f" (orgs: {', '.join(account.orgs)})." if account.orgs else ".")
        )
        return ExitCode.OK
    status = secrets.keyring_status()
    render.key_values(
        [
            ["token", f"set, from the {info.source}" if info.present else "not set"],
            ["keyring", status.backend if status.usable else f"unusable: {status.reason}"],
        ]
    )
    if not status.usable and status.hint:
        render.warn(status.hint)
    return ExitCode.OK


def _read_token() -> str:
    if sys.stdin is None:
        raise LocalModelsError(
            "No token was given.", hint='Pipe it in: printf %s "$TOKEN" | aidevops-local hf-token --set'
        )
    token = getpass.getpass("Hugging Face token: ") if sys.stdin.isatty() else sys.stdin.read()
    if not token.strip():
        raise LocalModelsError("No token was given.", hint="Paste the whole token (it starts with hf_).")
    return token.strip()
