"""`recommend`: two or three concrete models for this machine, for chat and for coding.

Candidates come from the curated, dated catalog (catalog.py, resources/catalog.toml): one option per file, so
a model's higher quants compete with its Q4_K_M. Each is estimated with the same memory model `serve` uses
(fit.py) at an 8k context, on the GPU when the machine has one and the model fits there, else on the CPU; what
does not fit, or would generate fewer than MIN_TOKENS_PER_S tokens a second, is dropped. Per use the best
survivor is picked: the highest rank (a file nobody saw on the Hub counts UNCHECKED_PENALTY lower, so a seen
file of similar quality comes first), then the highest quant that fits comfortably at a fast speed (else the
smallest). A third pick follows: a faster one when the picks are slow, else the best of another family. Each
pick's context is then raised toward the model's trained context while it still fits on the same device, and
says its KV cache's cost, why, and what the next model up would need.
Catalog models whose use is "embedding" are never among those picks: the best one that fits is offered on its
own (RecommendResult.embedding), as the model that turns documents into vectors for RAG beside a chat model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..system import backends
from ..system.hardware import Hardware
from . import fit, measured, speed
from .catalog import CatalogModel, load_catalog

__all__ = ["CatalogModel", "Recommendation", "RecommendResult", "load_catalog", "recommend"]

RECOMMEND_CTX = 8192  # every option is compared at this context; a pick's own context may then grow
EMBEDDING = "embedding"  # a catalog use: a model that makes vectors for RAG, never a chat or coding pick
MIN_TOKENS_PER_S = 8.0  # below this, chat feels stuck
FAST_ENOUGH = 20.0  # picks at least this fast need no faster alternative; a higher quant must stay this fast
COMFORT_SHARE = 0.7  # a higher quant is taken when it needs at most this share of the memory it runs in
UNCHECKED_PENALTY = 10  # rank lost by a file nobody saw on the Hub: a seen one within this much comes first
GIB = 1 << 30


@dataclass(frozen=True)
class Recommendation:
    name: str
    use: str  # "chat", "coding" or "embedding" (what it was picked for)
    repo: str
    file: str  # path in the repo; for a split set its first part
    quant: str
    size_bytes: int  # the file (every part of a split set)
    memory_bytes: int  # predicted at ctx: RAM + VRAM the server needs
    ram_bytes: int
    vram_bytes: int
    tokens_per_s: float
    device: str  # "gpu (cuda)", "cpu", "unified (metal)"
    ctx: int  # the context it is recommended at: raised toward ctx_train while it fits
    why: str
    next_tier: str = ""
    kv_bytes: int = 0  # the KV cache at ctx (part of memory_bytes)
    ctx_train: int = 0
    checked: str = "no"  # the catalog's mark for this file: "hub", "mirror" or "no" (not seen)
    seen: str = ""  # when the file was looked for
    parts: int = 1  # files in a split set
    speed_basis: str = "estimated"  # "estimated", or "measured here" once this machine has run the model

    @property
    def pull_command(self) -> str:
        return f"aidevops-local pull {self.repo} --file {self.file}"


@dataclass(frozen=True)
class RecommendResult:
    hardware: Hardware
    catalog_date: str
    picks: tuple[Recommendation, ...]
    usable_ram: int
    usable_vram: int
    note: str = ""
    embedding: Recommendation | None = None  # for RAG, served beside the chat model; not one of the picks

    def __iter__(self):
        return iter(self.picks)

    def __len__(self) -> int:
        return len(self.picks)


# ---- one option: a catalog file on this machine -------------------------------------------------------------


@dataclass(frozen=True)
class _Option:
    model: CatalogModel
    estimate: fit.MemoryEstimate
    tokens_per_s: float
    device: str
    fits: bool
    speed_basis: str = "estimated"

    @property
    def budget(self) -> int:
        """The memory it runs in: the GPU's for a discrete GPU, else system memory."""
        return self.estimate.budget_vram if self.device.startswith("gpu") else self.estimate.budget_ram

    @property
    def needs(self) -> int:
        return self.estimate.vram_bytes if self.device.startswith("gpu") else self.estimate.total_bytes

    @property
    def comfortable(self) -> bool:
        """Fits with room to spare and stays fast: where a higher quant is worth its size."""
        return self.fits and self.needs <= COMFORT_SHARE * self.budget and self.tokens_per_s >= FAST_ENOUGH


def _speed(model: CatalogModel, hw: Hardware, *, on_gpu: bool) -> tuple[float, str]:
    """(tokens/s, what it rests on): speed.py's estimate, replaced by the figure measured here for this file,
    or scaled by what similar models measured here (measured.correct)."""
    shape = model.shape
    backend = hw.best_backend if on_gpu else "cpu"
    est = speed.estimate_speed(shape, hardware=hw, backend=backend, gpu_layers=shape.n_layer + 1 if on_gpu else 0)
    fig = measured.correct(
        est.tokens_per_s, est.prompt_tokens_per_s, shape, backend=backend, file=model.file, hardware=hw
    )
    return fig.tokens_per_s, fig.basis


def _evaluate(model: CatalogModel, hw: Hardware, ctx: int = RECOMMEND_CTX) -> _Option:
    """On the GPU if the whole model fits there, else on the CPU (unified memory: always the GPU)."""
    shape = model.shape
    backend = hw.best_backend
    if backends.offloads(backend):
        est = fit.estimate_memory(shape, ctx=ctx, gpu_layers=shape.n_layer + 1, backend=backend, hardware=hw)
        if est.fits or hw.unified_memory:
            device = f"unified ({backend})" if hw.unified_memory else f"gpu ({backend})"
            tps, basis = _speed(model, hw, on_gpu=True)
            return _Option(model, est, tps, device, bool(est.fits), basis)
    est = fit.estimate_memory(shape, ctx=ctx, hardware=hw)
    tps, basis = _speed(model, hw, on_gpu=False)
    return _Option(model, est, tps, "cpu", bool(est.fits), basis)


def _contexts(ctx_train: int) -> list[int]:
    """Contexts above RECOMMEND_CTX to try, longest first: the trained context, then powers of two below it."""
    out = [ctx_train] if ctx_train > RECOMMEND_CTX else []
    size = RECOMMEND_CTX * 2
    while size < ctx_train:
        out.insert(1, size)
        size *= 2
    return out


def _longest_context(option: _Option, hw: Hardware) -> _Option:
    """The option at the longest context that still fits on the same device (the KV cache grows with it)."""
    for ctx in _contexts(option.model.shape.ctx_train):
        longer = _evaluate(option.model, hw, ctx)
        if longer.fits and longer.device == option.device:
            return longer
    return option


# ---- choosing ---------------------------------------------------------------------------------------------


def recommend(
    hardware: Hardware | None = None, *, catalog: Path | None = None, min_tokens_per_s: float = MIN_TOKENS_PER_S
) -> RecommendResult:
    """2-3 models for ``hardware`` (default: this machine): the best chat and coding models that fit and
    run at an interactive speed, and a third (faster, or from another family)."""
    from ..llamacpp.installed import server_or_none  # the llama-server, for the Mac's Metal working set
    from ..system.hardware import detect

    hw = hardware or detect(server=server_or_none())
    date, models = load_catalog(catalog)
    options = [_evaluate(m, hw) for m in models if EMBEDDING not in m.use]
    usable = [o for o in options if o.fits and o.tokens_per_s >= min_tokens_per_s]
    chosen: list[tuple[_Option, str, str]] = []  # (option, use, reason)
    for use in ("chat", "coding"):
        pick = _pick_for(use, usable, options, chosen)
        if pick:
            chosen.append(pick)
    third = _third(usable, chosen)
    if third:
        chosen.append(third)
    picks = tuple(_recommendation(o, use, reason, hw, options, min_tokens_per_s) for o, use, reason in chosen)
    budget_ram, budget_vram = fit.budgets(hw, hw.best_backend, planning=False)
    note = (
        ""
        if picks
        else "No model in the catalog fits this machine at an interactive speed; "
        "the smallest need about 2 GB of free memory."
    )
    embedders = [m for m in models if EMBEDDING in m.use]
    return RecommendResult(
        hardware=hw,
        catalog_date=date,
        picks=picks,
        usable_ram=budget_ram,
        usable_vram=budget_vram,
        note=note,
        embedding=_embedding_pick(embedders, hw),
    )


def _pick_for(use: str, usable: list[_Option], options: list[_Option], chosen: list) -> tuple | None:
    best = _best([o for o in usable if use in o.model.use and not _picked(o, chosen)])
    if best:
        return best, use, f"the best-ranked {use} model that fits this machine"
    # Nothing is interactive here: the fastest model that fits, said plainly.
    fitting = [o for o in options if o.fits and use in o.model.use and not _picked(o, chosen)]
    fastest = max(fitting, key=lambda o: (o.tokens_per_s, o.model.file_seen), default=None)
    if fastest:
        return fastest, use, f"the fastest {use} model that fits, though slow on this machine"
    return None


def _score(option: _Option) -> tuple:
    """Rank first (a file not seen counts lower), then a seen file, then the highest quant that fits
    comfortably (else the smallest: the most room and speed), then speed."""
    model = option.model
    rank = model.rank - (0 if model.file_seen else UNCHECKED_PENALTY)
    quality = model.quant_quality if option.comfortable else -model.quant_quality
    return (rank, model.file_seen, option.comfortable, quality, option.tokens_per_s)


def _best(options: list[_Option]) -> _Option | None:
    return max(options, key=_score, default=None)


def _picked(option: _Option, chosen: list) -> bool:
    """Whether this model (any of its files) is already a pick."""
    return any(o.model.name == option.model.name for o, _, _ in chosen)


def _third(usable: list[_Option], chosen: list) -> tuple | None:
    rest = [o for o in usable if not _picked(o, chosen)]
    if not chosen or not rest:
        return None
    slowest = min(o.tokens_per_s for o, _, _ in chosen)
    if slowest < FAST_ENOUGH:
        best = _best([o for o in rest if o.tokens_per_s >= 2 * slowest])
        if best:
            use = best.model.use[0]
            return best, use, f"a faster {use} model (about {best.tokens_per_s:.0f} tokens/s) for quick questions"
    families = {o.model.family for o, _, _ in chosen}
    best = _best([o for o in rest if o.model.family not in families] or rest)
    use = best.model.use[0]
    return best, use, f"a strong {use} alternative from another family"


def _recommendation(
    option: _Option, use: str, reason: str, hw: Hardware, options: list[_Option], min_tps: float
) -> Recommendation:
    option = _longest_context(option, hw)
    est, model = option.estimate, option.model
    unseen = (
        ""
        if model.file_seen
        else f" (this file was not seen on the Hub when the catalog was checked; if `pull` cannot find it, "
        f"`aidevops-local search --repo {model.repo}` lists what is there)"
    )
    why = (
        f"{reason}: {model.why}; needs about {option.needs / GIB:.1f} GiB of the "
        f"{option.budget / GIB:.1f} GiB usable at a {est.ctx}-token context (KV cache "
        f"{est.kv_cache / GIB:.1f} GiB), ~{option.tokens_per_s:.0f} tokens/s on {option.device} "
        f"({option.speed_basis}){unseen}"
    )
    return _as_recommendation(option, use, why, next_tier=_next_tier(option, use, options, min_tps))


def _as_recommendation(option: _Option, use: str, why: str, *, next_tier: str = "") -> Recommendation:
    est, model = option.estimate, option.model
    return Recommendation(
        name=model.name,
        use=use,
        repo=model.repo,
        file=model.file,
        quant=model.quant,
        size_bytes=model.size_bytes,
        memory_bytes=est.total_bytes,
        ram_bytes=est.ram_required,
        vram_bytes=est.vram_bytes,
        tokens_per_s=option.tokens_per_s,
        device=option.device,
        ctx=est.ctx,
        why=why,
        next_tier=next_tier,
        kv_bytes=est.kv_cache,
        ctx_train=model.shape.ctx_train,
        checked=model.checked,
        seen=model.seen,
        parts=max(1, len(model.parts_bytes)),
        speed_basis=option.speed_basis,
    )


def _embedding_pick(embedders: list[CatalogModel], hw: Hardware) -> Recommendation | None:
    """The best-ranked embedding model that fits, at its own trained context (an encoder reads one chunk of
    a document at a time). Speed is not shown: it makes vectors, not text."""
    options = [_evaluate(m, hw, ctx=min(RECOMMEND_CTX, m.shape.ctx_train or RECOMMEND_CTX)) for m in embedders]
    best = _best([o for o in options if o.fits])
    if best is None:
        return None
    why = (
        f"an embedding model for RAG: {best.model.why}; serve it beside the chat model and POST text to "
        f"/v1/embeddings with its name (about {best.estimate.total_bytes / GIB:.1f} GiB)"
    )
    return _as_recommendation(best, EMBEDDING, why)


def _next_tier(option: _Option, use: str, options: list[_Option], min_tps: float) -> str:
    """The next better model for this use that was left out (its smallest file), and what it would take."""
    above = sorted(
        (
            o
            for o in options
            if use in o.model.use and o.model.rank > option.model.rank and not (o.fits and o.tokens_per_s >= min_tps)
        ),
        key=lambda o: (o.model.rank, o.model.size_bytes),
    )
    if not above:
        return "this is the top of the catalog for this use"
    nxt = above[0]
    need = nxt.needs / GIB
    if not nxt.fits:
        where = "GPU memory" if nxt.device.startswith("gpu") else "memory"
        return (
            f"{nxt.model.name} needs about {need:.1f} GiB of {where} at {RECOMMEND_CTX} tokens "
            f"(here: {nxt.budget / GIB:.1f} GiB usable)"
        )
    return (
        f"{nxt.model.name} fits ({need:.1f} GiB) but would run at ~{nxt.tokens_per_s:.0f} tokens/s here; "
        f"it needs about {min_tps * nxt.model.shape.active_bytes / 0.6 / 1e9:.0f} GB/s of memory bandwidth "
        "(a GPU, or Apple Silicon Pro/Max) for an interactive speed"
    )
