"""What the wizard's first screen says: this machine in one sentence, and the models to offer, best first.

The picks are `recommend`'s (core/models/recommend.py), in its order and with its words: its first pick is
the best chat model that runs at an interactive speed here. A model already on disk that fits comes first.
"How big a model runs here" is the largest dense catalog model that fits the same memory budgets (fit.py)
and reaches recommend's interactive speed. No widget here: wizard_choose.py shows it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..core.system import backends
from ..core.system.hardware import Hardware
from .wizard_steps import OnDisk, Pick

GIB = 1 << 30
_PARAMS = re.compile(r"\b(\d+(?:\.\d+)?)B\b")


@dataclass(frozen=True)
class Suggestions:
    machine: str  # "24 GB of memory, no graphics card that helps: models up to about 8B run here."
    picks: tuple[Pick, ...]  # the suggestion first, then the others
    note: str = ""  # recommend's note when nothing fits


def suggest(job, hw: Hardware, models: tuple[OnDisk, ...]) -> Suggestions:
    from ..core.models import recommend

    result = recommend.recommend(hw)
    picks = [_from_recommendation(r) for r in result.picks]
    local = [_from_disk(m) for m in models if _fits(m, hw)]
    on_disk = {(p.repo, p.file) for p in local}
    # A downloaded model recommend also picks leads; other downloaded ones follow, larger first.
    ranked = {(p.repo, p.file): i for i, p in enumerate(picks)}
    local.sort(key=lambda p: (ranked.get((p.repo, p.file), len(ranked)), -p.size_bytes))
    rest = [p for p in picks if (p.repo, p.file) not in on_disk]
    return Suggestions(machine_sentence(hw), tuple(local + rest), result.note)


def machine_sentence(hw: Hardware) -> str:
    memory = f"{round(hw.memory.total / GIB)} GB of memory"
    size = largest_runnable(hw)
    if size:
        reach = f"models up to about {size} run here"
    else:
        reach = "only very small models run here"
    return f"{memory}, {_graphics(hw)}: {reach}."


def _graphics(hw: Hardware) -> str:
    if hw.unified_memory:
        return "shared with the built-in graphics, which run the models"
    if backends.offloads(hw.best_backend) and hw.vram_total:
        gpu = next((g for g in hw.gpus if g.vram_total), None)
        name = gpu.name if gpu else "a graphics card"
        return f"and {name} with {round(hw.vram_total / GIB)} GB that runs the models"
    return "no graphics card that helps"


def largest_runnable(hw: Hardware) -> str:
    """ "8B": the largest dense chat or coding model of the catalog that fits and runs at recommend's
    interactive speed here ("" when none does). Mixture-of-experts models are left out: their size says
    little about what a dense model of that size would do."""
    from ..core.models import catalog, fit, recommend

    _, models = catalog.load_catalog()
    best = 0.0
    for model in models:
        found = _PARAMS.search(model.name)
        if recommend.EMBEDDING in model.use or not found or model.shape.active_fraction < 1:
            continue
        if _runs(model.shape, hw, fit, recommend) and float(found.group(1)) > best:
            best = float(found.group(1))
    return f"{best:g}B" if best else ""


def _runs(shape, hw: Hardware, fit, recommend) -> bool:
    """As recommend judges a model: on the GPU when the whole model fits there, else on the CPU."""
    ctx = recommend.RECOMMEND_CTX
    if backends.offloads(hw.best_backend):
        est = fit.estimate_memory(shape, ctx=ctx, gpu_layers=shape.n_layer + 1, backend=hw.best_backend, hardware=hw)
        if est.fits or hw.unified_memory:
            speed = fit.tokens_per_second(shape, hardware=hw, on_gpu=True)
            return bool(est.fits) and speed >= recommend.MIN_TOKENS_PER_S
    est = fit.estimate_memory(shape, ctx=ctx, hardware=hw)
    return bool(est.fits) and fit.tokens_per_second(shape, hardware=hw, on_gpu=False) >= recommend.MIN_TOKENS_PER_S


def _fits(model: OnDisk, hw: Hardware) -> bool:
    from ..core.models import fit
    from ..core.system.errors import LocalModelsError

    try:
        return bool(fit.estimate_memory(model.path, hardware=hw).fits)
    except (LocalModelsError, OSError, ValueError):
        return False  # a file that cannot be read is not offered


def _from_recommendation(r) -> Pick:
    return Pick(
        title=r.name,
        repo=r.repo,
        file=r.file,
        quant=r.quant,
        use=r.use,
        why=short_why(r.why),
        size_bytes=r.size_bytes,
        tokens_per_s=r.tokens_per_s,
        speed_basis=r.speed_basis,
    )


def _from_disk(m: OnDisk) -> Pick:
    return Pick(
        title=m.title, name=m.name, repo=m.repo, file=m.file, quant=m.quant, size_bytes=m.size_bytes, local=True
    )


def short_why(why: str) -> str:
    """recommend's why up to its figures (memory and speed are shown apart): "the best-ranked chat model
    that fits this machine: a quick general assistant with a long context"."""
    text = why.split("; needs about", 1)[0].strip()
    return text[:1].upper() + text[1:] + ("." if text and not text.endswith(".") else "")
