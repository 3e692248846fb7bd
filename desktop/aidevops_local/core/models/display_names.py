"""The name a person recognises for a local model, and its quant as a separate detail.

A catalog model is called what the catalog calls it ("Llama 3.2 3B Instruct"); any other file by its GGUF's
``general.name``, unless the converter composed that from the repo's fine-tune tag ("Smollm2 135M 8k Lc100K
Mix1 Ep2"), where the file's own stem says more; else the stem, cleaned (quant removed, dashes to spaces).
The quant is never part of the name: windows and menus show it once, beside the size.

Names are cached per file (path, size, modification time), so the tray's refresh pays for a header once.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from ..system.errors import LocalModelsError
from ..system.units import human_bytes
from . import library
from .gguf_meta import cached_header
from .library import QUANT_RE, LocalModel, model_name
from .model_names import catalog_match

_SEPARATORS = re.compile(r"[-_\s]+")
_AUTHOR_PREFIX = re.compile(r"^([A-Za-z0-9.]+)_(?=\1)", re.IGNORECASE)  # bartowski's "Qwen_Qwen3-8B"
_cache: dict[tuple[str, int, int], str] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class DisplayName:
    name: str  # "Llama 3.2 3B Instruct"
    quant: str = ""  # "Q4_K_M", shown once, as a detail
    size_bytes: int = 0

    @property
    def detail(self) -> str:
        """ "Q4_K_M · 2.0 GB": what goes beside or under the name."""
        return " · ".join(
            part for part in (self.quant, human_bytes(self.size_bytes) if self.size_bytes else "") if part
        )


def clean_stem(file_name: str) -> str:
    """ "Llama 3.2 3B Instruct" from "Llama-3.2-3B-Instruct-Q4_K_M.gguf" (or a split set's first part)."""
    stem = _AUTHOR_PREFIX.sub("", model_name(Path(file_name).name))
    found = list(QUANT_RE.finditer(stem))
    if found:
        last = found[-1]
        stem = stem[: last.start()] + stem[last.end() :]
    words = _SEPARATORS.sub(" ", stem.replace(".gguf", "")).strip(" .")
    return words or stem or file_name


def display_name(model: LocalModel) -> DisplayName:
    """The model's display name, its quant and size (cached per file)."""
    return DisplayName(_name(model), model.quant, model.size_bytes)


def for_path(path: Path | str, name: str = "") -> DisplayName:
    """The display name of a file known only by its path (a served model in `status`)."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError:
        size = 0
    quant = library.quant_from_name(path.name)
    model = LocalModel(name or model_name(path.name), path, (path,), size, quant, None, "external")
    return DisplayName(_name(model), quant, size)


def display_names(models: list[LocalModel]) -> dict[str, DisplayName]:
    """Each model's display name by its own (tool) name. Two files with the same name and quant (one model
    copied or downloaded twice) say which is which: the tool's name follows in brackets."""
    named = {m.name: display_name(m) for m in models}
    seen: dict[tuple[str, str], int] = {}
    for shown in named.values():
        key = (shown.name, shown.quant)
        seen[key] = seen.get(key, 0) + 1
    return {
        name: shown if seen[(shown.name, shown.quant)] == 1 else replace(shown, name=f"{shown.name} ({name})")
        for name, shown in named.items()
    }


def _name(model: LocalModel) -> str:
    try:
        stat = model.path.stat()
        key = (str(model.path), stat.st_size, stat.st_mtime_ns)
    except OSError:
        return _catalog_name(model) or clean_stem(model.path.name)
    with _lock:
        if key in _cache:
            return _cache[key]
    name = _catalog_name(model) or _gguf_name(model.path) or clean_stem(model.path.name)
    with _lock:
        _cache[key] = name
    return name


def _catalog_name(model: LocalModel) -> str:
    best: tuple[int, str] | None = None
    for catalog_file, catalog_repo, name in _catalog():
        match = catalog_match(model, catalog_file, catalog_repo)
        if match is not None and (best is None or match < best[0]):
            best = (match, name)
    return best[1] if best else ""


@lru_cache(maxsize=1)
def _catalog() -> tuple[tuple[str, str, str], ...]:
    from .recommend import load_catalog  # its fit tables load only when a name is first asked for

    try:
        _, entries = load_catalog()
    except LocalModelsError:
        return ()  # a broken catalog costs the catalog's names, not the listing
    return tuple((e.file, e.repo, e.name) for e in entries)


def _gguf_name(path: Path) -> str:
    try:
        meta = cached_header(path).metadata
    except (LocalModelsError, OSError):
        return ""
    name = meta.get("general.name")
    if not isinstance(name, str) or not name.strip():
        return ""
    name = name.strip()
    finetune, basename = meta.get("general.finetune"), meta.get("general.basename")
    if isinstance(finetune, str) and finetune and _composed(name, basename, meta.get("general.size_label"), finetune):
        return ""  # the converter's own words for a repo tag: the file's stem says more
    size = meta.get("general.size_label")
    if isinstance(size, str) and any(
        c.isdigit() for c in size
    ):  # "Gemma 3 270m" -> "Gemma 3 270M", as the model's card writes it
        name = re.sub(rf"(?<![\w.]){re.escape(size)}(?![\w.])", size, name, flags=re.IGNORECASE)
    found = list(QUANT_RE.finditer(name))
    if found and found[-1].end() >= len(name.rstrip()) - 1:
        name = name[: found[-1].start()].rstrip(" -_.")
    return name if " " in name else _SEPARATORS.sub(" ", name)


def _composed(name: str, *parts) -> bool:
    """The converter's name: the basename, size label and fine-tune joined and title-cased."""
    joined = "-".join(str(p) for p in parts if isinstance(p, str) and p)
    return _SEPARATORS.sub(" ", joined).lower() == _SEPARATORS.sub(" ", name).lower()


def clear_cache() -> None:
    with _lock:
        _cache.clear()
