"""Usage accounting: every request a server of ours finished becomes one row, and per-model reports.

Nothing sits on the request path. llama-server writes its own per-request accounting to its log (see
request_log for the lines and why they are exact); `ingest()` reads each log from a cursor kept in the
database and turns finished requests into rows. The cursor (byte offset, always at a line end, plus the
reader's state there) moves in the same transaction as the rows it produced, so a crash mid-ingest neither
loses nor doubles a request, and each row's request key ("<run>:<task>") is unique, so reading a log again can
never count a request twice. It is called by `usage`, `cleanup`, `nudge`, by `stop` after the server exits and
by the tray on a timer; with nothing new it costs one directory listing, a stat per log and one query.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import peewee

from ..database import store
from ..llamacpp import build_features
from ..system import clock
from ..system.config import llama_arg_env, paths
from ..system.errors import ConfigError
from . import measuring, prices
from .request_log import LogReader, Request, parse_header

LOG_GLOB = "llama-server-*.log"  # server.py's per-run logs
KEEP_LOGS = 5  # fully read logs kept for reading, besides any touched in the last day
KEEP_RECENT = timedelta(days=1)
CHUNK_BYTES = 4 << 20  # one transaction per chunk keeps each write short
BASE_LOG_ARGS = ("--log-timestamps", "--log-prefix")


# ---- what llama-server is asked to log ------------------------------------------------------------------


def llama_server_log_args(*, server_binary: Path | None = None, server_args: Sequence[str] | None = None) -> list[str]:
    """Flags that make llama-server's log carry what ingestion reads; pass the rest of its argv as
    `server_args`.

    Each task's whole prompt count ("new prompt ... task.n_tokens", the client's usage.prompt_tokens) is an
    info line in older builds but a trace line (-lv 4) in builds that have a trace level. Without it the count
    still follows exactly from the release line (see request_log), except under speculative decoding, where a
    stop inside an accepted draft leaves extra tokens in the slot. Trace logging costs 4-9 times the log
    volume (it lists the prompt cache on every request), so it is asked for only where it is needed: when
    speculative decoding may be on (a draft or spec flag, in argv or LLAMA_ARG_* variables; router mode, whose
    per-model flags are not in argv; or argv not given). Builds without a trace level never get -lv 4: there
    4 meant "debug", which logs request bodies."""
    binary = server_binary or paths().bin_dir / "llama-server"
    args = list(BASE_LOG_ARGS)
    if server_args is not None and not _may_speculate(server_args):
        return args
    if build_features.features(binary).trace_verbosity:
        args += ["--log-verbosity", "4"]
    return args


def _may_speculate(server_args: Sequence[str]) -> bool:
    """Flag names only (a model's file name may say anything); "-" and "_" alike for LLAMA_ARG_* names."""
    names = [a.lower() for a in server_args if a.startswith("-")] + [k.lower() for k in llama_arg_env()]
    names = [n.replace("_", "-") for n in names]
    words = ("draft", "spec", "models-dir", "models-preset")
    return "-md" in names or any(word in name for name in names for word in words)


# ---- ingestion -------------------------------------------------------------------------------------------


def ingest(
    *, live_log: Path | None, logs_dir: Path | None = None, memory_of: measuring.MemoryProbe | None = None
) -> int:
    """Read what is new in every server log into model_usage (and speeds into model_measurements); returns the
    number of rows added. ``live_log`` is the log the running server still writes (serving's state.live_log()):
    never pruned. Passed in, as accounting sits below serving; no default, so no caller forgets it. ``memory_of``
    (serving's health.model_memory) adds the served model's process memory to its measurements."""
    logs_dir = logs_dir or paths().logs_dir
    try:
        logs = sorted(logs_dir.glob(LOG_GLOB))
    except OSError:
        return 0
    if not logs:
        return 0
    store.database()
    cursors = {c.file: c for c in store.LogCursor.select()}
    added = 0
    sizes: dict[Path, int] = {}
    for path in logs:
        try:
            sizes[path] = path.stat().st_size
        except FileNotFoundError:
            continue
        cursor = cursors.get(path.name)
        if cursor is not None and cursor.offset == sizes[path]:
            continue  # the common case: nothing new
        added += _ingest_file(path, cursor, memory_of)
    if len(sizes) > KEEP_LOGS:
        _prune(sizes, live_log)
    return added


def _ingest_file(path: Path, cursor: store.LogCursor | None, memory_of: measuring.MemoryProbe | None) -> int:
    added = 0
    with open(path, "rb") as log:
        header = parse_header(log.readline().decode("utf-8", "replace"))
        session = header["session_id"] if header else None
        offset, state = (cursor.offset, json.loads(cursor.state)) if cursor else (0, {})
        size = path.stat().st_size
        if cursor is not None and (cursor.session_id != session or size < offset):
            offset, state = 0, {}  # the file was replaced or cut: read it all again; request keys dedupe
        while True:
            log.seek(offset)
            data = log.read(CHUNK_BYTES)
            end = data.rfind(b"\n")
            if end < 0:
                if len(data) < CHUNK_BYTES:
                    break  # only a line still being written: leave it for next time
                end = len(data) - 1  # a line longer than a chunk is not one of ours: skip it
            chunk = data[: end + 1]
            reader = LogReader(state)
            requests = [
                r for line in chunk.decode("utf-8", "replace").split("\n")[:-1] if (r := reader.feed(line)) is not None
            ]
            targets = measuring.prepare(requests, memory_of)  # outside the transaction: reads files, processes
            end_offset = offset + len(chunk)
            result = store.write(_commit, path.name, session, offset, end_offset, reader.state(), requests, targets)
            if result is None:
                # Another process moved this cursor meanwhile: go on from where it got to.
                moved = store.LogCursor.get_or_none(store.LogCursor.file == path.name)
                offset, state = (moved.offset, json.loads(moved.state)) if moved else (0, {})
                continue
            added += result
            offset, state = offset + len(chunk), reader.state()
    return added


def _commit(
    file: str, session: str | None, expected: int, offset: int, state: dict, requests: list[Request], targets: dict
) -> int | None:
    """Rows, inventory and cursor in one transaction. None if the cursor is no longer at `expected`."""
    current = store.LogCursor.get_or_none(store.LogCursor.file == file)
    if (current.offset if current else 0) != expected:
        return None
    added = 0
    groups: dict[tuple[str, str], list[Request]] = {}
    for request in requests:
        groups.setdefault((request.model, request.model_path), []).append(request)
    for (model, model_path), group in groups.items():
        inserted = 0
        for batch in peewee.chunked(group, 500):
            store.ModelUsage.insert_many([_row(r) for r in batch]).on_conflict_ignore().execute()
            inserted += store.database().execute_sql("SELECT changes()").fetchone()[0]
        if inserted:
            _touch_inventory(model, model_path, inserted, max(r.finished for r in group))
            measuring.record(targets, group, inserted)
        added += inserted
    (
        store.LogCursor.insert(
            file=file, session_id=session, offset=offset, state=json.dumps(state), updated=clock.now()
        )
        .on_conflict(
            conflict_target=[store.LogCursor.file],
            update={
                store.LogCursor.session_id: session,
                store.LogCursor.offset: offset,
                store.LogCursor.state: json.dumps(state),
                store.LogCursor.updated: clock.now(),
            },
        )
        .execute()
    )
    return added


def _row(r: Request) -> dict:
    return {
        "model": r.model,
        "timestamp": r.finished,
        "tokens_in": r.tokens_in,
        "tokens_out": r.tokens_out,
        "duration_ms": r.duration_ms,
        "session_id": r.session_id,
        "request_key": r.key,
        "tok_per_sec": r.tok_per_sec,
        "cache_tokens": r.cache_tokens,
        "status": r.status,
    }


def _touch_inventory(model: str, model_path: str, count: int, latest: datetime) -> None:
    """last_used and the request count follow the rows. A model the inventory lacks (a router loads any model
    it offers when a request names it) gets its row, if its file is still there; otherwise it just has rows."""
    inv = store.ModelInventory
    stamp = store.format_timestamp(latest)
    match = inv.model == model
    if model_path:
        match |= inv.path == model_path
    updated = (
        inv.update(
            total_requests=peewee.fn.COALESCE(inv.total_requests, 0) + count,
            last_used=peewee.Case(None, [((inv.last_used.is_null()) | (inv.last_used < stamp), stamp)], inv.last_used),
        )
        .where(match)
        .execute()
    )
    if updated or not model_path:
        return
    from ..models import inventory, library  # here: only needed for a model met for the first time

    found = library.model_on_disk(model, Path(model_path))
    if found is not None:
        (
            inv.insert(**inventory.inventory_fields(found), downloaded=None, last_used=stamp, total_requests=count)
            .on_conflict_ignore()
            .execute()
        )


def _prune(sizes: dict[Path, int], live: Path | None) -> None:
    """Delete fully read logs beyond the newest few, never the live server's nor any touched lately."""
    cursors = {c.file: c.offset for c in store.LogCursor.select(store.LogCursor.file, store.LogCursor.offset)}
    cutoff = (clock.now() - KEEP_RECENT).timestamp()
    done = []
    for path, size in sizes.items():
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            continue
        if cursors.get(path.name) == size and path != live and mtime < cutoff:
            done.append((mtime, path))
    done.sort()
    excess = len(sizes) - KEEP_LOGS
    removed = []
    for _, path in done[: max(0, excess)]:
        path.unlink(missing_ok=True)
        removed.append(path.name)
    if removed:
        store.write(store.LogCursor.delete().where(store.LogCursor.file.in_(removed)).execute)


# ---- reports ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSummary:
    model: str
    requests: int
    incomplete: int  # cancelled by the client or failed; their tokens are still counted
    tokens_in: int
    tokens_out: int
    cached_tokens: int
    mean_tok_per_sec: float | None  # generated tokens over generation time, all requests together
    total_ms: int
    last_used: datetime | None
    cloud_cost_usd: dict[str, float] = field(default_factory=dict)  # tier -> what these tokens would cost


@dataclass(frozen=True)
class UsageReport:
    since: datetime | None
    model: str | None
    models: list[ModelSummary]
    total: ModelSummary
    prices_as_of: str
    price_models: dict[str, str]  # tier -> the cloud model priced


_PERIOD = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([mhdw])\s*$", re.IGNORECASE)


def parse_period(text: str) -> timedelta:
    """'30m', '24h', '7d', '2w'."""
    found = _PERIOD.match(text or "")
    if found is None:
        raise ConfigError(f"Not a period: {text!r}", hint="Use a number and a unit: 30m, 24h, 7d or 2w.")
    unit = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[found.group(2).lower()]
    return timedelta(**{unit: float(found.group(1))})


def is_period(text: str) -> bool:
    return _PERIOD.match(text or "") is not None


def parse_since(text: str) -> timedelta:
    """A period ('7d'), or how long ago a moment was: an ISO date (from its midnight) or date and time, in local
    time unless it names its offset ('2026-11-01', '2026-11-01T09:30', '2026-11-01 09:30:00Z')."""
    try:
        return parse_period(text)
    except ConfigError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"Not a period or a date: {text!r}", hint="Use 30m, 24h, 7d, 2w, or a date such as 2026-11-01."
        ) from None
    return clock.now() - (moment if moment.tzinfo else moment.astimezone())


def report(
    *, live_log: Path | None, since: timedelta | None = None, model: str | None = None, ingest_first: bool = True
) -> UsageReport:
    """Per-model totals of model_usage, newest activity first, with what the same tokens cost in the cloud."""
    if ingest_first:
        ingest(live_log=live_log)
    db = store.database()
    start, scope, params = _scope(since, model)
    columns = (
        "COUNT(*), SUM(status != 'ok'), SUM(COALESCE(tokens_in, 0)), SUM(COALESCE(tokens_out, 0)), "
        "SUM(COALESCE(cache_tokens, 0)), SUM(COALESCE(duration_ms, 0)), "
        "SUM(CASE WHEN tok_per_sec > 0 THEN tokens_out END), "
        "SUM(CASE WHEN tok_per_sec > 0 THEN tokens_out / tok_per_sec END), MAX(timestamp)"
    )
    rows = db.execute_sql(f"SELECT model, {columns}{scope} GROUP BY model ORDER BY MAX(timestamp) DESC", params)
    models = [_summary(*row) for row in rows.fetchall()]
    total = _summary("all", *db.execute_sql(f"SELECT {columns}{scope}", params).fetchone())
    return UsageReport(
        since=start,
        model=model,
        models=models,
        total=total,
        prices_as_of=prices.AS_OF.isoformat(),
        price_models={p.tier: p.model for p in prices.PRICES},
    )


@dataclass(frozen=True)
class DailyUsage:
    day: date  # UTC
    model: str
    requests: int
    tokens_in: int
    tokens_out: int


def daily(
    *, live_log: Path | None, since: timedelta | None = None, model: str | None = None, ingest_first: bool = True
) -> list[DailyUsage]:
    """Totals per UTC day and model, oldest first (the tray's chart)."""
    if ingest_first:
        ingest(live_log=live_log)
    db = store.database()
    _, scope, params = _scope(since, model)
    rows = db.execute_sql(
        "SELECT substr(timestamp, 1, 10) AS day, model, COUNT(*), "
        f"SUM(COALESCE(tokens_in, 0)), SUM(COALESCE(tokens_out, 0)){scope} "
        "GROUP BY day, model ORDER BY day, model",
        params,
    )
    result = []
    for day, name, requests, tokens_in, tokens_out in rows.fetchall():
        try:
            result.append(
                DailyUsage(
                    day=date.fromisoformat(day),
                    model=name,
                    requests=requests,
                    tokens_in=tokens_in or 0,
                    tokens_out=tokens_out or 0,
                )
            )
        except (TypeError, ValueError):
            continue  # an adopted row whose timestamp is not a date
    return result


def _scope(since: timedelta | None, model: str | None) -> tuple[datetime | None, str, list]:
    """The FROM/WHERE part shared by the reports, its parameters, and the start of the period."""
    start = clock.now() - since if since is not None else None
    where, params = [], []
    if start is not None:
        where.append("timestamp >= ?")
        params.append(store.format_timestamp(start))
    if model:
        where.append("model = ?")
        params.append(model)
    return start, " FROM model_usage" + (" WHERE " + " AND ".join(where) if where else ""), params


def _summary(
    model, requests, incomplete, tokens_in, tokens_out, cached, total_ms, timed_tokens, gen_seconds, last_used
) -> ModelSummary:
    speed = round(timed_tokens / gen_seconds, 1) if timed_tokens and gen_seconds else None
    if isinstance(last_used, str):
        last_used = store.parse_timestamp(last_used)
    return ModelSummary(
        model=model,
        requests=int(requests or 0),
        incomplete=int(incomplete or 0),
        tokens_in=int(tokens_in or 0),
        tokens_out=int(tokens_out or 0),
        cached_tokens=int(cached or 0),
        mean_tok_per_sec=speed,
        total_ms=int(total_ms or 0),
        last_used=last_used,
        cloud_cost_usd=prices.cloud_costs(tokens_in=int(tokens_in or 0), tokens_out=int(tokens_out or 0)),
    )
