"""The speed model against measured speeds: the three test models on this machine's CPU, the published
llama.cpp figures per card (tests/speed_rows.py), and the H200 run. Pure arithmetic: the measurements are
data here (tests/benchmarks/bench_fit.py re-measures the CPU ones)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from aidevops_local.core.models import fit, gguf_meta, speed
from aidevops_local.core.system import hardware
from tests.gpu.standin import PRESETS, model_shape
from tests.speed_rows import GPT_OSS_20B_MXFP4, QWEN3_30B_A3B_Q4_0, nvidia, published_rows

GOAL = 0.25


def _test_machine(features: list[str]) -> hardware.Hardware:
    """A test machine as measured: 2 cores of an EPYC, no GPU."""
    return hardware.from_profile(
        {
            "os": "linux",
            "arch": "x64",
            "physical_cores": 2,
            "ram_gb": 8,
            "cpu_features": features,
            "backends": ["cpu"],
        }
    )


AVX512 = ["avx2", "avx512f"]
AVX2 = ["avx2", "fma"]
# Generated and prompt tokens/s measured with llama-server b10068 on two test machines (TESTING.md, README,
# 1-thread runs of 128 tokens after a ~600-token prompt, bench_fit's 64 tokens after a ~500-token prompt):
# (CPU, model fixture, threads, generated, prompt or 0 when not measured). On the AVX2 machine one thread
# reads prompts at a speed that depends on the quant more than the model says (Q4_1 slow, Q5_0 fast): left out.
CPU_RUNS = [
    ("avx512", "tiny_gguf", 2, 4500, 0),
    ("avx512", "smollm2_gguf", 2, 135, 0),
    ("avx512", "gemma3_gguf", 2, 75, 0),
    ("avx512", "smollm2_gguf", 1, 80, 174),
    ("avx512", "gemma3_gguf", 1, 45, 225),
    ("avx2", "tiny_gguf", 2, 13000, 38000),
    ("avx2", "tiny_gguf", 1, 12500, 0),
    ("avx2", "smollm2_gguf", 2, 122, 222),
    ("avx2", "smollm2_gguf", 1, 82, 0),
    ("avx2", "gemma3_gguf", 2, 64, 351),
    ("avx2", "gemma3_gguf", 1, 41, 0),
]


@pytest.mark.parametrize(("cpu", "fixture", "threads", "generated", "prompt"), CPU_RUNS)
def test_cpu_speed_within_a_quarter_of_measured(request, cpu, fixture, threads, generated, prompt):
    shape = fit.shape_from_header(gguf_meta.read_model(request.getfixturevalue(fixture)))
    machine = _test_machine(AVX512 if cpu == "avx512" else AVX2)
    est = speed.estimate_speed(shape, hardware=machine, threads=threads)
    assert abs(est.tokens_per_s / generated - 1) <= GOAL, est
    if prompt:
        assert abs(est.prompt_tokens_per_s / prompt - 1) <= GOAL, est
    assert est.basis == "estimated"


@pytest.mark.parametrize("row", published_rows(), ids=lambda r: f"{r.machine}-{r.model}")
def test_published_gpu_speeds_within_a_quarter(row):
    est = speed.estimate_speed(row.shape, hardware=row.hardware, backend=row.backend, gpu_layers=row.shape.n_layer + 1)
    assert abs(est.tokens_per_s / row.tokens_per_s - 1) <= GOAL, est
    if row.prompt_tokens_per_s:
        assert abs(est.prompt_tokens_per_s / row.prompt_tokens_per_s - 1) <= GOAL, est


def test_a_small_model_on_a_big_card_is_launch_bound():
    """The H200 run: 865 tok/s for the 0.75B F16 stand-in, where its bandwidth alone allows ~3000."""
    h200 = nvidia("NVIDIA H200", 140)
    est = speed.estimate_speed(model_shape(PRESETS["0.75b"]), hardware=h200, backend="cuda", gpu_layers=17)
    assert abs(est.tokens_per_s / 865 - 1) <= GOAL and est.bound == "fixed costs"


def test_a_mixture_of_experts_runs_far_below_its_bandwidth_bound():
    card = nvidia("NVIDIA GeForce RTX 4090", 24)
    est = speed.estimate_speed(QWEN3_30B_A3B_Q4_0, hardware=card, backend="cuda", gpu_layers=49)
    bound = 1008e9 / QWEN3_30B_A3B_Q4_0.active_bytes
    assert est.tokens_per_s < 0.5 * bound
    dense = replace(QWEN3_30B_A3B_Q4_0, active_fraction=1.0, n_ff=768 * 128)
    dense_speed = speed.estimate_speed(dense, hardware=card, backend="cuda", gpu_layers=49).tokens_per_s
    assert est.tokens_per_s > 3 * dense_speed  # yet far faster than reading every expert


def test_a_partial_offload_is_between_cpu_and_gpu():
    card = nvidia("NVIDIA GeForce RTX 4090", 24)
    cpu = speed.estimate_speed(GPT_OSS_20B_MXFP4, hardware=card, backend="cpu")
    half = speed.estimate_speed(GPT_OSS_20B_MXFP4, hardware=card, backend="cuda", gpu_layers=12)
    full = speed.estimate_speed(GPT_OSS_20B_MXFP4, hardware=card, backend="cuda", gpu_layers=25)
    assert cpu.tokens_per_s < half.tokens_per_s < full.tokens_per_s
    assert cpu.prompt_tokens_per_s < half.prompt_tokens_per_s < full.prompt_tokens_per_s


def test_fit_tokens_per_second_is_the_speed_model(smollm2_gguf):
    shape = fit.shape_from_header(gguf_meta.read_model(smollm2_gguf))
    hw = _test_machine(AVX512)
    expected = speed.estimate_speed(shape, hardware=hw).tokens_per_s
    assert fit.tokens_per_second(shape, hardware=hw, on_gpu=False) == expected
