"""The router's --models-preset file: a section per local model, each with its own plan as flags (their long
names as keys), the chosen model marked to load at start, and the other names each model answers to."""

from __future__ import annotations

from collections.abc import Callable

from ..system.errors import LocalModelsError


def named_sections(local, chosen_args: list[str], plan_args: Callable, *, aliases_in_preset: bool):
    """(sections, names): every local model a router can offer, each planned by ``plan_args(model)``; the
    chosen one loads at start. Each section lists the other names its model answers to (its file's stem, the
    catalog's short name) where the build takes a list of aliases; elsewhere the front resolves them."""
    from ..models import library, model_names

    sections = {local.name: chosen_args + ["--load-on-startup", "true"]}
    listed = library.list_models()
    for other in listed:
        if other.name not in sections and ini_safe(other.name, str(other.path)):
            try:
                sections[other.name] = plan_args(other)
            except (LocalModelsError, OSError, ValueError):
                continue  # unfinished, changed or unreadable: not offered; serving it by name says why
    offered = [local, *(m for m in listed if m.name in sections and m.name != local.name)]
    names = model_names.assign(offered)
    if aliases_in_preset:
        for name, aliases in names.aliases.items():
            sections[name] = [*sections[name], "--alias", ",".join(aliases)]
    return sections, names


def ini_safe(name: str, path: str) -> bool:
    """A name that can be an INI section and a path that can be a value, read back unchanged (no line breaks,
    no comment characters, no edge spaces)."""
    return (
        bool(name)
        and name == name.strip()
        and not set("[]\r\n;#=") & set(name)
        and path == path.strip()
        and not set("\r\n;#") & set(path)
    )


def preset_ini(sections: dict[str, list[str]]) -> str:
    """llama-server's --models-preset file: a section per model, each flag's long name as a key. No key goes
    before the first section: llama-server would list those lines as a model named "default" that cannot load."""
    lines = ["; Written by aidevops-local at each start (serve); edits are replaced.", ""]
    for name, args in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{flag.lstrip('-')} = {value}" for flag, value in _flag_values(args)]
        lines.append("")
    return "\n".join(lines)


def _flag_values(args: list[str]) -> list[tuple[str, str]]:
    """(flag, value) pairs of a command line; a switch (a flag followed by another flag, or last) is "true",
    which is how a preset turns one on. No value of ours starts with "--" (numbers, paths, names)."""
    pairs, i = [], 0
    while i < len(args):
        if i + 1 < len(args) and not args[i + 1].startswith("--"):
            pairs.append((args[i], args[i + 1]))
            i += 2
        else:
            pairs.append((args[i], "true"))
            i += 1
    return pairs
