"""usage, cleanup, nudge."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime

from ..core.system.config import DAYS_RANGE
from . import render
from .arg_types import int_between, since

# The core modules these commands use (peewee, the log reader) are imported inside each command: every
# other command, `status` above all, must not pay for them at start-up.

USAGE_EXAMPLES = """examples:
  aidevops-local usage                          # everything so far, per model
  aidevops-local usage --since 7d               # the last week (30m, 24h, 7d, 2w)
  aidevops-local usage --since 2026-11-01       # from that day's midnight, local time
  aidevops-local usage --model qwen2.5-coder-7b --json
  aidevops-local usage --reset-db               # only for a damaged database: move it aside, start fresh"""

CLEANUP_EXAMPLES = """examples:
  aidevops-local cleanup --dry-run              # what is stale and what removing it would free
  aidevops-local cleanup --days 60 --yes        # remove models unused for 60+ days without asking
  aidevops-local cleanup some-model             # remove a named model, even one not downloaded here"""


def register(subparsers) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser(
        "usage",
        help="requests, tokens and speed per model, and the cloud cost avoided",
        description="Per-model usage of the local server: requests, tokens in/out, mean tokens/s, time, last "
        "use, and what the same tokens would have cost on the cloud tiers.",
        epilog=USAGE_EXAMPLES,
        formatter_class=raw,
    )
    p.add_argument(
        "--since",
        metavar="PERIOD|DATE",
        type=since(DAYS_RANGE[1]),
        help="only the last PERIOD (30m, 24h, 7d, 2w), or since a DATE (2026-11-01, local time) or date and time",
    )
    p.add_argument("--model", help="only this model")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--reset-db",
        action="store_true",
        help="move a damaged database aside (kept as local-models.db.corrupt-<time>) and start fresh",
    )
    p.set_defaults(func=cmd_usage)

    p = subparsers.add_parser(
        "cleanup",
        help="find models unused for 30+ days and offer to remove them",
        description="List models whose last use (or download) is older than --days, with their sizes, "
        "and remove them after asking. The model being served and files this tool did not "
        "download are kept unless named.",
        epilog=CLEANUP_EXAMPLES,
        formatter_class=raw,
    )
    p.add_argument("models", nargs="*", metavar="MODEL", help="remove exactly these models, whatever their age")
    p.add_argument(
        "--days", type=int_between(*DAYS_RANGE), help="unused for this many days counts as stale (default 30)"
    )
    p.add_argument("--dry-run", action="store_true", help="only list; remove nothing")
    p.add_argument("--yes", "-y", action="store_true", help="remove without asking")
    p.add_argument("--remove-stale", action="store_true", help="the framework's spelling of --yes")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_cleanup)

    p = subparsers.add_parser(
        "nudge",
        help="one line if stale models take a lot of disk (at most once a day)",
        description="Print one reminder line when models unused for a while take more than the configured "
        "size; silent otherwise, and at most once a day. Meant for a session-start hook.",
    )
    p.add_argument("--json", action="store_true", help="print the nudge (or null) as JSON")
    p.set_defaults(func=cmd_nudge)


def _row(m) -> list:
    return [
        m.model,
        m.requests,
        f"{m.tokens_in:,}",
        f"{m.tokens_out:,}",
        _speed(m.mean_tok_per_sec),
        render.human_duration(m.total_ms / 1000),
        _when(m.last_used),
    ]


def cmd_usage(args) -> int:
    from ..core.accounting import usage
    from ..core.database import store
    from ..core.serving import state
    from ..core.system.config import paths

    if args.reset_db:
        moved = store.move_aside_damaged()
        render.info(f"Moved the damaged database to {moved}. A fresh one starts with the next command.")
        return 0
    since = usage.parse_since(args.since) if args.since else None
    span = (f"last {args.since}" if usage.is_period(args.since) else f"since {args.since}") if args.since else ""
    result = usage.report(live_log=state.live_log(), since=since, model=args.model)
    if args.json:
        render.as_json(result)
        return 0
    if not result.models:
        render.info("No requests recorded" + (f" in the {span}." if span.startswith("last") else f" {span or 'yet'}."))
        return 0
    rows = [_row(m) for m in result.models]
    if len(result.models) > 1:
        rows.append(_row(result.total))  # its model is "all"
    render.table(
        ["model", "requests", "tokens in", "tokens out", "tok/s", "time", "last used"],
        rows,
        title="Local model usage" + (f" ({span})" if span else ""),
    )
    tiers = list(result.price_models)
    shown = result.models + ([result.total] if len(result.models) > 1 else [])
    cost_rows = [[m.model] + [_usd(m.cloud_cost_usd[t]) for t in tiers] for m in shown]
    render.table(["model"] + tiers, cost_rows, title="The same tokens on the cloud tiers (locally: $0)")
    render.info(
        f"List prices as of {result.prices_as_of}: "
        + ", ".join(f"{t} = {name}" for t, name in result.price_models.items())
        + "."
    )
    if result.total.incomplete:
        render.info(f"{result.total.incomplete} request(s) were cancelled or failed; their tokens are included.")
    render.info(f"Data: {paths().database}")
    return 0


def cmd_cleanup(args) -> int:
    from ..core.maintenance import cleanup

    plan = cleanup.find_stale(days=args.days, names=args.models or None)
    if not args.json:
        _show_plan(plan, named=bool(args.models))
    removable = plan.removable
    removed = cleanup.CleanupResult()
    if removable and args.dry_run and not args.json:
        render.info("Dry run: nothing removed.")
    if removable and not args.dry_run and (args.yes or _confirm(plan, quiet=args.json)):
        removed = cleanup.remove(plan=plan)
        if not args.json:
            render.info(f"Removed {len(removed.removed)} model(s), freed {render.human_bytes(removed.freed_bytes)}.")
    if args.json:
        render.as_json(
            {
                "days": plan.days,
                "dry_run": args.dry_run,
                "models": plan.models,
                "removable_bytes": plan.removable_bytes,
                "removed": [m.model for m in removed.removed],
                "freed_bytes": removed.freed_bytes,
            }
        )
    return 0


def _show_plan(plan, *, named: bool) -> None:
    if not plan.models:
        render.info(f"No model has been unused for {plan.days}+ days.")
        return
    rows = [
        [
            m.model,
            render.human_bytes(m.size_bytes),
            _when(m.last_active),
            "-" if m.idle_days is None else f"{m.idle_days}d",
            "remove" if m.removable else f"keep: {m.reason}",
        ]
        for m in plan.models
    ]
    title = "Models named for removal" if named else f"Models unused for {plan.days}+ days"
    render.table(["model", "size", "last active", "idle", "action"], rows, title=title)
    if plan.removable:
        render.info(f"Removing {len(plan.removable)} model(s) frees {render.human_bytes(plan.removable_bytes)}.")


def _confirm(plan, *, quiet: bool) -> bool:
    """Ask on the terminal; with no terminal to ask on, remove nothing and say how to."""
    if not sys.stdin or not sys.stdin.isatty():
        render.info(
            "Nothing removed: there is no terminal to ask on. Run again with --yes to remove "
            f"{len(plan.removable)} model(s), or --dry-run to only list them."
        )
        return False
    sys.stderr.write(
        f"Remove {len(plan.removable)} model(s) and free {render.human_bytes(plan.removable_bytes)}? [y/N] "
    )
    sys.stderr.flush()
    answer = sys.stdin.readline().strip().lower()
    if answer not in ("y", "yes"):
        if not quiet:
            render.info("Nothing removed.")
        return False
    return True


def cmd_nudge(args) -> int:
    from ..core.maintenance import cleanup

    result = cleanup.nudge()
    if args.json:
        render.as_json(result)
    elif result is not None:
        print(result.message)
    return 0


def _usd(value: float) -> str:
    from ..core.accounting.prices import format_usd

    return format_usd(value)


def _speed(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone().strftime("%Y-%m-%d %H:%M")
