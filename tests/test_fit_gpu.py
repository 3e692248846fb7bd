"""GPU memory: the estimate against what the driver reported on a real H200, the same terms for every GPU
backend, and planning under pressure (a GPU too small, two GPUs of different sizes, unified memory)."""

from __future__ import annotations

import pytest

from aidevops_local.core.models import fit, gguf_meta
from aidevops_local.core.system import backends, hardware
from tests.gpu.standin import PRESETS, model_shape, write_standin

MIB = 1 << 20
GIB = 1 << 30
STANDIN = model_shape(PRESETS["0.75b"])  # the 0.75B F16 llama of the H200 runs: 16 layers, -ngl 17 is all


def _gpus(backend: str, *sizes_gb: float, free_gb: tuple[float, ...] = (), name: str = "") -> hardware.Hardware:
    vendor = "nvidia" if backend == "cuda" else "amd"
    name = name or ("NVIDIA GeForce RTX 4090" if backend == "cuda" else "AMD Radeon RX 7900 XTX")
    gpus = []
    for i, size in enumerate(sizes_gb):
        gpu = {"vendor": vendor, "name": name, "vram_gb": size, "backend": backend}
        if i < len(free_gb):
            gpu["vram_free"] = int(free_gb[i] * GIB)
        gpus.append(gpu)
    return hardware.from_profile(
        {
            "os": "linux",
            "arch": "x64",
            "physical_cores": 16,
            "ram_gb": 64,
            "cpu_features": ["avx2"],
            "backends": [backend, "cpu"],
            "gpus": gpus,
        }
    )


def _mac(ram_gb: float, working_set_gb: float) -> hardware.Hardware:
    return hardware.from_profile(
        {
            "os": "darwin",
            "arch": "arm64",
            "physical_cores": 12,
            "ram_gb": ram_gb,
            "cpu_name": "Apple M2 Max",
            "unified_memory": True,
            "metal_working_set": int(working_set_gb * GIB),
            "backends": ["metal", "cpu"],
        }
    )


def test_standin_shape_is_what_its_file_says(tmp_path):
    """The 0.75B stand-in's shape is computed, not read (1.4 GiB); the small preset shows the two agree."""
    path = write_standin(tmp_path / "small.gguf", PRESETS["small"])
    assert fit.shape_from_header(gguf_meta.read_model(path)) == model_shape(PRESETS["small"])


# nvidia-smi per process on an NVIDIA H200 (CUDA 13.0, llama.cpp b11434), ../shared/TESTING.md.
H200_RUNS = [
    # (ctx, slots, -ngl, measured MiB)
    (8192, 2, 17, 2702),  # serve's own plan, first run
    (4096, 1, 17, 2338),
    (16384, 4, 17, 3106),
    (65536, 4, 17, 6190),
    (2048, 1, 9, 1440),  # partial: the card filled to 1800 MiB free first
]


@pytest.mark.parametrize(("ctx", "slots", "ngl", "measured_mib"), H200_RUNS)
def test_vram_on_the_h200_within_ten_percent_and_never_below(ctx, slots, ngl, measured_mib):
    est = fit.estimate_memory(STANDIN, ctx=ctx, parallel=slots, gpu_layers=ngl, backend="cuda")
    predicted = est.vram_bytes / MIB
    assert measured_mib <= predicted <= 1.10 * measured_mib, f"{predicted:.0f} MiB predicted"


def test_the_h200_plan_is_the_one_measured():
    h200 = _gpus("cuda", 140.4, name="NVIDIA H200")
    plan = fit.plan_server(header=STANDIN, hardware=h200, ctx=8192, parallel=2, backend="cuda")
    assert (plan.ctx_size, plan.parallel, plan.gpu_layers, plan.tensor_split) == (8192, 2, 17, ())
    assert 2702 <= plan.predicted_vram_bytes / MIB <= 2702 * 1.10
    assert plan.choice.startswith("all 16 layers on the GPU (cuda)")


@pytest.mark.parametrize("backend", ["cuda", "rocm", "vulkan", "metal"])
@pytest.mark.parametrize(("ctx", "slots"), [(4096, 1), (16384, 4), (65536, 4)])
def test_full_offload_adds_the_backends_runtime_and_output_stage(backend, ctx, slots):
    record = backends.get(backend)
    est = fit.estimate_memory(STANDIN, ctx=ctx, parallel=slots, gpu_layers=17, backend=backend)
    kv, _ = fit.kv_bytes(STANDIN, ctx=ctx, parallel=slots)
    compute = fit.compute_bytes(STANDIN, ctx=ctx, parallel=slots)
    assert est.kv_vram == kv and est.weights_vram == STANDIN.weights_bytes - STANDIN.embd_bytes
    assert est.overhead_vram == record.overhead_vram
    assert est.compute_vram == compute + max(record.output_stage_vram, STANDIN.n_vocab * 512 * 4)
    assert est.vram_bytes == est.weights_vram + kv + est.compute_vram + record.overhead_vram


@pytest.mark.parametrize("backend", ["cuda", "rocm", "vulkan"])
def test_partial_offload_counts_only_the_gpus_layers(backend):
    record = backends.get(backend)
    full = fit.estimate_memory(STANDIN, ctx=8192, parallel=2, gpu_layers=17, backend=backend)
    half = fit.estimate_memory(STANDIN, ctx=8192, parallel=2, gpu_layers=8, backend=backend)
    assert half.kv_vram == full.kv_vram // 2 and half.kv_ram == full.kv_vram - half.kv_vram
    assert half.weights_vram == pytest.approx(STANDIN.layer_bytes * 8, abs=1)
    assert half.compute_vram == fit.compute_bytes(STANDIN, ctx=8192, parallel=2)  # no output stage there
    assert half.overhead_vram == record.overhead_vram and half.overhead_ram > 0
    assert half.vram_bytes < full.vram_bytes and half.ram_bytes > full.ram_bytes


@pytest.mark.parametrize("backend", ["cuda", "rocm", "vulkan"])
def test_a_gpu_too_small_gets_the_layers_that_fit(backend):
    hw = _gpus(backend, 24, free_gb=(1.8,))  # a 24 GB card another program has filled
    plan = fit.plan_server(header=STANDIN, hardware=hw, ctx=None, parallel=None, backend=backend)
    assert plan.fits and 0 < plan.gpu_layers < 16
    assert plan.predicted_vram_bytes <= 1.8 * GIB - fit.VRAM_MARGIN
    one_more = fit.estimate_memory(
        STANDIN, ctx=plan.ctx_size, parallel=plan.parallel, gpu_layers=plan.gpu_layers + 1, backend=backend
    )
    assert one_more.vram_bytes > 1.8 * GIB - fit.VRAM_MARGIN or plan.ctx_size > fit.MIN_CTX
    assert f"{plan.gpu_layers} of 16 layers" in plan.choice and "on the CPU" in plan.choice
    assert any(f"only {plan.gpu_layers} of 16 layers fit" in r for r in plan.reasons)


def _big_dense() -> fit.ModelShape:
    """A 70B-class dense model at ~4.8 bits: 80 layers, ~40 GiB."""
    return fit.ModelShape(
        architecture="llama",
        n_layer=80,
        n_embd=8192,
        n_ff=28672,
        n_head=64,
        n_head_kv=8,
        head_dim_k=128,
        head_dim_v=128,
        n_vocab=128256,
        ctx_train=131072,
        weights_bytes=int(42.5e9),
        embd_bytes=int(0.6e9),
        output_bytes=int(0.9e9),
    )


@pytest.mark.parametrize("backend", ["cuda", "rocm", "vulkan"])
def test_two_gpus_of_different_sizes_split_by_free_memory(backend):
    hw = _gpus(backend, 48, 24)
    shape = _big_dense()
    plan = fit.plan_server(header=shape, hardware=hw, ctx=8192, parallel=1, backend=backend)
    assert plan.fits and plan.gpu_layers == 81
    big, small = plan.tensor_split
    assert big + small == pytest.approx(1.0, abs=0.002) and big > 2 * small > 0  # fixed costs come off each
    est = plan.estimate
    record = backends.get(backend)
    assert est.overhead_vram == 2 * record.overhead_vram  # each GPU holds a runtime and a compute buffer
    per_gpu_fixed = (est.overhead_vram + est.compute_vram) // 2
    layers = est.vram_bytes - 2 * per_gpu_fixed
    for share, free in zip(plan.tensor_split, (48 * GIB, 24 * GIB), strict=True):
        assert per_gpu_fixed + share * layers <= free - fit.VRAM_MARGIN + MIB
    assert "2 GPUs split" in plan.choice


def test_two_gpus_too_small_together_take_part_of_the_model():
    hw = _gpus("cuda", 24, 12)
    plan = fit.plan_server(header=_big_dense(), hardware=hw, ctx=None, parallel=None, backend="cuda")
    assert plan.fits and 0 < plan.gpu_layers < 80 and len(plan.tensor_split) == 2
    assert plan.predicted_vram_bytes <= 36 * GIB - 2 * fit.VRAM_MARGIN
    assert "on the CPU" in plan.choice


def test_unified_memory_offloads_all_when_the_working_set_holds_it():
    plan = fit.plan_server(header=STANDIN, hardware=_mac(32, 21), ctx=8192, parallel=1, backend="metal")
    assert plan.fits and plan.gpu_layers == 17 and plan.tensor_split == ()
    est = plan.estimate
    assert est.overhead_vram == backends.get("metal").overhead_vram
    assert est.ram_required + est.vram_bytes <= est.budget_ram  # one pool, counted once


def test_unified_memory_keeps_layers_on_the_cpu_beyond_the_working_set():
    """A Mac whose Metal working set (not its RAM) is too small for the model: the GPU gets what fits it."""
    plan = fit.plan_server(header=_big_dense(), hardware=_mac(64, 24), ctx=4096, parallel=1, backend="metal")
    assert plan.fits and 0 < plan.gpu_layers < 80
    assert plan.predicted_vram_bytes <= 24 * GIB
    assert "on the CPU" in plan.choice


def test_no_gpu_memory_free_says_so():
    plan = fit.plan_server(
        header=STANDIN, hardware=_gpus("cuda", 24, free_gb=(0.3,)), ctx=4096, parallel=1, backend="cuda"
    )
    assert plan.gpu_layers == 0 and plan.fits
    assert plan.choice.startswith("every layer on the CPU")
