"""Speeds and memory measured on this machine, remembered per model, machine, backend and plan, and the
estimates they correct.

Usage ingestion (accounting/measuring.py) records, after each batch of served requests, the generation and
prompt speed llama-server printed and the peak memory of the model's process, in `model_measurements`. A
model is known by its file's name and size (the catalog's file is the name a pull saves under, so a catalog
entry finds its measurements before and after a download); a machine by a fingerprint of its CPU, core
count, RAM and GPUs (`machine_id`), so figures never travel to another machine, a hardware profile included.

Speeds are token-weighted over about the last WINDOW_TOKENS tokens: the token and time sums are kept, and
scaled down before a batch is added once they hold more. Prompt evaluations of fewer than MIN_PROMPT_TOKENS
tokens (a prompt served from the cache) measure latency rather than throughput and are left out.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ..database import store
from ..system import clock, hardware
from ..system.errors import DatabaseError, DiskFull
from ..system.hardware import Hardware
from .model_shape import ModelShape

WINDOW_TOKENS = 4096.0
MIN_PROMPT_TOKENS = 8
MEASURED = "measured here"
ESTIMATED = "estimated"
_KEY = ("file", "size_bytes", "machine", "backend", "ctx_size", "parallel", "gpu_layers", "threads")


@dataclass(frozen=True)
class Plan:
    """What a figure was measured under: llama-server's -c, -np, -ngl and -t (0, or -1 for -ngl: unknown)."""

    ctx_size: int = 0
    parallel: int = 0
    gpu_layers: int = -1
    threads: int = 0


@dataclass(frozen=True)
class Target:
    """One model served on this machine under one plan: where a batch's figures go."""

    model: str
    file: str  # the file's name (the first part of a split set)
    size_bytes: int  # that file's size
    machine: str  # machine_id()
    machine_desc: str
    backend: str
    plan: Plan
    sha256: str | None = None
    architecture: str | None = None
    active_bytes: int | None = None  # weights read per generated token
    estimated_tok_per_sec: float | None = None  # what the estimate says for this machine and plan
    estimated_prompt_tok_per_sec: float | None = None
    rss_bytes: int | None = None  # the model's server process, sampled with the batch
    vram_bytes: int | None = None


@dataclass(frozen=True)
class Batch:
    """The timings of a batch of requests that finished (only those llama-server timed)."""

    requests: int
    gen_tokens: int
    gen_ms: float
    prompt_tokens: int  # evaluated, not served from the cache; prompts of MIN_PROMPT_TOKENS or more
    prompt_ms: float


@dataclass(frozen=True)
class Measured:
    model: str
    file: str
    size_bytes: int
    machine: str
    backend: str
    plan: Plan
    tokens_per_s: float | None  # generation
    prompt_tokens_per_s: float | None
    peak_rss_bytes: int | None
    peak_vram_bytes: int | None
    requests: int
    updated: datetime | None
    architecture: str | None = None
    active_bytes: int | None = None
    estimated_tokens_per_s: float | None = None
    estimated_prompt_tokens_per_s: float | None = None


@dataclass(frozen=True)
class SpeedFigure:
    """A speed to show or plan with, and what it rests on: MEASURED, "estimated, corrected by N measured
    model(s) here", or ESTIMATED."""

    tokens_per_s: float
    prompt_tokens_per_s: float | None
    basis: str


# ---- the machine ----------------------------------------------------------------------------------------


def machine_desc(hw: Hardware) -> str:
    """What a measurement depends on of the machine, in words: CPU, cores, RAM (GiB) and GPUs."""
    gpus = sorted(f"{g.name} {round(g.vram_total / 2**30)} GiB" for g in hw.gpus)
    ram = round(hw.memory.total / 2**30)
    return "; ".join([f"{hw.cpu_name or hw.arch} x{hw.physical_cores}", f"{ram} GiB RAM", *gpus])


def machine_id(hw: Hardware | None = None) -> str:
    """A stable fingerprint of ``hw`` (default: this machine, or the profile AIDEVOPS_HARDWARE_PROFILE names)."""
    return hashlib.sha256(machine_desc(hw or hardware.detect()).encode()).hexdigest()[:16]


def served_backend(hw: Hardware, gpu_layers: int) -> str:
    """The backend a plan runs on: the machine's best, unless no layer is offloaded (the CPU's then)."""
    return "cpu" if gpu_layers == 0 else hw.best_backend


# ---- recording ------------------------------------------------------------------------------------------


def record(target: Target, batch: Batch) -> None:
    """Fold one batch into the target's row (one read and one upsert). Call inside a store.write()
    transaction: usage ingestion does, with the rows the batch came from."""
    db = store.database()
    where = " AND ".join(f"{k} = ?" for k in _KEY)
    key = _key_values(target)
    row = db.execute_sql(
        f"SELECT gen_tokens, gen_ms, prompt_tokens, prompt_ms, peak_rss_bytes, peak_vram_bytes, requests "
        f"FROM model_measurements WHERE {where}",
        key,
    ).fetchone()
    gen_tokens, gen_ms, prompt_tokens, prompt_ms, rss, vram, requests = row or (0.0, 0.0, 0.0, 0.0, None, None, 0)
    gen_tokens, gen_ms = _window(gen_tokens, gen_ms, batch.gen_tokens, batch.gen_ms)
    prompt_tokens, prompt_ms = _window(prompt_tokens, prompt_ms, batch.prompt_tokens, batch.prompt_ms)
    values = {
        **dict(zip(_KEY, key, strict=True)),
        "model": target.model,
        "sha256": target.sha256,
        "architecture": target.architecture,
        "active_bytes": target.active_bytes,
        "machine_desc": target.machine_desc,
        "gen_tokens": gen_tokens,
        "gen_ms": gen_ms,
        "prompt_tokens": prompt_tokens,
        "prompt_ms": prompt_ms,
        "tok_per_sec": _rate(gen_tokens, gen_ms),
        "prompt_tok_per_sec": _rate(prompt_tokens, prompt_ms),
        "estimated_tok_per_sec": target.estimated_tok_per_sec,
        "estimated_prompt_tok_per_sec": target.estimated_prompt_tok_per_sec,
        "peak_rss_bytes": _peak(rss, target.rss_bytes),
        "peak_vram_bytes": _peak(vram, target.vram_bytes),
        "requests": requests + batch.requests,
        "updated": clock.sqlite_text(),
    }
    names = ", ".join(values)
    db.execute_sql(
        f"INSERT OR REPLACE INTO model_measurements ({names}) VALUES ({', '.join('?' * len(values))})",
        list(values.values()),
    )


def _key_values(target: Target) -> list:
    p = target.plan
    return [
        target.file,
        target.size_bytes,
        target.machine,
        target.backend,
        p.ctx_size,
        p.parallel,
        p.gpu_layers,
        p.threads,
    ]


def _window(tokens: float, ms: float, new_tokens: float, new_ms: float) -> tuple[float, float]:
    """Token and time sums over about the last WINDOW_TOKENS tokens: the old sums shrink, in proportion,
    to make room for the new batch."""
    if new_tokens <= 0 or new_ms <= 0:
        return tokens, ms
    keep = max(0.0, WINDOW_TOKENS - new_tokens)
    if tokens > keep:
        scale = keep / tokens
        tokens, ms = tokens * scale, ms * scale
    return tokens + new_tokens, ms + new_ms


def _rate(tokens: float, ms: float) -> float | None:
    return round(tokens / (ms / 1e3), 2) if tokens > 0 and ms > 0 else None


def _peak(old: int | None, new: int | None) -> int | None:
    seen = [v for v in (old, new) if v]
    return max(seen) if seen else None


# ---- reading --------------------------------------------------------------------------------------------


def measurements(*, machine: str | None = None, backend: str | None = None) -> list[Measured]:
    """Every row for ``machine`` (default: this one), optionally of one backend; the most used first."""
    where, params = ["machine = ?"], [machine or machine_id()]
    if backend:
        where.append("backend = ?")
        params.append(backend)
    try:
        db = store.database()
    except (DatabaseError, DiskFull):
        return []  # a damaged or full database: plans fall back on the estimate; `usage` and doctor say why
    cursor = db.execute_sql(
        "SELECT model, file, size_bytes, machine, backend, ctx_size, parallel, gpu_layers, threads, tok_per_sec, "
        "prompt_tok_per_sec, peak_rss_bytes, peak_vram_bytes, requests, updated, architecture, active_bytes, "
        "estimated_tok_per_sec, estimated_prompt_tok_per_sec FROM model_measurements "
        f"WHERE {' AND '.join(where)} ORDER BY requests DESC, updated DESC",
        params,
    )
    return [_measured(*row) for row in cursor.fetchall()]


def _measured(model, file, size, machine, backend, ctx, par, ngl, threads, tps, pps, rss, vram, n, updated, *rest):
    return Measured(
        model, file, size, machine, backend, Plan(ctx, par, ngl, threads), tps, pps, rss, vram, n,
        store.parse_timestamp(updated), *rest,
    )  # fmt: skip


def lookup(
    file: str | Path, *, backend: str, hardware: Hardware | None = None, size_bytes: int = 0, plan: Plan | None = None
) -> Measured | None:
    """The measured figure of a model file (a name or a path: its name is what counts) on this machine (or
    ``hardware``'s) and backend: the row of ``plan`` where there is one, else the most used; None when this
    model was never measured here. ``size_bytes`` (0: any) tells apart two files of one name."""
    name = Path(file).name
    rows = [
        m
        for m in measurements(machine=machine_id(hardware), backend=backend)
        if m.file == name and m.tokens_per_s and (not size_bytes or m.size_bytes == size_bytes)
    ]
    return next((m for m in rows if plan is not None and m.plan == plan), rows[0] if rows else None)


# ---- correcting estimates -------------------------------------------------------------------------------


def family(architecture: str | None) -> str:
    """An architecture's family: its name without version digits (qwen2 and qwen3 are qwen; qwen3moe is
    qwenmoe, since a mixture of experts runs unlike its dense sibling)."""
    return re.sub(r"[\d.]+", "", (architecture or "").lower())


def similar(measured: Measured, shape: ModelShape) -> bool:
    """Whether a model measured here tells about ``shape``'s speed. Similar means: active weights (what a
    token reads) within a factor of 2, whatever the family; or the same family within a factor of 8. Far
    apart in size, models are limited by different things (kernel launches for tiny ones, bandwidth for
    large ones), so a ratio would not carry over."""
    if not measured.active_bytes or not shape.active_bytes:
        return False
    ratio = max(measured.active_bytes, shape.active_bytes) / min(measured.active_bytes, shape.active_bytes)
    same_family = family(measured.architecture) == family(shape.architecture)
    return ratio <= 2 or (same_family and ratio <= 8)


def correct(
    tokens_per_s: float,
    prompt_tokens_per_s: float | None,
    shape: ModelShape,
    *,
    backend: str,
    file: str | Path | None = None,
    hardware: Hardware | None = None,
) -> SpeedFigure:
    """The speed to plan with for a model with ``shape`` (and ``file``, where it has one) on this machine
    (or ``hardware``'s), given the estimate: the measured figure when this model was measured here on this
    backend; else the estimate times the measured/estimated ratio of similar models measured here (the
    geometric mean over those models, for generation and prompt apart); else the estimate."""
    if file is not None and (found := lookup(file, backend=backend, hardware=hardware)) is not None:
        return SpeedFigure(found.tokens_per_s, found.prompt_tokens_per_s or prompt_tokens_per_s, MEASURED)
    rows = [m for m in measurements(machine=machine_id(hardware), backend=backend) if similar(m, shape)]
    by_model: dict[tuple[str, int], Measured] = {}
    for m in rows:  # one per model: its most used plan (rows come most used first)
        if file is None or m.file != Path(file).name:
            by_model.setdefault((m.file, m.size_bytes), m)
    gen = _ratio([(m.tokens_per_s, m.estimated_tokens_per_s) for m in by_model.values()])
    prompt = _ratio([(m.prompt_tokens_per_s, m.estimated_prompt_tokens_per_s) for m in by_model.values()])
    if gen is None:
        return SpeedFigure(tokens_per_s, prompt_tokens_per_s, ESTIMATED)
    count = len([m for m in by_model.values() if m.tokens_per_s and m.estimated_tokens_per_s])
    return SpeedFigure(
        round(tokens_per_s * gen, 1),
        round(prompt_tokens_per_s * prompt, 1) if prompt_tokens_per_s and prompt else prompt_tokens_per_s,
        f"estimated, corrected by {count} measured model{'s' if count != 1 else ''} here",
    )


def _ratio(pairs: list[tuple[float | None, float | None]]) -> float | None:
    """The geometric mean of measured/estimated over the pairs that have both; None when none has."""
    logs = [math.log(measured / estimated) for measured, estimated in pairs if measured and estimated]
    return math.exp(sum(logs) / len(logs)) if logs else None


def to_json(measured: Measured | None) -> dict | None:
    """What `models --json` and `status --json` show of a measurement."""
    if measured is None:
        return None
    return {
        "tokens_per_s": measured.tokens_per_s,
        "prompt_tokens_per_s": measured.prompt_tokens_per_s,
        "rss_bytes": measured.peak_rss_bytes,
        "vram_bytes": measured.peak_vram_bytes,
        "requests": measured.requests,
        "backend": measured.backend,
        "plan": dataclasses.asdict(measured.plan),
        "updated": store.format_timestamp(measured.updated) if measured.updated else None,
    }
