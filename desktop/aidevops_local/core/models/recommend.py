"""`recommend`: two or three concrete models for this machine, for chat and for coding.

Candidates come from the curated, dated list in resources/catalog.toml. Each is estimated with the same
memory model `serve` uses (fit.py) at an 8k context, on the GPU when the machine has one and the model fits
there, else on the CPU; what does not fit, or would generate fewer than MIN_TOKENS_PER_S tokens a second
(speed follows memory bandwidth), is dropped. The best-ranked survivor per use is picked, plus a third: a
faster one when the picks are slow, else the runner-up. Each says why, and what the next model up would need.
Catalog models whose use is "embedding" are never among those picks: the best one that fits is offered on its
own (RecommendResult.embedding), as the model that turns documents into vectors for RAG beside a chat model.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..system import backends
from ..system.errors import ConfigError
from ..system.hardware import Hardware
from . import fit

RECOMMEND_CTX = 8192
EMBEDDING = "embedding"  # a catalog use: a model that makes vectors for RAG, never a chat or coding pick
MIN_TOKENS_PER_S = 8.0  # below this, chat feels stuck
FAST_ENOUGH = 20.0  # picks at least this fast need no faster alternative
GB = 10**9


@dataclass(frozen=True)
class CatalogModel:
    name: str
    use: tuple[str, ...]
    rank: int
    repo: str
    file: str
    size_bytes: int
    shape: fit.ModelShape
    why: str = ""

    @property
    def quant(self) -> str:
        from .library import quant_from_name

        return quant_from_name(self.file)


@dataclass(frozen=True)
class Recommendation:
    name: str
    use: str  # "chat", "coding" or "embedding" (what it was picked for)
    repo: str
    file: str
    quant: str
    size_bytes: int
    memory_bytes: int  # predicted at RECOMMEND_CTX: RAM + VRAM the server needs
    ram_bytes: int
    vram_bytes: int
    tokens_per_s: float
    device: str  # "gpu (cuda)", "cpu", "unified (metal)"
    ctx: int
    why: str
    next_tier: str = ""

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


# ---- the catalog ------------------------------------------------------------------------------------------


def load_catalog(path: Path | None = None) -> tuple[str, list[CatalogModel]]:
    """(the list's date, its models). The file ships in the package; a path overrides it (tests, previews)."""
    try:
        text = (
            Path(path).read_text(encoding="utf-8")
            if path
            else resources.files("aidevops_local").joinpath("resources/catalog.toml").read_text(encoding="utf-8")
        )
        data = tomllib.loads(text)
        return str(data.get("updated", "")), [_entry(m) for m in data.get("model", [])]
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"The model catalog is not valid: {exc}", hint="Fix resources/catalog.toml (see the comment at its top)."
        ) from exc


def _entry(m: dict) -> CatalogModel:
    layers, embd, heads, kv, hd = m["layers"], m["embd"], m["heads"], m["kv_heads"], m["head_dim"]
    experts, used, expert_ff = m.get("experts", 0), m.get("experts_used", 0), m.get("expert_ff", 0)
    size = int(float(m["size_gb"]) * GB)
    swa_every = m.get("swa_every", 0)
    swa_layers = sum(1 for il in range(layers) if il % swa_every < swa_every - 1) if swa_every else 0
    active = 1.0
    if experts and used:
        expert_params = 3 * embd * expert_ff * experts * layers
        other = layers * (2 * embd * heads * hd + 2 * embd * kv * hd) + 2 * m["vocab"] * embd
        active = (other + expert_params * used / experts) / (other + expert_params)
    shape = fit.ModelShape(
        architecture=m.get("arch", ""),
        n_layer=layers,
        n_embd=embd,
        n_ff=max(m["ff"], expert_ff * used),
        n_head=heads,
        n_head_kv=kv,
        head_dim_k=hd,
        head_dim_v=hd,
        n_vocab=m["vocab"],
        ctx_train=m["ctx"],
        weights_bytes=size,
        embd_bytes=int(m["vocab"] * embd * 0.75),  # ~6 bits per embedding weight
        swa_window=m.get("swa_window", 0),
        swa_layers=swa_layers,
        active_fraction=active,
    )
    return CatalogModel(
        name=m["name"],
        use=tuple(m["use"]),
        rank=int(m["rank"]),
        repo=m["repo"],
        file=m["file"],
        size_bytes=size,
        shape=shape,
        why=m.get("why", ""),
    )


# ---- choosing ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Option:
    model: CatalogModel
    estimate: fit.MemoryEstimate
    tokens_per_s: float
    device: str
    fits: bool


def _evaluate(model: CatalogModel, hw: Hardware, ctx: int = RECOMMEND_CTX) -> _Option:
    """On the GPU if the whole model fits there, else on the CPU (unified memory: always the GPU)."""
    shape = model.shape
    backend = hw.best_backend
    if backends.offloads(backend):
        est = fit.estimate_memory(shape, ctx=ctx, gpu_layers=shape.n_layer + 1, backend=backend, hardware=hw)
        if est.fits or hw.unified_memory:
            device = f"unified ({backend})" if hw.unified_memory else f"gpu ({backend})"
            return _Option(model, est, fit.tokens_per_second(shape, hardware=hw, on_gpu=True), device, bool(est.fits))
    est = fit.estimate_memory(shape, ctx=ctx, hardware=hw)
    return _Option(model, est, fit.tokens_per_second(shape, hardware=hw, on_gpu=False), "cpu", bool(est.fits))


def recommend(
    hardware: Hardware | None = None, *, catalog: Path | None = None, min_tokens_per_s: float = MIN_TOKENS_PER_S
) -> RecommendResult:
    """2-3 models for ``hardware`` (default: this machine): the best chat and coding models that fit and
    run at an interactive speed, and a third (faster, or the runner-up)."""
    from ..llamacpp.installed import server_or_none  # the llama-server, for the Mac's Metal working set
    from ..system.hardware import detect

    hw = hardware or detect(server=server_or_none())
    date, models = load_catalog(catalog)
    embedders = [m for m in models if EMBEDDING in m.use]
    options = [_evaluate(m, hw) for m in models if EMBEDDING not in m.use]
    usable = [o for o in options if o.fits and o.tokens_per_s >= min_tokens_per_s]
    picks: list[Recommendation] = []
    for use in ("chat", "coding"):
        best = _best([o for o in usable if use in o.model.use and not _picked(o, picks)])
        if best:
            picks.append(
                _recommendation(
                    best, use, options, min_tokens_per_s, f"the best-ranked {use} model that fits this machine"
                )
            )
            continue
        # Nothing is interactive here: the fastest model that fits, said plainly.
        fitting = [o for o in options if o.fits and use in o.model.use and not _picked(o, picks)]
        fastest = max(fitting, key=lambda o: o.tokens_per_s, default=None)
        if fastest:
            picks.append(
                _recommendation(
                    fastest,
                    use,
                    options,
                    min_tokens_per_s,
                    f"the fastest {use} model that fits, though slow on this machine",
                )
            )
    third = _third(usable, picks, options, min_tokens_per_s)
    if third:
        picks.append(third)
    budget_ram, budget_vram = fit.budgets(hw, hw.best_backend, planning=False)
    note = (
        ""
        if picks
        else (
            "No model in the catalog fits this machine at an interactive speed; "
            "the smallest need about 2 GB of free memory."
        )
    )
    return RecommendResult(
        hardware=hw,
        catalog_date=date,
        picks=tuple(picks),
        usable_ram=budget_ram,
        usable_vram=budget_vram,
        note=note,
        embedding=_embedding_pick(embedders, hw),
    )


def _embedding_pick(embedders: list[CatalogModel], hw: Hardware) -> Recommendation | None:
    """The best-ranked embedding model that fits, at its own trained context (an encoder reads one chunk of
    a document at a time). Speed is not shown: it makes vectors, not text."""
    options = [_evaluate(m, hw, ctx=min(RECOMMEND_CTX, m.shape.ctx_train or RECOMMEND_CTX)) for m in embedders]
    best = _best([o for o in options if o.fits])
    if best is None:
        return None
    est, model = best.estimate, best.model
    return Recommendation(
        name=model.name,
        use=EMBEDDING,
        repo=model.repo,
        file=model.file,
        quant=model.quant,
        size_bytes=model.size_bytes,
        memory_bytes=est.total_bytes,
        ram_bytes=est.ram_required,
        vram_bytes=est.vram_bytes,
        tokens_per_s=0.0,
        device=best.device,
        ctx=est.ctx,
        why=f"an embedding model for RAG: {model.why}; serve it beside the chat model and POST text to "
        f"/v1/embeddings with its name (about {est.total_bytes / 2**30:.1f} GiB)",
    )


def _best(options: list[_Option]) -> _Option | None:
    return max(options, key=lambda o: (o.model.rank, o.tokens_per_s), default=None)


def _picked(option: _Option, picks: list[Recommendation]) -> bool:
    return any(p.repo == option.model.repo and p.file == option.model.file for p in picks)


def _third(
    usable: list[_Option], picks: list[Recommendation], options: list[_Option], min_tps: float
) -> Recommendation | None:
    rest = [o for o in usable if not _picked(o, picks)]
    if not picks or not rest:
        return None
    slowest = min(p.tokens_per_s for p in picks)
    if slowest < FAST_ENOUGH:
        faster = [o for o in rest if o.tokens_per_s >= 2 * slowest]
        best = _best(faster)
        if best:
            use = best.model.use[0]
            return _recommendation(
                best,
                use,
                options,
                min_tps,
                f"a faster {use} model (about {best.tokens_per_s:.0f} tokens/s) for quick questions",
            )
    families = {p.repo.split("/")[-1].split("-")[0] for p in picks}
    other = [o for o in rest if o.model.repo.split("/")[-1].split("-")[0] not in families] or rest
    best = _best(other)
    use = best.model.use[0]
    return _recommendation(best, use, options, min_tps, f"a strong {use} alternative from another family")


def _recommendation(option: _Option, use: str, options: list[_Option], min_tps: float, reason: str) -> Recommendation:
    est = option.estimate
    why = (
        f"{reason}: {option.model.why}; needs about {est.total_bytes / 2**30:.1f} GiB of the "
        f"{_usable(option) / 2**30:.1f} GiB usable at a {RECOMMEND_CTX}-token context, "
        f"~{option.tokens_per_s:.0f} tokens/s on {option.device}"
    )
    return Recommendation(
        name=option.model.name,
        use=use,
        repo=option.model.repo,
        file=option.model.file,
        quant=option.model.quant,
        size_bytes=option.model.size_bytes,
        memory_bytes=est.total_bytes,
        ram_bytes=est.ram_required,
        vram_bytes=est.vram_bytes,
        tokens_per_s=option.tokens_per_s,
        device=option.device,
        ctx=est.ctx,
        why=why,
        next_tier=_next_tier(option, use, options, min_tps),
    )


def _next_tier(option: _Option, use: str, options: list[_Option], min_tps: float) -> str:
    """The next better model for this use that was left out, and what it would take."""
    above = sorted(
        (
            o
            for o in options
            if use in o.model.use and o.model.rank > option.model.rank and not (o.fits and o.tokens_per_s >= min_tps)
        ),
        key=lambda o: o.model.rank,
    )
    if not above:
        return "this is the top of the catalog for this use"
    nxt = above[0]
    need = nxt.estimate.total_bytes / 2**30
    if not nxt.fits:
        where = "GPU memory" if nxt.device.startswith("gpu") else "memory"
        return (
            f"{nxt.model.name} needs about {need:.1f} GiB of {where} at {RECOMMEND_CTX} tokens "
            f"(here: {_usable(nxt) / 2**30:.1f} GiB usable)"
        )
    return (
        f"{nxt.model.name} fits ({need:.1f} GiB) but would run at ~{nxt.tokens_per_s:.0f} tokens/s here; "
        f"it needs about {min_tps * nxt.model.shape.active_bytes / 0.6 / 1e9:.0f} GB/s of memory bandwidth "
        "(a GPU, or Apple Silicon Pro/Max) for an interactive speed"
    )


def _usable(option: _Option) -> int:
    est = option.estimate
    return est.budget_vram if option.device.startswith("gpu") else est.budget_ram
