"""Terminal output: errors, tables, JSON and progress bars. Progress goes to stderr so stdout stays
clean for --json readers."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from ..core.errors import LocalModelsError
from ..core.progress import Progress as CoreProgress

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)


def error(exc: LocalModelsError) -> None:
    error_text(exc.message, exc.hint, exc.details)


def error_text(message: str, hint: str = "", details: str = "") -> None:
    err.print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
    if details:
        err.print(details, markup=False, highlight=False)
    if hint:
        err.print(f"[yellow]hint:[/] {hint}", markup=True, highlight=False)


def info(message: str) -> None:
    err.print(message, markup=False, highlight=False)


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {message}", markup=True, highlight=False)


def as_json(value) -> None:
    print(json.dumps(_jsonable(value), indent=2, default=str))


def _jsonable(value):
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def table(columns: list[str], rows: list[list], title: str | None = None) -> None:
    t = Table(title=title, show_edge=False, header_style="bold")
    for column in columns:
        t.add_column(column, overflow="fold")
    for row in rows:
        t.add_row(*["" if v is None else str(v) for v in row])
    out.print(t)


def key_values(rows: list[tuple[str, object]]) -> None:
    """A two-column listing of labelled values (status, doctor)."""
    t = Table(show_header=False, show_edge=False, box=None, padding=(0, 2, 0, 0))
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    for label, value in rows:
        t.add_row(label, "-" if value is None else str(value))
    out.print(t)


def human_bytes(n: int | float | None) -> str:
    if n is None:
        return "-"
    n = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    days, rem = divmod(seconds, 86400)
    hours, rem = divmod(rem, 3600)
    minutes, secs = divmod(rem, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


@contextmanager
def progress_bar(quiet: bool = False) -> Iterator:
    """Yields a callback for core's progress reports, drawn as one bar per task on stderr."""
    if quiet or not err.is_terminal:
        yield _line_progress(quiet)
        return
    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
               TransferSpeedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=err, transient=False) as bar:
        tasks: dict[str, int] = {}

        def callback(p: CoreProgress) -> None:
            if p.task not in tasks:
                tasks[p.task] = bar.add_task(p.task, total=p.total)
            bar.update(tasks[p.task], completed=p.done, total=p.total)

        yield callback


def _line_progress(quiet: bool):
    """Without a terminal: one line per task and at most one per 10% step, so logs stay readable."""
    last: dict[str, int] = {}

    def callback(p: CoreProgress) -> None:
        if quiet:
            return
        step = int(10 * p.done / p.total) if p.total else 0
        if last.get(p.task) != step:
            last[p.task] = step
            pct = f" {10 * step}%" if p.total else ""
            info(f"{p.task}{pct}")

    return callback
