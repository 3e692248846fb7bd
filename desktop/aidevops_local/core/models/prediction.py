"""Predicted beside measured, per model on this machine: what `models --json` and `status --json` show, and
the one place the speed estimate is asked for what a measurement is compared with.

`predicted` is the estimate alone (memory from fit's plan, speed from the estimate), so the two can be told
apart; `speed` is the figure to plan with (measured.correct): measured here when this model was, else the
estimate corrected by similar models measured here, else the estimate.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..system import backends, hardware
from ..system.errors import LocalModelsError
from ..system.hardware import Hardware
from . import fit, gguf_meta, measured, speed
from .model_shape import ModelShape, shape_from_header


@dataclass(frozen=True)
class Predicted:
    """The estimate for a model served here with fit's plan."""

    tokens_per_s: float | None
    prompt_tokens_per_s: float | None
    ram_bytes: int
    vram_bytes: int
    ctx_size: int
    parallel: int
    gpu_layers: int
    backend: str
    basis: str = measured.ESTIMATED


@dataclass(frozen=True)
class SideBySide:
    predicted: Predicted | None  # None when the file cannot be read
    measured: dict | None  # measured.to_json of this model's figure here; None when never measured
    speed: measured.SpeedFigure | None  # what to plan with, and its basis


def estimated_speed(
    shape: ModelShape, hw: Hardware, *, backend: str, gpu_layers: int, threads: int | None = None
) -> tuple[float, float | None]:
    """Generation and prompt tokens/s the estimate (speed.py) gives for a plan; -1 layers (not known) on a
    GPU backend counts as all of them, 0 threads as the machine's."""
    layers = shape.n_layer + 1 if gpu_layers < 0 else gpu_layers
    if not backends.offloads(backend):
        backend, layers = "cpu", 0
    found = speed.estimate_speed(shape, hardware=hw, backend=backend, gpu_layers=layers, threads=threads or None)
    return found.tokens_per_s, found.prompt_tokens_per_s or None


def shape_of(path: Path) -> ModelShape | None:
    """The shape of a model file, from its cached header; None when it cannot be read."""
    try:
        return shape_from_header(gguf_meta.cached_header(path))
    except (LocalModelsError, OSError, ValueError):
        return None


def predict(
    path: Path,
    *,
    hw: Hardware | None = None,
    ctx: int | None = None,
    parallel: int | None = None,
    threads: int | None = None,
) -> Predicted | None:
    """The estimate for the model file at ``path`` with fit's plan on this machine (or ``hw``), for the context
    and slots a start would ask for (None: fit's choice)."""
    hw = hw or hardware.detect()
    shape = shape_of(path)
    if shape is None:
        return None
    plan = fit.plan_server(header=shape, hardware=hw, ctx=ctx, parallel=parallel, backend=hw.best_backend)
    backend = measured.served_backend(hw, plan.gpu_layers)
    gen, prompt = estimated_speed(shape, hw, backend=backend, gpu_layers=plan.gpu_layers, threads=threads)
    return Predicted(
        tokens_per_s=gen or None,
        prompt_tokens_per_s=prompt,
        ram_bytes=plan.predicted_ram_bytes,
        vram_bytes=plan.predicted_vram_bytes,
        ctx_size=plan.ctx_size,
        parallel=plan.parallel,
        gpu_layers=plan.gpu_layers,
        backend=backend,
    )


def side_by_side(
    path: Path,
    *,
    hw: Hardware | None = None,
    ctx: int | None = None,
    parallel: int | None = None,
    threads: int | None = None,
) -> SideBySide:
    """Predicted, measured and the figure to plan with, for one model file on this machine (or ``hw``)."""
    hw = hw or hardware.detect()
    predicted = predict(path, hw=hw, ctx=ctx, parallel=parallel, threads=threads)
    backend = predicted.backend if predicted else hw.best_backend
    found = measured.lookup(path, backend=backend, hardware=hw)
    shape = shape_of(path) if predicted else None
    speed = None
    if predicted is not None and shape is not None:
        speed = measured.correct(
            predicted.tokens_per_s or 0.0, predicted.prompt_tokens_per_s, shape, backend=backend, file=path, hardware=hw
        )
    elif found is not None:
        speed = measured.SpeedFigure(found.tokens_per_s, found.prompt_tokens_per_s, measured.MEASURED)
    return SideBySide(predicted=predicted, measured=measured.to_json(found), speed=speed)
