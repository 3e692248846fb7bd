"""The models on disk: what this tool pulled, what the old shell helper left, and GGUFs other tools already
downloaded (the Hugging Face cache that llama.cpp's -hf uses, llama.cpp's own cache, LM Studio), which can be
served in place, read-only.

Listing is fast: names, sizes and quants come from the inventory and from file names; a GGUF header is read
(and cached) only when a file name does not say its quant. Nothing is hashed here.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..system import config
from ..system.errors import LocalModelsError, ModelNotFound
from .gguf_meta import GGUF_MAGIC, SPLIT_RE, cached_header, split_parts

SOURCES = ("pulled", "legacy", "external")
QUANT_RE = re.compile(
    r"(?<![A-Za-z0-9])(UD-)?(IQ[1-4]_(?:XXS|XS|S|M|NL)|Q[2-8]_K(?:_(?:XL|S|M|L))?|Q[4-8]_[01]|F16|BF16|F32|"
    r"MXFP4(?:_MOE)?|TQ[12]_0)(?![A-Za-z0-9])",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class LocalModel:
    name: str
    path: Path  # the file llama-server loads: the first part of a split set
    files: tuple[Path, ...]
    size_bytes: int
    quant: str
    repo: str | None
    source: str  # "pulled" | "legacy" | "external"
    where: str = ""  # "models", "HF cache", "llama.cpp cache", "LM Studio", "old helper", "path"
    last_used: str | None = None  # 'YYYY-MM-DD HH:MM:SS' UTC
    downloaded: str | None = None
    total_requests: int = 0
    sha256: str | None = None

    @property
    def read_only(self) -> bool:
        """Another tool's file: served in place, never deleted without the user's say-so."""
        return self.source != "pulled"


def quant_from_name(name: str) -> str:
    """ "Q4_K_M" from "Qwen3-8B-Q4_K_M.gguf" ("" when the name does not say)."""
    found = QUANT_RE.findall(name)
    if not found:
        return ""
    prefix, quant = found[-1]
    return (prefix + quant).upper()


def model_name(filename: str) -> str:
    """A model's name from its (first) file: the stem, without the split suffix."""
    base = Path(filename).name
    match = SPLIT_RE.match(base)
    stem = match["stem"] if match else base
    return stem[:-5] if stem.lower().endswith(".gguf") else stem


def _is_model_file(path: Path) -> bool:
    """A GGUF llama-server can load as a model: not a vision projector, not a later part of a split set."""
    name = path.name
    if not name.lower().endswith(".gguf") or name.lower().startswith("mmproj"):
        return False
    match = SPLIT_RE.match(name)
    return not match or int(match["no"]) == 1


def _quant(path: Path) -> str:
    quant = quant_from_name(path.name) or quant_from_name(path.parent.name)
    if quant:
        return quant
    try:
        return cached_header(path).quant
    except (LocalModelsError, OSError):
        return ""


def _model_at(path: Path, *, source: str, where: str, repo: str | None = None, name: str | None = None) -> LocalModel:
    parts = [p for p in split_parts(path) if p.exists()] or [path]
    size = 0
    for part in parts:
        try:
            size += part.stat().st_size  # follows the HF cache's symlinks to the blobs
        except OSError:
            pass
    return LocalModel(
        name=name or model_name(path.name),
        path=path,
        files=tuple(parts),
        size_bytes=size,
        quant=_quant(path),
        repo=repo,
        source=source,
        where=where,
    )


# ---- where models live --------------------------------------------------------------------------------------


def _ggufs(folder: Path, max_depth: int) -> list[Path]:
    """Model files under ``folder`` at most ``max_depth`` levels down, skipping our partial downloads."""
    found: list[Path] = []
    if not folder.is_dir():
        return found

    def walk(current: Path, depth: int) -> None:
        try:
            entries = sorted(current.iterdir())
        except OSError:
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                if depth < max_depth:
                    walk(entry, depth + 1)
            elif _is_model_file(entry):
                found.append(entry)

    walk(folder, 0)
    return found


def _hf_cache_models() -> list[LocalModel]:
    """models--org--repo/snapshots/<commit>/**.gguf in the Hugging Face cache; newest snapshot first."""
    cache = config.hf_hub_cache()
    models, seen = [], set()
    try:
        repos = sorted(cache.glob("models--*"))
    except OSError:
        return []
    for repo_dir in repos:
        repo = repo_dir.name[len("models--") :].replace("--", "/", 1)
        snapshots = sorted((repo_dir / "snapshots").glob("*"), key=_mtime, reverse=True)
        for snap in snapshots:
            for path in _ggufs(snap, 3):
                key = (repo, path.relative_to(snap).as_posix())
                if key not in seen:
                    seen.add(key)
                    models.append(_model_at(path, source="external", where="HF cache", repo=repo))
    return models


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _llama_cache_models() -> list[LocalModel]:
    """llama.cpp's own cache names files <org>_<repo>_<file>.gguf (newer builds use the HF cache layout)."""
    return [_model_at(p, source="external", where="llama.cpp cache") for p in _ggufs(config.llama_cache_dir(), 0)]


def _lmstudio_models() -> list[LocalModel]:
    models = []
    for root in config.lmstudio_model_dirs():
        for path in _ggufs(root, 3):
            rel = path.relative_to(root).parts
            repo = f"{rel[0]}/{rel[1]}" if len(rel) >= 3 else None
            models.append(_model_at(path, source="external", where="LM Studio", repo=repo))
    return models


def _inventory() -> list:
    from ..database import store

    store.database()
    return list(store.ModelInventory.select())


def list_models(*, include_external: bool = True) -> list[LocalModel]:
    """Every model on disk: the inventory (pulled, legacy, recorded external), GGUFs dropped into models/,
    the old helper's folder, and, read-only, other tools' downloads. One entry per file set; names unique."""
    models: list[LocalModel] = []
    seen_paths: set[str] = set()
    names: set[str] = set()

    def add(model: LocalModel) -> None:
        key = str(model.path.resolve()) if model.path.exists() else str(model.path)
        if key in seen_paths:
            return
        seen_paths.add(key)
        name = model.name
        if name in names:  # the same file name from two places: the later one says where it is
            label = {
                "HF cache": "hf",
                "llama.cpp cache": "llamacpp",
                "LM Studio": "lmstudio",
                "old helper": "legacy",
            }.get(model.where, model.source)
            name = f"{model.name}@{label}"
            suffix = 2
            while name in names:
                name, suffix = f"{model.name}@{label}{suffix}", suffix + 1
        names.add(name)
        models.append(model if name == model.name else _renamed(model, name))

    for row in _inventory():
        files = [Path(f) for f in (row.files or [row.path]) if f]
        if not files or not all(f.is_absolute() and f.is_file() for f in files) or not is_gguf(files[0]):
            continue  # gone, a relative path an older version stored (where to is unknown), or not a model
        add(
            LocalModel(
                name=row.model,
                path=Path(row.path),
                files=tuple(files),
                size_bytes=row.size_bytes or 0,
                quant=row.quant or _quant(Path(row.path)),
                repo=row.repo,
                source=row.source or "external",
                where=_where(Path(row.path)),
                last_used=_text(row.last_used),
                downloaded=_text(row.downloaded),
                total_requests=row.total_requests or 0,
                sha256=row.sha256,
            )
        )
    p = config.paths()
    for path in _ggufs(p.models_dir, 2):
        add(_model_at(path, source="external", where="models"))
    for path in _ggufs(p.legacy_dir / "models", 2):
        add(_model_at(path, source="legacy", where="old helper"))
    if include_external:
        for model in _hf_cache_models() + _llama_cache_models() + _lmstudio_models():
            add(model)
    return models


def _renamed(model: LocalModel, name: str) -> LocalModel:
    from dataclasses import replace

    return replace(model, name=name)


def _text(value) -> str | None:
    if value is None:
        return None
    from ..database import store

    return value if isinstance(value, str) else store.format_timestamp(value)


def location(path: Path) -> str:
    """Where a model file lies, in the listing's words: "models", "old helper", "HF cache", "llama.cpp cache",
    "LM Studio" or "path" (anywhere else)."""
    return _where(path)


def _where(path: Path) -> str:
    p = config.paths()
    for folder, label in (
        (p.models_dir, "models"),
        (p.legacy_dir / "models", "old helper"),
        (config.hf_hub_cache(), "HF cache"),
        (config.llama_cache_dir(), "llama.cpp cache"),
    ):
        if _inside(path, folder):
            return label
    if any(_inside(path, d) for d in config.lmstudio_model_dirs()):
        return "LM Studio"
    return "path"


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except (ValueError, OSError):
        return False


def is_gguf(path: Path) -> bool:
    """A model file by its name or its first bytes: a row pointing at anything else (a database, a folder)
    is not a model."""
    if path.name.lower().endswith(".gguf"):
        return True
    try:
        with open(path, "rb") as f:
            return f.read(4) == GGUF_MAGIC
    except OSError:
        return False


def absolute(path: Path) -> Path:
    """The path from the root, without following a link (an HF cache snapshot keeps its file name)."""
    return Path(os.path.abspath(path.expanduser()))


# ---- finding one model ------------------------------------------------------------------------------------


def resolve_model(name_or_path: str | None, *, settings: config.Settings | None = None) -> LocalModel:
    """The model a command means: a file path; a name from `models` (exact, a file name, or a substring that
    matches one model); or, for None, the default_model setting, else the only model, else the most recently
    used (or pulled) one. ModelNotFound, naming close matches, otherwise. Records nothing: `inventory.remember`
    does, once a serve's checks have passed. ``settings``: the caller's, else read here when the default is
    needed."""
    return _resolve(name_or_path, settings)


def _resolve(name_or_path: str | None, settings: config.Settings | None = None) -> LocalModel:
    if name_or_path is None:
        default = (settings or config.load_settings()).default_model
        if default:
            return _resolve(default)
        return _most_recent()
    candidate = Path(name_or_path).expanduser()
    if candidate.suffix.lower() == ".gguf" or "/" in name_or_path or name_or_path.startswith("."):
        if candidate.is_file():
            return model_at_path(candidate)
        if "/" in name_or_path and candidate.suffix.lower() == ".gguf":
            raise ModelNotFound(
                f"Model file not found: {candidate}",
                hint="Check the path, or run `aidevops-local models` to list models.",
            )
    models = list_models()
    exact = [m for m in models if m.name == name_or_path]
    if exact:
        return exact[0]
    by_file = [m for m in models if any(f.name == name_or_path for f in m.files)]
    if len(by_file) == 1:
        return by_file[0]
    needle = name_or_path.lower()
    partial = [m for m in models if needle in m.name.lower()]
    if len(partial) == 1:
        return partial[0]
    if len(partial) > 1:
        raise ModelNotFound(
            f"{name_or_path!r} matches {len(partial)} models: {', '.join(m.name for m in partial[:8])}",
            hint="Use the full name from `aidevops-local models`.",
        )
    raise not_found(name_or_path, models)


def not_found(name: str, models: list[LocalModel]) -> ModelNotFound:
    close = difflib.get_close_matches(name, [m.name for m in models], n=5, cutoff=0.4)
    hint = (
        f"Did you mean: {', '.join(close)}?"
        if close
        else "Run `aidevops-local models` to list models, or `aidevops-local pull REPO` to get one."
    )
    return ModelNotFound(f"No model named {name!r}.", hint=hint)


def model_on_disk(name: str, path: Path) -> LocalModel | None:
    """The model at ``path`` (absolute) under ``name``, as `models` would describe it; None if no model file is
    there. For a model a server loaded that the inventory lacks (a router loads any model it offers)."""
    if not path.is_absolute() or not path.is_file() or not is_gguf(path):
        return None
    for model in list_models():
        if any(f == path for f in model.files):
            if model.source == "pulled":
                return None  # ours has its row already, under its own name
            return _renamed(model, name) if model.name != name else model
    where = _where(path)
    return _model_at(path, source="legacy" if where == "old helper" else "external", where=where, name=name)


def model_at_path(path: Path) -> LocalModel:
    """A file the user named: the inventory's entry if we know it, else an external model served in place."""
    path = absolute(path)  # a relative path means nothing from another folder
    resolved = path.resolve()
    for model in list_models(include_external=False):
        if any(f.resolve() == resolved for f in model.files):
            return model
    first = split_parts(path)[0]
    return _model_at(first, source="external", where=_where(first))


def _most_recent() -> LocalModel:
    models = list_models()
    if not models:
        raise ModelNotFound(
            "There are no models on this machine yet.",
            hint="Run `aidevops-local recommend`, then `aidevops-local pull REPO:QUANT`.",
        )
    if len(models) == 1:
        return models[0]
    used = [m for m in models if m.last_used]
    if used:
        return max(used, key=lambda m: m.last_used)
    return max(models, key=lambda m: (m.downloaded or "", _mtime(m.path)))


def partial_downloads() -> list[Path]:
    """Unfinished downloads (resumed by pulling again)."""
    folder = config.paths().partial_dir
    return sorted(folder.glob("*.part")) if folder.is_dir() else []
