"""Terminal output: errors, tables, JSON and progress bars. Progress goes to stderr so stdout stays
clean for --json readers.

Every string shown passes through ``_shown``: it may hold text from the network (a repo or file name, a
server's message), so control characters are dropped (core.untrusted) and, where rich reads markup, its
brackets are escaped (a hint's ``'aidevops-local[gui]'`` is not a style). JSON output keeps the data as is:
json.dumps escapes control characters itself."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
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

from ..core.system.errors import LocalModelsError
from ..core.system.progress import Progress as CoreProgress
from ..core.system.units import human_bytes as human_bytes
from ..core.system.untrusted import printable

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)
quiet_mode = False  # --quiet: no info lines and no progress; results, warnings and errors still show


def error(exc: LocalModelsError) -> None:
    error_text(exc.message, exc.hint, exc.details)


def _shown(value, *, markup: bool = True, multiline: bool = False) -> str:
    """``value`` as text fit for the terminal; escaped for rich where it is printed with markup."""
    text = printable("" if value is None else value, multiline=multiline)
    return escape(text) if markup else text


def error_text(message: str, hint: str = "", details: str = "") -> None:
    err.print(f"[bold red]error:[/] {_shown(message, multiline=True)}", markup=True, highlight=False)
    if details:
        err.print(_shown(details, markup=False, multiline=True), markup=False, highlight=False)
    if hint:
        err.print(f"[yellow]hint:[/] {_shown(hint, multiline=True)}", markup=True, highlight=False)


def info(message: str) -> None:
    if quiet_mode:
        return
    err.print(_shown(message, markup=False, multiline=True), markup=False, highlight=False)


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {_shown(message, multiline=True)}", markup=True, highlight=False)


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
    t = Table(title=_shown(title) if title else None, show_edge=False, header_style="bold")
    for column in columns:
        t.add_column(column, overflow="fold")
    for row in rows:
        t.add_row(*[_shown(v) for v in row])
    out.print(t)


def key_values(rows: list[tuple[str, object]]) -> None:
    """A two-column listing of labelled values (status, doctor)."""
    t = Table(show_header=False, show_edge=False, box=None, padding=(0, 2, 0, 0))
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    for label, value in rows:
        t.add_row(_shown(label), "-" if value is None else _shown(value))
    out.print(t)


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
    quiet = quiet or quiet_mode
    if quiet or not err.is_terminal:
        yield _line_progress(quiet)
        return
    columns = [
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=err, transient=False) as bar:
        tasks: dict[str, int] = {}

        def callback(p: CoreProgress) -> None:
            if p.task not in tasks:
                tasks[p.task] = bar.add_task(_shown(p.task), total=p.total)
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
