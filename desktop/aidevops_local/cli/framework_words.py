"""The words the aidevops framework's own helper took (UPSTREAM.md: `serve --model M`, `pull REPO --quant Q`,
`install --update`, `cleanup --remove-stale`, `inventory --sync`, `--quiet`, ...), folded into ours once after
parsing, so that every command sees only its own spelling. The aliases (`start`, `setup`, `download`,
`inventory`) and the options that are plain second names (`--ctx-size`, `--gpu-layers`) are declared where each
command registers; what needs a check or a rewrite is here.

Where a word means something else here, one `note:` line goes to stderr (never stdout: scripts parse it)."""

from __future__ import annotations

import argparse
import sys

from . import render


def add_quiet(subparsers) -> None:
    """`--quiet` on every command, as the framework's helper took it anywhere: fewer lines on stderr."""
    for sub in {id(p): p for p in subparsers.choices.values()}.values():
        if not any("--quiet" in a.option_strings for a in sub._actions):
            sub.add_argument(
                "--quiet", "-q", action="store_true", help="only results, warnings and errors: no progress or info"
            )


def note(text: str) -> None:
    if not render.quiet_mode:
        print(f"note: {text}", file=sys.stderr, flush=True)


def settle(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """``args`` with the framework's words replaced by ours; a usage error (exit 2) where two spellings
    given together disagree."""
    render.quiet_mode = bool(getattr(args, "quiet", False))
    if getattr(args, "update", False):  # install --update: our `update`
        return _install_update(parser, args)
    if hasattr(args, "model_option"):  # serve --model M: serve M
        args.model = _one_model(parser, args.model, args.model_option)
        del args.model_option
    if hasattr(args, "quant"):  # pull REPO --quant Q: pull REPO:Q
        args.repo = _with_quant(parser, args.repo, args.quant)
        del args.quant
    if hasattr(args, "remove_stale"):
        if args.remove_stale:
            if args.dry_run:
                parser.error("cleanup: --remove-stale removes and --dry-run only lists: give one of them")
            note(
                "--remove-stale removes without asking, as `cleanup --yes`; the model being served and "
                "files other tools downloaded are kept unless named"
            )
            args.yes = True
        del args.remove_stale
    if hasattr(args, "sync"):
        if args.sync:
            note("--sync has nothing to do: `models` (inventory) reads the disk every time it lists")
        del args.sync
    return args


def _install_update(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    if args.tag or args.use_system is not None or args.force or args.backend != "auto":
        parser.error(
            "install: --update updates the installed build (same backend) to the latest release; "
            "it takes no --tag, --backend, --use-system or --force"
        )
    ours = ["update"] + ["--insecure-skip-checksum"] * args.insecure_skip_checksum + ["--json"] * args.json
    return settle(parser, parser.parse_args(ours + ["--quiet"] * args.quiet))


def _one_model(parser: argparse.ArgumentParser, positional: str | None, option: str | None) -> str | None:
    if positional is not None and option is not None and positional != option:
        parser.error(f"serve: two models given, {positional!r} and --model {option!r}: give one")
    return positional if positional is not None else option


def _with_quant(parser: argparse.ArgumentParser, repo: str, quant: str | None) -> str:
    if quant is None:
        return repo
    quant = quant.strip()
    if not quant or ":" in quant:
        parser.error(f"pull: --quant {quant!r} is not a quant name, such as Q4_K_M")
    url = next((p for p in ("https://", "http://") if repo.startswith(p)), "")
    named = repo[len(url) :].partition(":")[2]  # REPO:QUANT (a URL's own colon is not one)
    if not named:
        return f"{repo}:{quant}"
    if named.lower() != quant.lower():
        parser.error(f"pull: two quants given, {repo!r} and --quant {quant!r}: give one")
    return repo
