"""How fast llama-server will generate and read a prompt: one model for small, dense and mixture-of-experts
models, on the CPU, a GPU, or both (a partial offload).

Generating one token costs, on each device that holds layers,

    fixed per token  +  layers x (per-layer cost [+ routing cost for a mixture of experts])
                     +  max(bytes of weights read per token / (efficiency x memory bandwidth),
                            FLOPs per token / the device's matrix-vector FLOPS)

The first two are what bounds a small model on a big card (kernel launches, graph building, sampling: a
0.75B F16 llama on an H200 gives 865 tok/s, where its bandwidth alone would allow ~3000); the reads bound a
dense model (every active weight is read once a token); on a CPU with few threads the arithmetic of the
matrix-vector products can take longer than the reads (this machine's two cores do). A mixture of experts
reads only its active experts, but pays for routing and gathering in every layer: 30B-A3B on a 4090 runs at
~162 tok/s where the bandwidth bound is ~540. The bytes read skip the token embeddings (one row a token)
unless the output layer is tied to them. Reading a prompt is compute-bound: 2 FLOPs per active weight per
token, over the device's effective FLOPS, plus a small per-token cost.

The figures per backend were calibrated against llama-server on this project's 2-core test machines (three
models, 1 and 2 threads, an AVX-512 and an AVX2 EPYC), the H200 run, and published llama.cpp figures
(tests/test_speed.py lists them all with what this model predicts); ROCm and Vulkan have no measurement
behind them and take CUDA's with more cost per layer. A figure from a run on this machine (models/measured.py)
beats this estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..system.hardware import Hardware
from .model_shape import ModelShape

PROMPT_BATCH = 512  # tokens a prompt is read in (llama-server's -ub)
DEFAULT_GPU_GBS = 300.0  # a GPU whose bandwidth is not known
CPU_GBS_PER_THREAD = 10.0  # what one core pulls from memory in a decode loop
PCIE_GBS = 25.0  # a partial offload's prompt batches copy the CPU layers' weights to the GPU


@dataclass(frozen=True)
class DeviceFacts:
    """A backend's costs: fixed per token and per layer (ms), routing per MoE layer (ms), the share of the
    memory bandwidth a decode loop reaches, and of the FLOPS a prompt batch reaches."""

    token_ms: float
    layer_ms: float
    moe_layer_ms: float
    bandwidth_efficiency: float
    flops_efficiency: float


# The CPU's costs, by class of machine: measured with llama-server b10068 on two 2-core EPYC test machines.
# Their fixed costs differ threefold (the tiny model: 4,500 tok/s on the AVX-512 one, 11,000-15,600 on the AVX2 one)
# for reasons outside the model's terms, so each class keeps its own; a run here corrects either (measured.py).
CPU_FACTS = {
    # AVX-512: tiny model 4500 tok/s, SmolLM2 135 (30 layers), Gemma 3 270M 75 (18 layers), 2 threads.
    "avx512": DeviceFacts(
        token_ms=0.1, layer_ms=0.05, moe_layer_ms=0.05, bandwidth_efficiency=1.0, flops_efficiency=1.0
    ),
    # AVX2 (Zen 2) and everything else: tiny 10,600-15,600 tok/s from run to run, SmolLM2 122, Gemma 3 270M 64,
    # 2 threads.
    "avx2": DeviceFacts(
        token_ms=0.05, layer_ms=0.005, moe_layer_ms=0.05, bandwidth_efficiency=1.0, flops_efficiency=1.0
    ),
}
FACTS = {  # the GPU backends
    # CUDA: H200 0.75B F16 865 tok/s; RTX 3080 Llama 8B 112; RTX 4090 30B-A3B 162 and gpt-oss 20B 186.
    "cuda": DeviceFacts(
        token_ms=0.25, layer_ms=0.03, moe_layer_ms=0.055, bandwidth_efficiency=0.84, flops_efficiency=0.9
    ),
    # Metal: M1 Max / M4 / M4 Pro dense, M2 Ultra and M1 Pro MoE; the efficiency is per chip (_apple_efficiency).
    "metal": DeviceFacts(
        token_ms=0.25, layer_ms=0.03, moe_layer_ms=0.12, bandwidth_efficiency=0.8, flops_efficiency=0.67
    ),
    # Not measured: CUDA's model with more per layer and less of the bandwidth (err slow).
    "rocm": DeviceFacts(
        token_ms=0.3, layer_ms=0.045, moe_layer_ms=0.08, bandwidth_efficiency=0.7, flops_efficiency=0.4
    ),
    "vulkan": DeviceFacts(
        token_ms=0.3, layer_ms=0.05, moe_layer_ms=0.1, bandwidth_efficiency=0.7, flops_efficiency=0.35
    ),
}
MOE_FLOPS_SHARE = 0.6  # a MoE's prompt reaches this share of a dense model's FLOPS (expert gathering)
DECODE_FLOPS_SHARE = 0.6  # one token's matrix-vector products reach this share of a batch's (CPU, measured)
PROMPT_TOKEN_MS = 0.025  # per prompt token, the batch's fixed costs (the tiny model reads 33,000-42,000 tok/s)

_GPU_TFLOPS = (  # dense FP16 with FP32 accumulation, by marketing name (first match wins)
    ("H200", 989.0),
    ("H100", 756.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("A6000", 155.0),
    ("L4", 121.0),
    ("T4", 65.0),
    ("A10", 125.0),
    ("5090", 209.0),
    ("5080", 113.0),
    ("4090", 165.0),
    ("4080", 97.0),
    ("4070", 58.0),
    ("4060", 30.0),
    ("3090", 71.0),
    ("3080", 59.5),
    ("3070", 40.6),
    ("3060", 25.6),
    ("2080", 40.0),
    ("7900 XTX", 123.0),
    ("7900 XT", 103.0),
    ("MI300", 1307.0),
    ("MI250", 362.0),
)
_APPLE_TFLOPS = (
    ("M4 Max", 17.0),
    ("M4 Pro", 9.2),
    ("M4", 4.3),
    ("M3 Ultra", 28.0),
    ("M3 Max", 14.2),
    ("M3 Pro", 7.4),
    ("M3", 4.1),
    ("M2 Ultra", 27.2),
    ("M2 Max", 13.6),
    ("M2 Pro", 6.8),
    ("M2", 3.6),
    ("M1 Ultra", 21.0),
    ("M1 Max", 10.4),
    ("M1 Pro", 5.2),
    ("M1", 2.6),
)


@dataclass(frozen=True)
class SpeedEstimate:
    tokens_per_s: float  # generated, one stream
    prompt_tokens_per_s: float  # read, in batches of 512
    basis: str = "estimated"  # or "measured here" (models/measured.py corrects an estimate by a run)
    bound: str = ""  # what limits generation: "fixed costs" (launches, sampling) or "weights" (reading them)


def _lookup(table, name: str) -> float:
    for key, value in table:
        if key.lower() in name.lower():
            return value
    return 0.0


def _apple_efficiency(cpu_name: str) -> float:
    """The share of its bandwidth an Apple GPU reaches decoding: the M1 generation ~57% (the M1 Max's 400 GB/s
    are not reachable from its GPU), Ultras ~65% (two dies), later chips ~80%."""
    if "M1" in cpu_name:
        return 0.57
    return 0.65 if "Ultra" in cpu_name else FACTS["metal"].bandwidth_efficiency


def _avx512(hw: Hardware) -> bool:
    return bool({"avx512f", "amx_tile"} & set(hw.cpu_features))


def _cpu_gflops_per_thread(hw: Hardware) -> float:
    """Quantized matrix products per core, a prompt batch's: measured ~40 GFLOPS on the AVX-512 EPYC, ~28 on
    the AVX2 one (SmolLM2's Q4_1 reads slower than that, Gemma 3's Q5_0 and repacked Q4_K faster)."""
    if _avx512(hw):
        return 40.0
    if "avx2" in hw.cpu_features or hw.arch == "arm64":
        return 28.0
    return 10.0


@dataclass(frozen=True)
class _Device:
    facts: DeviceFacts
    gbs: float  # effective bandwidth, GB/s
    tflops: float  # effective, for prompts


def _gpu_device(hw: Hardware, backend: str) -> _Device:
    facts = FACTS.get(backend, FACTS["vulkan"])
    if hw.unified_memory:
        gbs = (hw.ram_bandwidth_gbs or 100.0) * _apple_efficiency(hw.cpu_name)
        tflops = _lookup(_APPLE_TFLOPS, hw.cpu_name) or 4.0
        return _Device(facts, gbs, tflops * facts.flops_efficiency)
    gpus = [g for g in hw.gpus if g.vram_total]
    best = max(gpus, key=lambda g: g.bandwidth_gbs, default=None)
    raw = (best.bandwidth_gbs if best else 0.0) or DEFAULT_GPU_GBS
    tflops = (_lookup(_GPU_TFLOPS, best.name) if best else 0.0) or raw * 0.1  # unknown: ~100 FLOPs a byte
    return _Device(facts, raw * facts.bandwidth_efficiency, tflops * facts.flops_efficiency)


def _cpu_device(hw: Hardware, threads: int) -> _Device:
    facts = CPU_FACTS["avx512" if _avx512(hw) else "avx2"]
    total = hw.ram_bandwidth_gbs or 20.0
    gbs = min(total, CPU_GBS_PER_THREAD * threads) * facts.bandwidth_efficiency
    return _Device(facts, gbs, threads * _cpu_gflops_per_thread(hw) / 1000 * facts.flops_efficiency)


def _layer_params(shape: ModelShape) -> float:
    """Weights one token multiplies by in one layer (active experts only)."""
    q_out = shape.n_head * shape.head_dim_k
    kv_out = shape.n_head_kv * (shape.head_dim_k + shape.head_dim_v)
    return shape.n_embd * (2 * q_out + kv_out) + 3 * shape.n_embd * shape.n_ff


def _read_bytes(shape: ModelShape) -> tuple[float, float]:
    """(bytes read per token by the repeating layers, by the output layer)."""
    moe = shape.active_fraction < 1.0
    layers = shape.layer_bytes * (_moe_layer_share(shape) if moe else 1.0) * shape.n_layer
    output = shape.output_bytes or shape.embd_bytes  # tied: the embeddings are the output layer
    if not shape.embd_bytes and not shape.output_bytes:  # only a size is known (a guessed shape)
        layers = shape.active_bytes * 0.9
        output = shape.active_bytes * 0.1
    return layers, float(output)


def _moe_layer_share(shape: ModelShape) -> float:
    """The share of a layer's bytes a token reads, from the model's active share of all its weights."""
    fixed = shape.embd_bytes + shape.output_bytes
    if shape.weights_bytes <= fixed:
        return shape.active_fraction
    active_layers = shape.active_bytes - fixed
    return max(0.0, min(1.0, active_layers / (shape.weights_bytes - fixed)))


def _decode_ms(shape: ModelShape, dev: _Device, layers: int, output: bool, read_bytes: float, first: bool) -> float:
    """One token's time on one device: its layers (and the output layer when ``output``)."""
    moe = shape.active_fraction < 1.0
    per_layer = dev.facts.layer_ms + (dev.facts.moe_layer_ms if moe else 0.0)
    fixed = dev.facts.token_ms if first else 0.0
    flops = 2 * (layers * _layer_params(shape) + (shape.n_vocab * shape.n_embd if output else 0))
    reading = read_bytes / (dev.gbs * 1e6)
    computing = flops / (dev.tflops * DECODE_FLOPS_SHARE * 1e9)
    return fixed + layers * per_layer + max(reading, computing)


def estimate_speed(
    shape: ModelShape,
    *,
    hardware: Hardware,
    backend: str = "cpu",
    gpu_layers: int = 0,
    threads: int | None = None,
) -> SpeedEstimate:
    """Tokens/s generated and read for ``shape`` with ``gpu_layers`` offloaded to ``backend`` (n_layer + 1:
    all, output included) and ``threads`` CPU threads (default: the machine's, hardware.threads)."""
    threads = max(1, threads or hardware.threads)
    offloaded = min(max(0, gpu_layers), shape.n_layer) if backend != "cpu" else 0
    output_on_gpu = offloaded and gpu_layers > shape.n_layer
    cpu = _cpu_device(hardware, threads)
    gpu = _gpu_device(hardware, backend) if offloaded else None
    layer_bytes, output_bytes = _read_bytes(shape)
    per_layer = layer_bytes / max(1, shape.n_layer)
    cpu_layers = shape.n_layer - offloaded
    ms = 0.0
    if gpu is not None:
        gpu_bytes = per_layer * offloaded + (output_bytes if output_on_gpu else 0)
        ms += _decode_ms(shape, gpu, offloaded, bool(output_on_gpu), gpu_bytes, True)
    if cpu_layers or not output_on_gpu:
        cpu_bytes = per_layer * cpu_layers + (0 if output_on_gpu else output_bytes)
        ms += _decode_ms(shape, cpu, cpu_layers, not output_on_gpu, cpu_bytes, gpu is None)
    fixed_ms = ms - (layer_bytes + output_bytes) / ((gpu or cpu).gbs * 1e6)
    bound = "fixed costs" if fixed_ms > ms / 2 else "weights"
    return SpeedEstimate(
        tokens_per_s=round(1000.0 / ms, 1) if ms > 0 else 0.0,
        prompt_tokens_per_s=_prompt_speed(shape, cpu, gpu, offloaded, per_layer),
        bound=bound,
    )


def _prompt_speed(
    shape: ModelShape, cpu: _Device, gpu: _Device | None, offloaded: int, per_layer_bytes: float
) -> float:
    """Prompt tokens/s: FLOPs per token over the effective FLOPS of each device, for its layers. CPU layers
    of a partial offload go to the GPU too, when copying their weights over PCIe costs less than the CPU's
    own arithmetic (llama.cpp offloads a large batch's products that way)."""
    moe = shape.active_fraction < 1.0
    flops_layer = 2 * _layer_params(shape)
    cpu_layers = shape.n_layer - offloaded
    ms = PROMPT_TOKEN_MS
    if gpu is not None:
        tflops = gpu.tflops * (MOE_FLOPS_SHARE if moe else 1.0)
        ms += offloaded * flops_layer / (tflops * 1e9)
        gpu_way = cpu_layers * per_layer_bytes / (PCIE_GBS * 1e6) / PROMPT_BATCH
    else:
        gpu_way = float("inf")
    cpu_way = cpu_layers * flops_layer / (cpu.tflops * (MOE_FLOPS_SHARE if moe else 1.0) * 1e9)
    ms += min(cpu_way, gpu_way) if cpu_layers else 0.0
    return round(1000.0 / ms, 1) if ms > 0 else 0.0
