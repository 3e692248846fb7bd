"""The names a served model answers to besides its own: its file's stem and, for a catalog model, the
catalog's short name (``qwen2.5-coder-7b`` for "Qwen2.5 Coder 7B Instruct"), the kind of name the framework's
docs and routing tables send.

A name must mean one model: a model's own name is never another's alias, and an alias two models could
claim goes to one of them by a fixed preference (the catalog's own file, then a pulled model, then the
first by name), with a note saying so. Names that llama-server's preset file or its comma-separated
``--alias`` list could not carry unchanged are left out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..system.errors import LocalModelsError
from .library import LocalModel, model_name

_UNSAFE = set("[]\r\n;#=,\"'")  # INI section and value characters, and --alias's list separator
_QUANT_TAIL = re.compile(r"[-_.](?:i?q\d\w*|f16|bf16|f32)$", re.IGNORECASE)


@dataclass(frozen=True)
class ModelNames:
    aliases: dict[str, list[str]] = field(default_factory=dict)  # a model's name -> its other names
    notes: list[str] = field(default_factory=list)  # one line per name given to fewer models than claimed it

    def owner_of(self) -> dict[str, str]:
        """alias -> the model's own name."""
        return {alias: name for name, aliases in self.aliases.items() for alias in aliases}


def short_name(catalog_name: str) -> str:
    """The catalog's display name as the framework writes it: lower case, hyphens, no "Instruct"/"it"."""
    words = catalog_name.lower().split()
    while words and words[-1] in ("instruct", "it"):
        words.pop()
    return "-".join(words)


def assign(models: list[LocalModel]) -> ModelNames:
    """Each model's aliases, unique across ``models`` (the ones a server offers, by their own names)."""
    own = {m.name for m in models}
    claims: dict[str, list[tuple[tuple, str]]] = {}
    catalog = _catalog_short_names()
    for model in models:
        for alias, preference in _candidates(model, catalog):
            if alias not in own and _safe(alias):
                claims.setdefault(alias, []).append((preference, model.name))
    aliases: dict[str, list[str]] = {m.name: [] for m in models}
    notes = []
    for alias, claimants in sorted(claims.items()):
        claimants.sort()
        aliases[claimants[0][1]].append(alias)
        if len(claimants) > 1:
            others = ", ".join(name for _, name in claimants[1:])
            notes.append(f"{alias!r} names several models; it goes to {claimants[0][1]} (not {others}).")
    return ModelNames(aliases={k: v for k, v in aliases.items() if v}, notes=notes)


def _candidates(model: LocalModel, catalog: dict[str, tuple[str, str]]) -> list[tuple[str, tuple]]:
    """(alias, preference) pairs; a lower preference wins a shared alias."""
    stem = model_name(model.path.name)
    found = [(stem, (0, model.source != "pulled", model.name))]
    for catalog_file, (short, catalog_repo) in catalog.items():
        match = catalog_match(model, catalog_file, catalog_repo)
        if match is not None:
            found.append((short, (match, model.source != "pulled", model.name)))
    return found


def catalog_match(model: LocalModel, catalog_file: str, catalog_repo: str) -> int | None:
    """How a local model is a catalog entry: 0 its very file, 1 its repo or another quant of its file, None
    not at all. Also what display_names uses to give a file the catalog's name."""
    file_name = model.path.name.lower()
    if file_name == catalog_file.lower():
        return 0
    repo = (model.repo or "").lower()
    if (repo and repo == catalog_repo.lower()) or _same_model(file_name, catalog_file.lower()):
        return 1
    return None


def _same_model(file_name: str, catalog_file: str) -> bool:
    """Another quantisation of the catalog's file (Qwen2.5-Coder-7B-Instruct-Q8_0 for ...-Q4_K_M)."""
    mine, theirs = _QUANT_TAIL.sub("", file_name[:-5]), _QUANT_TAIL.sub("", catalog_file[:-5])
    return file_name.endswith(".gguf") and bool(mine) and mine == theirs


def _catalog_short_names() -> dict[str, tuple[str, str]]:
    """catalog file name (lower case) -> (short name, repo in lower case)."""
    from .recommend import load_catalog  # imported here: its fit tables are needed only when a server starts

    try:
        _, entries = load_catalog()
    except LocalModelsError:
        return {}  # a broken catalog costs the short names, not the start
    return {e.file.lower(): (short_name(e.name), e.repo.lower()) for e in entries}


def _safe(alias: str) -> bool:
    return bool(alias) and alias == alias.strip() and not _UNSAFE & set(alias) and "\0" not in alias


def with_own_names(names: ModelNames, served: list[str]) -> dict[str, list[str]]:
    """Every served model's names, its own first: what `status --json` lists."""
    return {name: [name, *names.aliases.get(name, [])] for name in served}
