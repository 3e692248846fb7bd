"""Where the layers go when memory is short: how many fit on the GPU, how several GPUs share them, and the
one line that says what the plan chose and why.

Pure arithmetic on what fit.py estimates: the caller passes the bytes (fixed cost per device, cost per layer)
and the free memory per GPU, so every backend (CUDA, ROCm, Vulkan, Metal) is planned by the same rules.
"""

from __future__ import annotations

from ..system import backends
from ..system.hardware import Hardware

GIB = 1 << 30


def free_per_gpu(hardware: Hardware, backend: str, margin: int) -> list[int]:
    """What each GPU the backend drives has free now, less the margin left on each (empty: none, or
    unified memory, where the GPU is the one pool)."""
    record = backends.get(backend)
    if not record or not record.offloads or hardware.unified_memory:
        return []
    gpus = [g for g in hardware.gpus if g.vram_total and (g.backend == backend or record.any_gpu)]
    return [max(0, (g.vram_free or g.vram_total) - margin) for g in gpus]


def tensor_split(free: list[int], fixed_per_gpu: int) -> tuple[float, ...]:
    """llama-server's --tensor-split for several GPUs: each GPU's share of the layers in proportion to what
    it has free beyond its own fixed cost (runtime, compute buffer). One GPU, or none: no split."""
    if len(free) < 2:
        return ()
    room = [max(0, f - fixed_per_gpu) for f in free]
    total = sum(room)
    if not total:
        return ()
    return tuple(round(r / total, 3) for r in room)


def layers_that_fit(budget: int, fixed: int, per_layer: float, n_layer: int) -> int:
    """How many repeating layers fit in ``budget`` after ``fixed`` (the runtime, the compute buffer)."""
    if per_layer <= 0:
        return n_layer
    return max(0, min(n_layer, int((budget - fixed) // per_layer)))


def choice(*, gpu_layers: int, n_layer: int, backend: str, split: tuple[float, ...], vram_free: int) -> str:
    """The plan in one line: where the layers went and why."""
    if not gpu_layers:
        return "every layer on the CPU: " + (
            "no GPU memory free for them" if backends.offloads(backend) else f"the {backend} build does not offload"
        )
    gpus, noun = len(split) or 1, "worker" if backend == "rpc" else "GPU"
    where = f"{gpus} {noun}s split {':'.join(f'{s:g}' for s in split)} by their free memory" if split else f"the {noun}"
    if gpu_layers > n_layer:
        return f"all {n_layer} layers on {where} ({backend}): they fit in {vram_free / GIB:.1f} GiB free"
    return (
        f"{gpu_layers} of {n_layer} layers on {where} ({backend}), {n_layer - gpu_layers} on the CPU: "
        f"only that many fit in {vram_free / GIB:.1f} GiB free"
    )
