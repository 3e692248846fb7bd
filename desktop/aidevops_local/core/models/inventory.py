"""A model's row in the inventory (model_inventory): its columns, and the row a model served from elsewhere
gets so that its usage counts and cleanup sees it. Apart from library, which finds models on disk and
reads the inventory without writing it."""

from __future__ import annotations

from pathlib import Path

from ..database import store
from ..system.errors import LocalModelsError
from . import library


def remember(model: library.LocalModel) -> library.LocalModel:
    """A model about to be served that the inventory lacks gets a row (as legacy or external), so that its
    usage counts and `cleanup` sees it (and, not being ours, keeps it unless it is named). Called once the
    serve's checks passed: a file that is refused is never recorded. A row of that name whose file cannot be
    found (a relative path an older version stored, or a file since moved) is pointed at this file, keeping its
    history."""
    if model.source == "pulled":
        return model
    fields = inventory_fields(model)

    def record() -> None:
        inv = store.ModelInventory
        row = inv.get_or_none(inv.model == model.name)
        if row is None:
            inv.insert(**fields, downloaded=None).on_conflict_ignore().execute()
        elif (
            row.source != "pulled"
            and (not row.path or Path(row.path).name == model.path.name)
            and not _found(row.file_paths())
        ):
            inv.update(**fields).where(inv.model == model.name).execute()

    try:
        store.database()
        store.write(record)
    except LocalModelsError:
        pass  # a database that cannot be written must not stop a model from being served
    return model


def inventory_fields(model: library.LocalModel) -> dict:
    """A model's inventory columns, with absolute paths."""
    return {
        "model": model.name,
        "path": str(library.absolute(model.path)),
        "size_bytes": model.size_bytes,
        "repo": model.repo,
        "quant": model.quant or None,
        "files": [str(library.absolute(f)) for f in model.files],
        "source": model.source,
    }


def _found(files: list[Path]) -> bool:
    return bool(files) and all(f.is_absolute() and f.exists() for f in files)
