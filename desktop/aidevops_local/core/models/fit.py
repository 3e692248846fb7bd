"""How much memory llama-server needs for a model at a context size, and the launch plan that fits.

The estimate follows what llama.cpp allocates, term by term, as its own log reports it (`model buffer size`,
`CPU_REPACK model buffer size`, `KV buffer size`, `compute buffer size`, `output buffer size`), plus the
process's own overhead. Each term was calibrated against the real llama-server b10068 on real and generated
models (tests/benchmarks/bench_fit.py re-measures them):

- weights: every tensor's bytes, file-backed (mmap). On x86 with AVX2 and on Arm, Q4_0/Q4_K/IQ4_NL weights
  of the layers are also repacked into an anonymous buffer; right after loading, the file pages that were
  read for the repack stay resident too (clean pages the kernel drops under pressure: `reclaimable`).
- KV cache: per layer, cells x KV heads x head dim x 2 (K and V) x the cache type's size. Cells are the
  context padded to 256 (flash attention). Once -np is given, llama-server splits the context: each slot
  gets its own ctx / slots cells, unless -kvu makes them share it. Sliding-window layers keep only the
  window (x slots when shared) plus one batch.
- compute buffer: the largest set of live activations for one 512-token batch, ~4 B x 512 x
  max(5 x n_embd, 1.5 x n_embd + 3.33 x n_ff), plus the f16 attention masks (one slot's cells x batch). Its pages are
  touched only by long prompts, so a freshly loaded server does not show them yet (`resident_at_load`).
- output buffer: one float per vocabulary entry per slot.
- overhead: ~29 MiB for the process and the CPU backend, plus ~180 B per vocabulary token and ~150 B per BPE
  merge for the tokenizer. GPU backends add their runtime's own, on the host and on each device used (the
  CUDA context, kernels, cuBLAS workspace and memory pool: measured on an H200), and device buffers for the
  output stage when the output layer is offloaded (at least the logits of a batch); their entries in
  core/system/backends.py say where each figure comes from. Several GPUs each hold a compute buffer.
- not counted: llama-server's prompt cache (`--cache-ram`, 8 GiB by default), which grows as requests come;
  `ServerPlan.cache_ram_mib` says how much the plan leaves room for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

from ..system import backends
from ..system.hardware import Hardware
from . import offload, speed
from .fit_terms import MIB, UBATCH, compute_bytes, kv_bytes
from .gguf_meta import GgufHeader
from .model_shape import ModelShape, guess_shape, shape_from_header

__all__ = [
    "MemoryEstimate",
    "ModelShape",
    "ServerPlan",
    "compute_bytes",
    "estimate_memory",
    "guess_shape",
    "kv_bytes",
    "plan_server",
    "shape_from_header",
    "tokens_per_second",
]

GIB = 1 << 30
BASE_OVERHEAD = 29 * MIB
VOCAB_BYTES = 180  # tokenizer memory per vocabulary entry
MERGE_BYTES = 150  # and per BPE merge
MIN_CTX = 2048
DEFAULT_CTX = 4096  # used when a caller gives no context (listings, search marks)
RAM_MARGIN = 1 * GIB  # left for the rest of the system when planning against available memory
VRAM_MARGIN = 512 * MIB


@dataclass(frozen=True)
class MemoryEstimate:
    ctx: int
    parallel: int
    gpu_layers: int
    backend: str
    weights_ram: int
    weights_vram: int
    repack_ram: int
    kv_ram: int
    kv_vram: int
    compute_ram: int
    compute_vram: int
    output_ram: int
    overhead_ram: int
    overhead_vram: int
    reclaimable_ram: int  # file pages read once (for the repack): resident after load, dropped under pressure
    fits: bool | None = None  # against the hardware it was asked about; None when none was given
    budget_ram: int = 0
    budget_vram: int = 0
    kv_unified: bool = False

    @property
    def weights(self) -> int:
        return self.weights_ram + self.weights_vram + self.repack_ram

    @property
    def kv_cache(self) -> int:
        return self.kv_ram + self.kv_vram

    @property
    def compute_buffer(self) -> int:
        return self.compute_ram + self.compute_vram

    @property
    def overhead(self) -> int:
        return self.overhead_ram + self.overhead_vram + self.output_ram

    @property
    def ram_bytes(self) -> int:
        """System memory once requests have filled the batch buffers (what RSS shows under load)."""
        return self.weights_ram + self.repack_ram + self.kv_ram + self.compute_ram + self.output_ram + self.overhead_ram

    @property
    def vram_bytes(self) -> int:
        return self.weights_vram + self.kv_vram + self.compute_vram + self.overhead_vram

    @property
    def ram_required(self) -> int:
        """System memory the server cannot do without (ram_bytes less reclaimable file pages)."""
        return self.ram_bytes - self.reclaimable_ram

    @property
    def resident_at_load(self) -> int:
        """RSS right after loading and a short request: the compute buffer is allocated but not yet touched."""
        return self.ram_bytes - self.compute_ram

    @property
    def total_bytes(self) -> int:
        return self.ram_required + self.vram_bytes


@dataclass(frozen=True)
class ServerPlan:
    ctx_size: int
    parallel: int
    gpu_layers: int
    predicted_ram_bytes: int
    predicted_vram_bytes: int
    reasons: tuple[str, ...]
    fits: bool = True
    cache_ram_mib: int = 0  # room left for llama-server's prompt cache (--cache-ram), MiB
    kv_unified: bool = False  # planned for -kvu (slots share the context) or not (ctx / parallel each)
    estimate: MemoryEstimate | None = None
    tensor_split: tuple[float, ...] = ()  # several GPUs: each one's share of the layers (--tensor-split)
    choice: str = ""  # one line: where the layers went and why


# ---- the estimate -----------------------------------------------------------------------------------------


def _repacks(hardware: Hardware | None) -> bool:
    """Whether this CPU gets the repacked kernels (AVX2 on x86; Arm always)."""
    if hardware is None:
        return True
    if hardware.arch == "arm64":
        return True
    return "avx2" in hardware.cpu_features


def estimate_memory(
    model: GgufHeader | ModelShape | Path | str,
    *,
    ctx: int | None = None,
    parallel: int = 1,
    gpu_layers: int = 0,
    backend: str = "cpu",
    kv_type: str = "f16",
    kv_unified: bool = False,
    hardware: Hardware | None = None,
    devices: int = 1,
) -> MemoryEstimate:
    """Memory llama-server needs for ``model`` at ``ctx`` (default: 4096, or the trained context if smaller)
    with ``gpu_layers`` offloaded (n_layer + 1 or more: all, output layer included) and ``parallel`` slots
    (each with its own ctx / parallel cells unless ``kv_unified``, as llama-server's -kvu). With ``hardware``,
    ``fits`` says whether it fits there (against total memory: a listing, not a launch). ``devices``: the GPUs
    the offloaded layers are split across (each holds the runtime's overhead and a compute buffer)."""
    shape = _shape(model)
    ctx = ctx or min(DEFAULT_CTX, shape.ctx_train or DEFAULT_CTX)
    parallel = max(1, parallel)
    if not backends.offloads(backend):
        gpu_layers = 0
    offloaded = min(max(0, gpu_layers), shape.n_layer)
    output_on_gpu = gpu_layers > shape.n_layer
    kv_total, _ = kv_bytes(shape, ctx=ctx, parallel=parallel, kv_type=kv_type, unified=kv_unified)
    kv_gpu = kv_total * offloaded // max(1, shape.n_layer)
    weights_gpu = int(shape.layer_bytes * offloaded) + (shape.output_bytes if output_on_gpu else 0)
    weights_cpu = shape.weights_bytes - weights_gpu
    cpu_share = (shape.n_layer - offloaded) / max(1, shape.n_layer)
    repack = int(shape.repack_bytes * cpu_share) if _repacks(hardware) else 0
    compute = compute_bytes(shape, ctx=ctx, parallel=parallel, unified=kv_unified)
    on_gpu = offloaded > 0
    host_compute = 4 * UBATCH * shape.n_embd * 2 + MIB if on_gpu else compute
    extra_ram, extra_vram, output_stage = _runtime(backend if on_gpu else "cpu", shape, devices, output_on_gpu)
    estimate = MemoryEstimate(
        ctx=ctx,
        parallel=parallel,
        gpu_layers=gpu_layers if on_gpu else 0,
        backend=backend if on_gpu else "cpu",
        weights_ram=weights_cpu,
        weights_vram=weights_gpu,
        repack_ram=repack,
        kv_ram=kv_total - kv_gpu,
        kv_vram=kv_gpu,
        compute_ram=host_compute,
        compute_vram=compute * max(1, devices) + output_stage if on_gpu else 0,
        output_ram=shape.n_vocab * 4 * parallel,
        overhead_ram=BASE_OVERHEAD + VOCAB_BYTES * shape.n_vocab + MERGE_BYTES * shape.n_merges + extra_ram,
        overhead_vram=extra_vram,
        reclaimable_ram=repack,
        kv_unified=kv_unified,
    )
    if hardware is None:
        return estimate
    budget_ram, budget_vram = budgets(hardware, backend, planning=False)
    fits = _fits(estimate, hardware, budget_ram, budget_vram)
    return replace(estimate, budget_ram=budget_ram, budget_vram=budget_vram, fits=fits)


def _runtime(backend: str, shape: ModelShape, devices: int, output_on_gpu: bool) -> tuple[int, int, int]:
    """A GPU backend's (host overhead, device overhead on every device used, output-stage buffers)."""
    record = backends.get(backend)
    if record is None or not record.offloads:
        return 0, 0, 0
    output_stage = max(record.output_stage_vram, shape.n_vocab * UBATCH * 4) if output_on_gpu else 0
    return record.overhead_ram, record.overhead_vram * max(1, devices), output_stage


def _shape(model) -> ModelShape:
    if isinstance(model, ModelShape):
        return model
    if isinstance(model, GgufHeader):
        return shape_from_header(model)
    from .gguf_meta import read_model

    return shape_from_header(read_model(Path(model)))


def budgets(hardware: Hardware, backend: str, *, planning: bool = False) -> tuple[int, int]:
    """(RAM, VRAM) the server may use. Planning a launch counts what is available now; a listing or a
    recommendation counts what the machine has, less room for the system and a browser."""
    mem = hardware.memory
    ram = (mem.available - RAM_MARGIN) if planning else (mem.total - max(2 * GIB, mem.total // 4))
    vram = 0
    record = backends.get(backend)
    if record and record.offloads:
        if hardware.unified_memory:
            vram = hardware.gpu_working_set
        else:
            gpus = [g for g in hardware.gpus if g.vram_total and (g.backend == backend or record.any_gpu)]
            vram = sum((g.vram_free or g.vram_total) if planning else g.vram_total for g in gpus)
            vram = max(0, vram - VRAM_MARGIN * len(gpus))
    return max(0, ram), vram


def _fits(estimate: MemoryEstimate, hardware: Hardware, budget_ram: int, budget_vram: int) -> bool:
    if hardware.unified_memory:
        # One pool: everything must fit in RAM, and the GPU's share in Metal's working set.
        return estimate.ram_required + estimate.vram_bytes <= budget_ram and estimate.vram_bytes <= (
            budget_vram or hardware.gpu_working_set
        )
    return estimate.ram_required <= budget_ram and estimate.vram_bytes <= budget_vram


# ---- the launch plan --------------------------------------------------------------------------------------


def _ctx_candidates(shape: ModelShape, floor: int) -> list[int]:
    """Largest first: the trained context, then powers of two down to the floor."""
    top = shape.ctx_train or 32768
    out = [top]
    size = 1 << int(math.log2(top))
    while size >= floor:
        if size < top:
            out.append(size)
        size //= 2
    return out or [floor]


def _contexts(shape: ModelShape, ctx: int | None, reasons: list[str]) -> list[int]:
    """The contexts to try, largest first: the one asked for, else the trained context and down."""
    if not ctx:
        return _ctx_candidates(shape, min(MIN_CTX, shape.ctx_train or MIN_CTX))
    if shape.ctx_train and ctx > shape.ctx_train:
        reasons.append(f"context {ctx} is beyond the model's trained {shape.ctx_train}; quality may drop")
    return [ctx]


def auto_parallel(ctx: int) -> int:
    """Slots: one per 4096 tokens of context, at most 4, so every slot keeps at least 4096 tokens when the
    context is split between slots."""
    return max(1, min(4, ctx // 4096))


def plan_server(
    *,
    header: GgufHeader | ModelShape,
    hardware: Hardware,
    ctx: int | None,
    parallel: int | None,
    backend: str,
    kv_unified: bool = False,
) -> ServerPlan:
    """-c, -np and -ngl for llama-server: GPU offload when the build has a GPU backend and the machine a
    GPU (all layers if they fit, else as many as fit), then the largest context that fits with a margin,
    capped at the model's trained context. ``kv_unified`` says whether llama-server will run with -kvu (all
    slots share the context) or not (each slot gets ctx / parallel: llama-server's default once -np is
    given). Pure arithmetic: cheap enough for every start."""
    shape = _shape(header)
    reasons: list[str] = []
    budget_ram, budget_vram = budgets(hardware, backend, planning=True)
    candidates = _contexts(shape, ctx, reasons)
    gpu = backends.offloads(backend) and (budget_vram > 0 or hardware.unified_memory)
    free = offload.free_per_gpu(hardware, backend, VRAM_MARGIN)
    devices = max(1, len(free))

    def attempt(c: int, ngl: int) -> MemoryEstimate:
        slots = parallel or auto_parallel(c)
        est = estimate_memory(
            shape, ctx=c, parallel=slots, gpu_layers=ngl, backend=backend, kv_unified=kv_unified, devices=devices
        )
        return replace(
            est, budget_ram=budget_ram, budget_vram=budget_vram, fits=_fits(est, hardware, budget_ram, budget_vram)
        )

    def done(est: MemoryEstimate) -> ServerPlan:
        split = offload.tensor_split(free, (est.overhead_vram + est.compute_vram) // devices) if est.gpu_layers else ()
        line = offload.choice(
            gpu_layers=est.gpu_layers, n_layer=shape.n_layer, backend=backend, split=split, vram_free=budget_vram
        )
        plan = _plan(est, reasons + _why(est, shape, ctx, parallel))
        return replace(plan, tensor_split=split, choice=line)

    for ngl in [shape.n_layer + 1, -1, 0] if gpu else [0]:
        if ngl < 0:
            # Not everything fits on the GPU(s): as many layers there as fit at the smallest context, the rest
            # on the CPU; then the largest context that fits with that split.
            c = candidates[-1]
            per_layer = shape.layer_bytes + kv_bytes(shape, ctx=c, parallel=parallel or 1, unified=kv_unified)[1]
            fixed = attempt(c, 1).vram_bytes - int(per_layer)
            ngl = offload.layers_that_fit(budget_vram, fixed, per_layer, shape.n_layer)
            if not ngl:
                continue
        for c in candidates:
            est = attempt(c, ngl)
            if est.fits:
                return done(est)
    reasons.append(
        f"the model needs about {est.ram_required / GIB:.1f} GiB but about "
        f"{budget_ram / GIB:.1f} GiB is free; expect swapping, or pick a smaller quant or model"
    )
    plan = _plan(replace(est, fits=False), reasons)
    return replace(plan, choice="every layer on the CPU, and even so it does not fit: " + reasons[-1])


def _why(est: MemoryEstimate, shape: ModelShape, ctx: int | None, parallel: int | None) -> list[str]:
    out = []
    if est.gpu_layers:
        out.append(
            f"all {shape.n_layer} layers on the GPU ({est.backend})"
            if est.gpu_layers > shape.n_layer
            else f"only {est.gpu_layers} of {shape.n_layer} layers fit in GPU memory ({est.backend}); "
            "the rest run on the CPU"
        )
    if not ctx:
        if shape.ctx_train and est.ctx >= shape.ctx_train:
            out.append(f"context {est.ctx}: the model's full trained context fits")
        else:
            out.append(
                f"context {est.ctx}: the largest that fits with a safety margin "
                f"(the model was trained for {shape.ctx_train})"
            )
    if not parallel:
        out.append(f"{est.parallel} parallel slot(s) of {est.ctx // est.parallel} tokens each")
    return out


def _plan(est: MemoryEstimate, reasons: list[str]) -> ServerPlan:
    spare = max(0, est.budget_ram - est.ram_required)
    return ServerPlan(
        ctx_size=est.ctx,
        parallel=est.parallel,
        gpu_layers=est.gpu_layers,
        predicted_ram_bytes=est.ram_bytes,
        predicted_vram_bytes=est.vram_bytes,
        reasons=tuple(reasons),
        fits=bool(est.fits),
        cache_ram_mib=int(min(8192, spare // 2 // MIB)),
        kv_unified=est.kv_unified,
        estimate=est,
    )


def tokens_per_second(shape: ModelShape, *, hardware: Hardware, on_gpu: bool) -> float:
    """Generated tokens/s with every layer on the best GPU backend (``on_gpu``) or on the CPU: speed.py's
    estimate (launch-bound small models, bandwidth-bound dense ones, MoE routing)."""
    backend = hardware.best_backend if on_gpu else "cpu"
    gpu_layers = shape.n_layer + 1 if on_gpu else 0
    return speed.estimate_speed(shape, hardware=hardware, backend=backend, gpu_layers=gpu_layers).tokens_per_s
