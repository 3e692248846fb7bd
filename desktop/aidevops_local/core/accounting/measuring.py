"""What usage ingestion adds to the measured figures (models/measured.py) after each batch of requests.

`prepare` runs before the batch's transaction: it works out, once per model and plan in the batch, where the
figures go (file, machine, backend, plan), what the estimate says for them, and the memory the model's process
holds now (through the caller's probe: serving knows our processes, accounting does not). `record` runs inside
the transaction that adds the batch's rows, one upsert per model and plan, and only for requests whose rows
are new, so reading a log again never counts a request's speed twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import psutil

from ..database import store
from ..models import measured, prediction
from ..system import hardware
from ..system.errors import LocalModelsError
from .request_log import Request

# model path -> (RSS, VRAM) of the process of ours serving it now, or None (see serving.health.model_memory)
MemoryProbe = Callable[[str], "tuple[int | None, int | None] | None"]
_PLAN_DEFAULTS = {"ctx_size": 0, "parallel": 0, "gpu_layers": -1, "threads": 0}


def _timed(r: Request) -> bool:
    return r.gen_ms > 0 or r.prompt_ms > 0


def _plan(r: Request) -> measured.Plan:
    values = dict(_PLAN_DEFAULTS)
    for key, value in (r.plan or {}).items():
        if key in values:
            try:
                values[key] = int(value)
            except (TypeError, ValueError):
                pass  # "auto", "all": not a number of ours
    return measured.Plan(**values)


def _key(r: Request) -> tuple:
    return r.model, r.model_path, _plan(r)


def prepare(requests: Iterable[Request], memory_of: MemoryProbe | None) -> dict[tuple, measured.Target]:
    """Where each timed request's figures go, keyed like `_key`. Best effort: a machine or file that cannot
    be read leaves the batch unmeasured, never unrecorded."""
    timed = [r for r in requests if _timed(r)]
    if not timed:
        return {}
    try:
        hw = hardware.detect()
        machine, desc = measured.machine_id(hw), measured.machine_desc(hw)
        targets: dict[tuple, measured.Target] = {}
        for r in timed:
            if (key := _key(r)) not in targets:
                targets[key] = _target(r, key[2], hw, machine, desc, memory_of)
        return targets
    except (LocalModelsError, OSError, psutil.Error):
        return {}


def _target(r: Request, plan: measured.Plan, hw, machine: str, desc: str, memory_of) -> measured.Target:
    path = Path(r.model_path) if r.model_path else None
    try:
        size = path.stat().st_size if path else 0
    except OSError:
        size = 0
    shape = prediction.shape_of(path) if size else None
    backend = measured.served_backend(hw, plan.gpu_layers)
    gen = prompt = None
    if shape is not None:
        gen, prompt = prediction.estimated_speed(
            shape, hw, backend=backend, gpu_layers=plan.gpu_layers, threads=plan.threads
        )
    memory = memory_of(r.model_path) if memory_of is not None and r.model_path else None
    return measured.Target(
        model=r.model,
        file=path.name if path else r.model,
        size_bytes=size,
        machine=machine,
        machine_desc=desc,
        backend=backend,
        plan=plan,
        sha256=_sha256(r.model_path),
        architecture=shape.architecture if shape else None,
        active_bytes=shape.active_bytes if shape else None,
        estimated_tok_per_sec=gen or None,
        estimated_prompt_tok_per_sec=prompt or None,
        rss_bytes=memory[0] if memory else None,
        vram_bytes=memory[1] if memory else None,
    )


def _sha256(model_path: str) -> str | None:
    if not model_path:
        return None
    row = store.ModelInventory.get_or_none(store.ModelInventory.path == model_path)
    return row.sha256 if row is not None else None


def record(targets: dict[tuple, measured.Target], group: list[Request], inserted: int) -> None:
    """Fold a model's requests into its figures, inside the transaction that inserted their rows. A group
    only partly new (a log read again from its start, with requests added since) is left out rather than
    counted twice: which of its rows are new is not known here."""
    if not targets or inserted != len(group):
        return
    by_key: dict[tuple, list[Request]] = {}
    for r in group:
        if _timed(r):
            by_key.setdefault(_key(r), []).append(r)
    for key, requests in by_key.items():
        target = targets.get(key)
        if target is not None:
            measured.record(target, _batch(requests))


def _batch(requests: list[Request]) -> measured.Batch:
    prompts = [r for r in requests if r.prompt_evaluated >= measured.MIN_PROMPT_TOKENS and r.prompt_ms > 0]
    generated = [r for r in requests if r.tokens_out > 0 and r.gen_ms > 0]
    return measured.Batch(
        requests=len(requests),
        gen_tokens=sum(r.tokens_out for r in generated),
        gen_ms=sum(r.gen_ms for r in generated),
        prompt_tokens=sum(r.prompt_evaluated for r in prompts),
        prompt_ms=sum(r.prompt_ms for r in prompts),
    )
