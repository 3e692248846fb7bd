"""What the tray says about stale models: the names people know them by, where each came from, the nudge
notification and the question before removal. Functions of core's results (cleanup.find_stale, cleanup.nudge),
run by a worker where they read files (a GGUF header for a name, a path for where it lies), so a test reads
the same words a person does."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core.maintenance import cleanup
from ..core.maintenance.cleanup import CleanupPlan, Nudge, StaleModel
from ..core.models import display_names, library
from ..core.system.units import human_bytes
from .notifications import Action, Notice

LISTED = 4  # models a question names one by one before "and N more"
FOUND_IN = {
    "models": "Put in the models folder by hand",
    "old helper": "Left by the old shell helper",
    "HF cache": "Found in the Hugging Face cache",
    "llama.cpp cache": "Found in llama.cpp's cache",
    "LM Studio": "Found in LM Studio's folder",
    "path": "Found elsewhere on disk",
}


@dataclass(frozen=True)
class StaleRow:
    model: StaleModel
    title: str  # "Llama 3.2 3B Instruct"
    source: str  # "Downloaded by aidevops-local", "Found in LM Studio's folder", ...
    kept_because: str = ""  # why it cannot be ticked, in a sentence; "" when it can


@dataclass(frozen=True)
class Question:
    title: str  # the window's title: short, so a title bar never cuts it
    text: str  # "Delete Llama 3.2 3B Instruct (2.0 GB)?"
    details: str  # what happens, and the models by name when there are several


def titles(models: list[StaleModel]) -> dict[str, str]:
    """Each model's display name by its tool name (core/models/display_names.py: catalog, GGUF, file name)."""
    local = [
        library.LocalModel(
            name=m.model,
            path=Path(m.files[0]),
            files=tuple(Path(f) for f in m.files),
            size_bytes=m.size_bytes,
            quant=library.quant_from_name(Path(m.files[0]).name),
            repo=None,
            source=m.source,
        )
        for m in models
        if m.files
    ]
    shown = {name: d.name for name, d in display_names.display_names(local).items()}
    return {m.model: shown.get(m.model) or display_names.clean_stem(m.model) for m in models}


def source_text(model: StaleModel) -> str:
    if model.source == "pulled":
        return "Downloaded by aidevops-local"
    if model.source == "legacy":
        return FOUND_IN["old helper"]
    return FOUND_IN.get(library.location(Path(model.files[0])) if model.files else "path", FOUND_IN["path"])


def rows(plan: CleanupPlan) -> list[StaleRow]:
    """For a worker: the plan's models as the cleanup window lists them."""
    names = titles(plan.models)
    return [StaleRow(m, names[m.model], source_text(m), "" if m.removable else kept_because(m)) for m in plan.models]


def kept_because(model: StaleModel) -> str:
    if "served" in model.reason:
        return "Being served now: stop the server to remove it."
    if model.source != "pulled":
        return "Another app's file: aidevops-local leaves it where it is."
    return "Outside the models folder: aidevops-local leaves it where it is."


def unused_for(model: StaleModel) -> str:
    if model.idle_days is None:
        return "never used"
    return f"unused for {model.idle_days} day{'s' if model.idle_days != 1 else ''}"


def nudge_notice(nudge: Nudge | None) -> Notice | None:
    """For a worker: the stale-models notification, naming the model (or the biggest of several) and its size.
    The nudge says only how many and how much (its JSON is the shell helper's too), so the models are looked up."""
    if nudge is None:
        return None
    plan = cleanup.find_stale()
    models = sorted(plan.removable, key=lambda m: m.size_bytes, reverse=True)
    names = titles(models)
    actions = (Action("review", "Clean up…"), Action("later", "Later"))
    if len(models) == 1:
        model = models[0]
        body = f"{names[model.model]} {unused_for(model)} ({human_bytes(model.size_bytes)}). Clean up?"
        return Notice("nudge", "Unused local model", body, actions, ref=model.model)
    n = len(models) or nudge.stale_models
    body = f"{n} models unused for {plan.days}+ days take {human_bytes(plan.removable_bytes or nudge.stale_bytes)}"
    if models:
        body += f", the biggest {names[models[0].model]} ({human_bytes(models[0].size_bytes)})"
    return Notice("nudge", "Unused local models", body + ". Clean up?", actions)


def removal_question(chosen: list[StaleRow]) -> Question:
    total = human_bytes(sum(r.model.size_bytes for r in chosen))
    if len(chosen) == 1:
        return Question(
            "Remove model",
            f"Delete {chosen[0].title} ({total})?",
            "Its file is deleted from disk. You can download it again later.",
        )
    lines = [f"• {r.title} ({human_bytes(r.model.size_bytes)})" for r in chosen[:LISTED]]
    if len(chosen) > LISTED:
        lines.append(f"and {len(chosen) - LISTED} more")
    return Question(
        "Remove models",
        f"Delete {len(chosen)} models ({total})?",
        "\n".join(lines + ["", "Their files are deleted from disk. You can download them again later."]),
    )
