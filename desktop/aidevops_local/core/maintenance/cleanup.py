"""Stale models: find them, size them, remove them on request, and nudge when they take too much disk.

A model is stale when its last use (or, never used, its download) is older than the threshold. Removal takes a
model's files (every part of a split set) and its inventory row together. Never removed: the model the server
is serving, and files this tool did not download (source 'legacy' or 'external', or a 'pulled' file outside
the models folder), unless the user names the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ..accounting import usage
from ..database import store
from ..models import library
from ..serving import health, state
from ..system import clock
from ..system.config import load_settings, paths
from ..system.errors import ModelNotFound, Refused

NUDGE_KEY = "last_nudge"
NUDGE_EVERY = timedelta(days=1)
GIB = 1024**3


@dataclass(frozen=True)
class StaleModel:
    model: str
    files: list[str]  # on disk now
    size_bytes: int  # all parts together
    last_active: datetime | None  # last use, else download, else the newest file's mtime
    idle_days: int | None
    source: str
    removable: bool
    reason: str = ""  # why it is kept, when it is


@dataclass(frozen=True)
class CleanupPlan:
    days: int
    models: list[StaleModel]  # stale (or named) models, removable or not

    @property
    def removable(self) -> list[StaleModel]:
        return [m for m in self.models if m.removable]

    @property
    def removable_bytes(self) -> int:
        return sum(m.size_bytes for m in self.removable)


@dataclass(frozen=True)
class CleanupResult:
    removed: list[StaleModel] = field(default_factory=list)
    freed_bytes: int = 0


@dataclass(frozen=True)
class Nudge:
    message: str
    stale_models: int
    stale_bytes: int
    threshold_bytes: int


def find_stale(*, days: int | None = None, names: list[str] | None = None) -> CleanupPlan:
    """Models unused for `days` (default: the stale_days setting), oldest first; or exactly the named models,
    whatever their age (naming one is the user's say-so to remove files we did not download)."""
    days = load_settings().stale_days if days is None else days
    usage.ingest(live_log=state.live_log())  # last_used must include what the server did since the last ingest
    store.database()
    now = clock.now()
    served = health.served_now()
    inv = store.ModelInventory
    if names:
        rows = list(inv.select().where(inv.model.in_(names)))
        missing = sorted(set(names) - {r.model for r in rows})
        if missing:
            raise ModelNotFound(
                f"Not in the inventory: {', '.join(missing)}",
                hint="`aidevops-local cleanup --dry-run` lists the models it knows.",
            )
        models = [_describe(r, now, served, named=True) for r in rows]
        for model in models:
            if not model.removable:
                raise Refused(
                    f"{model.model} is {model.reason}; it will not be removed.",
                    hint="Stop the server first (`aidevops-local stop`).",
                )
        return CleanupPlan(days=days, models=models)
    cutoff = now - timedelta(days=days)
    # A row with no file on disk frees nothing: it stays as history (naming it removes the row).
    models = [
        m
        for m in (_describe(r, now, served, named=False) for r in inv.select())
        if m.files and (m.last_active is None or m.last_active < cutoff)
    ]
    models.sort(key=lambda m: m.last_active or datetime.min.replace(tzinfo=UTC))
    return CleanupPlan(days=days, models=models)


def remove(*, plan: CleanupPlan) -> CleanupResult:
    """Remove each removable model of the plan: its inventory row and its files in one transaction (a file
    that cannot be deleted rolls the row back, so what is left stays listed)."""
    served = health.served_now()
    removed = []
    for model in plan.removable:
        if state.serves(served, model.files, model.model):
            raise Refused(
                f"{model.model} is being served now; it was not removed.",
                hint="Stop the server first (`aidevops-local stop`).",
            )
        store.write(_remove_one, model)
        removed.append(model)
    return CleanupResult(removed=removed, freed_bytes=sum(m.size_bytes for m in removed))


def _remove_one(model: StaleModel) -> None:
    # Deleting a file is idempotent, so a transaction retried after a busy database does no harm.
    store.ModelInventory.delete().where(store.ModelInventory.model == model.model).execute()
    models_dir = paths().models_dir.resolve()
    for name in model.files:
        path = Path(name)
        path.unlink(missing_ok=True)
        _remove_empty_parents(path.parent, models_dir)


def _remove_empty_parents(folder: Path, stop: Path) -> None:
    """Folders a pull made (models/<org>/<repo>/) go when empty; nothing at or above the models folder."""
    folder = folder.resolve()
    while folder != stop and stop in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def nudge() -> Nudge | None:
    """One line when removable stale models take more than the stale_nudge_gb setting, at most once a day
    (shared by the CLI and the tray through the database); None otherwise."""
    settings = load_settings()
    plan = find_stale(days=settings.stale_days)
    threshold = int(settings.stale_nudge_gb * GIB)
    total = plan.removable_bytes
    if total <= threshold:
        return None
    now = clock.now()

    def claim() -> bool:
        last = store.parse_timestamp(store.get_state(NUDGE_KEY))
        # A last nudge in the future was stamped by a clock that ran ahead since put right: it does not
        # count, or the nudge would stay silent for as long as the clock had been ahead.
        if last is not None and timedelta(0) <= now - last < NUDGE_EVERY:
            return False
        store.set_state(NUDGE_KEY, store.format_timestamp(now))
        return True

    if not store.write(claim):
        return None
    count = len(plan.removable)
    message = (
        f"{count} local model{'s' if count != 1 else ''} unused for {settings.stale_days}+ days "
        f"take {total / GIB:.1f} GB: run `aidevops-local cleanup` to review and remove them."
    )
    return Nudge(message=message, stale_models=count, stale_bytes=total, threshold_bytes=threshold)


def _describe(row: store.ModelInventory, now: datetime, served: state.ServerState | None, *, named: bool) -> StaleModel:
    # A relative path (stored by older versions) says nothing about where the file was: it is never read
    # against the current folder, where a file of that name is someone else's.
    paths_ = [p for p in row.file_paths() if p.is_absolute()]
    present = [p for p in paths_ if p.is_file() and library.is_gguf(p)]  # a row naming usage.db is not a model
    size = sum(p.stat().st_size for p in present) if present else 0
    last_active = row.last_used or row.downloaded
    if last_active is None and present:
        last_active = datetime.fromtimestamp(max(p.stat().st_mtime for p in present), UTC)
    idle = (now - last_active).days if last_active else None
    reason = ""
    if state.serves(served, paths_, row.model):
        reason = "being served now"
    elif not named and row.source != "pulled":
        reason = f"not downloaded by aidevops-local ({row.source}); name it to remove it"
    elif not named and not _inside(paths_, paths().models_dir):
        links = [p for p in paths_ if p.is_symlink()]
        reason = (
            f"a link to {links[0].resolve()}, outside the models folder; name it to remove the link "
            "(the file it points to is kept)"
            if links
            else "outside the models folder; name it to remove it"
        )
    return StaleModel(
        model=row.model,
        files=[str(p) for p in present],
        size_bytes=size,
        last_active=last_active,
        idle_days=idle,
        source=row.source,
        removable=not reason,
        reason=reason,
    )


def _inside(files: list[Path], folder: Path) -> bool:
    root = folder.resolve()
    return bool(files) and all(root in p.resolve().parents for p in files)
