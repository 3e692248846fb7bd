"""search, pull, models (and models rm), recommend."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from ..core.system.errors import ChoiceNeeded, ExitCode, Refused
from . import figures, render
from .arg_types import int_between

# The core modules behind these commands (huggingface_hub, peewee) are imported inside each command, so
# that `status` and the other commands never pay for them at start-up.

SEARCH_EXAMPLES = """examples:
  aidevops-local search qwen coder               # GGUF repos, most downloaded first
  aidevops-local search --repo bartowski/Qwen_Qwen3-8B-GGUF   # its files, quant, size, and whether each fits
  aidevops-local search llama --limit 5 --json"""

PULL_EXAMPLES = """examples:
  aidevops-local pull bartowski/Qwen_Qwen3-8B-GGUF            # Q4_K_M, else Q5_K_M, else Q8_0
  aidevops-local pull bartowski/Qwen_Qwen3-8B-GGUF:Q8_0
  aidevops-local pull ggml-org/gemma-3-4b-it-GGUF --file gemma-3-4b-it-Q4_K_M.gguf

An interrupted pull (Ctrl-C, a lost connection, a killed process) continues where it stopped when run again.
Every file is checked against the Hub's sha256 before it counts as pulled. Gated models need their licence
accepted on the model page and a token (HF_TOKEN)."""

MODELS_EXAMPLES = """examples:
  aidevops-local models                          # pulled, old helper's, and other tools' GGUFs (read-only)
  aidevops-local models --json
  aidevops-local models rm Qwen_Qwen3-8B-Q4_K_M   # delete a pulled model
  aidevops-local models rm some-lmstudio-model --yes   # another tool's file: only with --yes"""

RECOMMEND_EXAMPLES = """examples:
  aidevops-local recommend
  aidevops-local recommend --json
  AIDEVOPS_HARDWARE_PROFILE=machine.json aidevops-local recommend   # for another machine"""


def register(subparsers) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser(
        "search",
        help="find GGUF models on the Hugging Face Hub",
        description="Search the Hub for GGUF repos (most downloaded first), or list one "
        "repo's GGUF files with their quant, size and whether each fits here.",
        epilog=SEARCH_EXAMPLES,
        formatter_class=raw,
    )
    p.add_argument("query", nargs="*", help="words to search for")
    p.add_argument("--repo", help="list this repo's GGUF files instead")
    p.add_argument("--limit", type=int_between(1, 1000), default=20, help="at most this many repos (default 20)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_search)

    p = subparsers.add_parser(
        "pull",
        aliases=["download"],
        help="download a GGUF model (resumable, sha256-verified)",
        description="Download a model from the Hub into the models folder, with progress, "
        "resume and sha256 verification.",
        epilog=PULL_EXAMPLES,
        formatter_class=raw,
    )
    p.add_argument("repo", metavar="REPO[:QUANT]", help="org/repo, optionally with :QUANT (e.g. :Q5_K_M)")
    p.add_argument("--file", help="the exact file to download (for split models: any part)")
    p.add_argument("--quant", help="the same as REPO:QUANT (the framework's spelling)")
    p.add_argument("--revision", help="a branch, tag or commit (default main)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_pull)
    _register_models(subparsers, raw)

    p = subparsers.add_parser(
        "recommend",
        help="2-3 models that fit this machine, for chat and coding",
        description="Pick models from a curated list by this machine's memory and speed, "
        "and say why and what the next tier up would need.",
        epilog=RECOMMEND_EXAMPLES,
        formatter_class=raw,
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_recommend)


def _register_models(subparsers, raw) -> None:
    p = subparsers.add_parser(
        "models",
        aliases=["inventory"],
        help="models on disk: pulled, old helper's, other tools' (read-only)",
        description="List every model on disk with its quant, size, last use and where it "
        "came from; `models rm NAME` deletes one.",
        epilog=MODELS_EXAMPLES,
        formatter_class=raw,
    )
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.add_argument("--sync", action="store_true", help="accepted for the framework's `inventory --sync`: a no-op")
    sub = p.add_subparsers(dest="models_action", metavar="ACTION")
    rm = sub.add_parser(
        "rm", help="delete a model's files", description="Delete a model. Files another tool downloaded need --yes."
    )
    rm.add_argument("name", help="the model's name (see `models`) or its path")
    rm.add_argument("--yes", "-y", action="store_true", help="also delete a file this tool did not download")
    rm.add_argument("--json", action="store_true", help="print the result as JSON")
    rm.set_defaults(func=cmd_models_rm)
    p.set_defaults(func=cmd_models)


def cmd_search(args) -> int:
    from ..core.llamacpp import installed
    from ..core.models import hub
    from ..core.system import hardware

    if args.repo:
        files = hub.list_files(args.repo, hardware=hardware.detect(server=installed.server_or_none()))
        if args.json:
            render.as_json(files)
            return ExitCode.OK
        marks = {True: "yes", False: "no", None: "?"}
        render.table(
            ["file", "quant", "size", "fits", "needs (est.)"],
            [
                [
                    f.filename + (f" (+{len(f.parts) - 1} parts)" if f.split else ""),
                    f.quant,
                    render.human_bytes(f.size_bytes),
                    marks[f.fits],
                    render.human_bytes(f.needs_bytes),
                ]
                for f in files
            ],
            title=args.repo,
        )
        render.info(f"Pull one with: aidevops-local pull {args.repo}:QUANT")
        return ExitCode.OK
    query = " ".join(args.query)
    found = hub.search(query, limit=args.limit)
    if args.json:
        render.as_json(found)
        return ExitCode.OK
    if not found:
        render.info(f"No GGUF repos match {query!r}.")
        return ExitCode.NOT_FOUND
    render.table(
        ["repo", "downloads", "likes", "updated", "gated"],
        [[r.repo_id, f"{r.downloads:,}", r.likes, r.last_modified, "yes" if r.gated else ""] for r in found],
    )
    render.info("List a repo's files (and whether they fit here) with: aidevops-local search --repo ORG/REPO")
    return ExitCode.OK


def cmd_pull(args) -> int:
    from ..core.models import downloads

    file = args.file
    while True:
        try:
            with render.progress_bar(quiet=args.json) as progress:
                result = downloads.pull(args.repo, file, revision=args.revision, progress=progress)
            break
        except ChoiceNeeded as exc:
            file = _ask_choice(exc, args.repo)
    if args.json:
        render.as_json(result)
    elif result.already_present:
        render.info(f"{result.name} is already pulled and verified ({result.model.path}).")
    else:
        rate = render.human_bytes(result.rate_bps)
        resumed = f", {render.human_bytes(result.resumed_bytes)} resumed" if result.resumed_bytes else ""
        render.info(
            f"Pulled {result.name}: {render.human_bytes(result.downloaded_bytes)} in "
            f"{result.seconds:.1f} s ({rate}/s{resumed}), sha256 verified."
        )
        print(result.model.path)
    return ExitCode.OK


def _ask_choice(exc: ChoiceNeeded, repo: str) -> str:
    """On a terminal, let the user pick; otherwise fail with the list."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        raise ChoiceNeeded(
            f"{exc.message} Choices: {', '.join(exc.choices)}",
            choices=exc.choices,
            hint=exc.hint or f"Run again as `pull {repo}:QUANT` or with --file NAME.",
        )
    render.info(exc.message)
    for i, choice in enumerate(exc.choices, 1):
        render.info(f"  {i}. {choice}")
    answer = input(f"Which one (1-{len(exc.choices)})? ").strip()
    if not answer.isdigit() or not 1 <= int(answer) <= len(exc.choices):
        raise Refused("No file chosen; nothing was downloaded.", hint="Run again and pick a number.")
    choice = exc.choices[int(answer) - 1]
    from ..core.models import downloads, hub

    repo_id, _ = downloads.parse_spec(repo)
    files = hub.group_models(hub.repo_files(repo_id))
    for f in files:  # a choice may be a quant: turn it into its file
        if choice in (f.quant, f.filename):
            return f.filename
    return choice


def cmd_models(args) -> int:
    from ..core.models import library

    if args.json:
        figures.refresh_measurements()  # first: a model a router loaded on request gets its inventory row
        # Each model's figures on this machine, predicted beside measured (core/models/prediction.py).
        render.as_json([{**dataclasses.asdict(m), **figures.beside(m.path)} for m in library.list_models()])
        return ExitCode.OK
    found = library.list_models()
    if not found:
        render.info("No models yet. `aidevops-local recommend` suggests some; `aidevops-local pull REPO` gets one.")
        return ExitCode.OK
    from ..core.models import display_names

    shown = display_names.display_names(found)
    render.table(
        ["name", "model", "quant", "size", "last used", "requests", "source", "where"],
        [
            [
                m.name,
                shown[m.name].name,
                m.quant,
                render.human_bytes(m.size_bytes),
                m.last_used or "never",
                m.total_requests,
                m.source + (" (read-only)" if m.read_only else ""),
                m.where,
            ]
            for m in found
        ],
    )
    partials = library.partial_downloads()
    if partials:
        size = sum(p.stat().st_size for p in partials if p.exists())
        render.info(f"{len(partials)} unfinished download(s), {render.human_bytes(size)}: pull again to resume.")
    return ExitCode.OK


def cmd_models_rm(args) -> int:
    from ..core.maintenance import removal

    model = removal.model_to_remove(args.name)  # exact: resolve_model's substring match is for serve
    confirmed = args.yes
    warning = removal.removal_warning(model)  # names a link's target: only the link would go
    if warning and not confirmed and sys.stdin.isatty() and sys.stderr.isatty():
        answer = input(f"{warning} Remove it? [y/N] ")
        confirmed = answer.strip().lower() in ("y", "yes")
    freed = removal.remove_model(model, confirmed=confirmed)
    if args.json:
        render.as_json({"removed": model.name, "freed_bytes": freed, "files": [str(f) for f in model.files]})
    else:
        render.info(f"Removed {model.name} ({render.human_bytes(freed)} freed).")
    return ExitCode.OK


def cmd_recommend(args) -> int:
    from ..core.models import recommend

    result = recommend.recommend()
    if args.json:
        render.as_json(result)
        return ExitCode.OK
    hw = result.hardware
    gpu = ", ".join(f"{g.name} {render.human_bytes(g.vram_total) if g.vram_total else ''}".strip() for g in hw.gpus)
    render.info(
        f"This machine: {hw.cpu_name or hw.arch}, {hw.physical_cores} cores, "
        f"{render.human_bytes(hw.memory.total)} RAM"
        + (f", {gpu}" if gpu else "")
        + f"; backend {hw.best_backend}. Catalog of {result.catalog_date}."
    )
    if not result.picks:
        render.info(result.note)
        return ExitCode.NOT_FOUND
    render.table(
        ["for", "model", "quant", "size", "needs", "context", "tokens/s", "runs on"],
        [
            [
                p.use,
                p.name + (" (file not seen)" if p.checked == "no" else ""),
                p.quant + (f" ({p.parts} files)" if p.parts > 1 else ""),
                render.human_bytes(p.size_bytes),
                render.human_bytes(p.memory_bytes),
                f"{p.ctx} (KV {render.human_bytes(p.kv_bytes)})",
                f"~{p.tokens_per_s:.0f} ({p.speed_basis})",
                p.device,
            ]
            for p in result.picks
        ],
    )
    for p in result.picks:
        print(f"\n{p.name} ({p.use})\n  why:  {p.why}\n  next: {p.next_tier}\n  get:  {p.pull_command}")
    if (e := result.embedding) is not None:
        print(f"\nFor RAG, the embedding model: {e.name} ({render.human_bytes(e.size_bytes)}, {e.device})")
        print(f"  why:  {e.why}\n  get:  {e.pull_command}")
    return ExitCode.OK
