"""Removing one model: its files, its inventory row, and what the user must say yes to first.

It sits in maintenance, above serving, because a model being served is never removed: the check asks the
state of the running server. Cleanup removes stale models through it.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..database import store
from ..models import library
from ..models.library import LocalModel
from ..serving import health
from ..serving import state as server_state
from ..system import config
from ..system.errors import ModelNotFound, Refused


def removal_warning(model: LocalModel) -> str | None:
    """Why removing ``model`` needs the user's say-so, naming what a link points to; None when it does not.
    A file this tool did not download needs it; so does a link to a file outside the models folder, of which
    only the link is ever removed."""
    models_dir = config.paths().models_dir.resolve()
    for file in model.files:
        if file.is_symlink() and _hf_blob(file) is None:
            target = file.resolve()
            if models_dir not in target.parents:
                return (
                    f"{model.name} is a link to {target}, outside the models folder; only the link "
                    f"{file} would be removed."
                )
        elif not file.is_symlink() and model.source == "pulled" and models_dir not in file.resolve().parents:
            return f"{model.name} lies outside the models folder ({file.resolve()})."
    if model.read_only:
        return f"{model.name} was not downloaded by aidevops-local ({model.where}: {model.path})."
    return None


def _hf_blob(link: Path) -> Path | None:
    """The blob a Hugging Face cache snapshot entry points to, inside the same repo folder; None for any other
    link. That blob is the entry's own storage: it goes with it."""
    cache = config.hf_hub_cache().resolve()
    try:
        parts = (link.parent.resolve() / link.name).relative_to(cache).parts  # the entry itself, not followed
        if len(parts) < 3 or not parts[0].startswith("models--") or parts[1] != "snapshots":
            return None
        blob = link.resolve()
        blob.relative_to(cache / parts[0] / "blobs")
        snapshots = cache / parts[0] / "snapshots"
        entry = snapshots.joinpath(*parts[2:])
        if any(other.is_symlink() and other != entry and other.resolve() == blob for other in snapshots.rglob("*")):
            return None  # another revision links the same blob: it stays for that one
    except (ValueError, OSError):
        return None
    return blob


def model_to_remove(name_or_path: str) -> LocalModel:
    """The model a command that deletes means: exactly a name `models` lists, or a path to a model file (any
    part of a split set names the whole set). Never a substring or a default, as `resolve_model` allows for
    serve: a typo must not pick another model to delete. ModelNotFound (naming close matches) for an unknown
    name; Refused for a path to something that is not a model file (a folder, a document)."""
    if not name_or_path.strip():
        raise ModelNotFound("No model named: the name is empty.", hint="Use a name from `aidevops-local models`.")
    models = library.list_models()
    for model in models:
        if model.name == name_or_path:
            return model
    candidate = Path(name_or_path).expanduser()
    if candidate.suffix.lower() == ".gguf" or os.sep in name_or_path or name_or_path.startswith("."):
        if candidate.is_file() and library.is_gguf(candidate):
            return library.model_at_path(candidate)
        if candidate.exists():
            kind = "a folder, not a model file" if candidate.is_dir() else "not a model file (GGUF)"
            raise Refused(
                f"{candidate} is {kind}; nothing was removed.",
                hint="Name a model as `aidevops-local models` lists it, or the path of its .gguf file.",
            )
        raise ModelNotFound(
            f"Model file not found: {candidate}",
            hint="Check the path, or run `aidevops-local models` to list models.",
        )
    raise library.not_found(name_or_path, models)


def remove_model(model: LocalModel, *, confirmed: bool = False) -> int:
    """Delete a model's files and its inventory row; returns bytes freed. A file this tool did not download
    (legacy, another tool's cache), or a link out of the models folder, is removed only when ``confirmed``;
    of a link only the link goes (but an HF cache snapshot entry takes its blob with it); the model being
    served is never removed; nor is anything that is not a model file, whoever built ``model``."""
    for file in model.files:
        if not library.is_gguf(file):
            raise Refused(f"{file} is not a model file (GGUF); nothing was removed.")
    warning = removal_warning(model)
    if warning and not confirmed:
        hint = (
            "Pass --yes to remove the link (what it points to is kept)."
            if "is a link to" in warning
            else "Pass --yes to delete it anyway, or delete it with the tool that made it."
        )
        raise Refused(warning, hint=hint)
    if server_state.serves(health.served_now(), model.files, model.name):
        raise Refused(
            f"{model.name} is being served now; it was not removed.",
            hint="Stop the server first (`aidevops-local stop`).",
        )
    store.database()
    freed = 0
    for file in model.files:
        targets = [file]  # unlink() of a link removes the link, never what it points to
        if file.is_symlink() and (blob := _hf_blob(file)) is not None:
            targets.append(blob)
        for target in targets:
            try:
                size = target.stat().st_size if not target.is_symlink() else 0
                target.unlink()
                freed += size
            except FileNotFoundError:
                continue
    store.write(lambda: store.ModelInventory.delete().where(store.ModelInventory.model == model.name).execute())
    models_dir = config.paths().models_dir.resolve()
    folder = model.path.parent.resolve()
    if folder != models_dir and models_dir in folder.parents:
        try:
            folder.rmdir()  # a split set's own folder, when it is empty now
        except OSError:
            pass
    return freed
