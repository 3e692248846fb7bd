"""Model shapes and machines of the published llama.cpp speeds (../shared/CATALOG.md) and the H200 run, for
tests/test_speed.py and tests/gpu/check.py: enough of each model's shape for the speed model, from its config."""

from __future__ import annotations

from dataclasses import dataclass

from aidevops_local.core.models.model_shape import ModelShape
from aidevops_local.core.system import hardware


def _dense(n_layer, n_embd, n_ff, n_head, n_head_kv, head_dim, n_vocab, file_bytes, embd_bpw, out_bpw, arch="llama"):
    return ModelShape(
        architecture=arch,
        n_layer=n_layer,
        n_embd=n_embd,
        n_ff=n_ff,
        n_head=n_head,
        n_head_kv=n_head_kv,
        head_dim_k=head_dim,
        head_dim_v=head_dim,
        n_vocab=n_vocab,
        ctx_train=131072,
        weights_bytes=int(file_bytes),
        embd_bytes=int(n_vocab * n_embd * embd_bpw / 8),
        output_bytes=int(n_vocab * n_embd * out_bpw / 8),
    )


def _moe(n_layer, n_embd, expert_ff, n_expert, n_used, n_head, n_head_kv, head_dim, n_vocab, expert_bpw, other_bpw):
    """A mixture of experts: its bytes by part, and the share a token reads (as shape_from_header works it out)."""
    attn = n_embd * head_dim * (2 * n_head + 2 * n_head_kv)
    experts = n_layer * n_expert * 3 * n_embd * expert_ff * expert_bpw / 8
    others = (n_layer * attn + 2 * n_vocab * n_embd) * other_bpw / 8
    total = experts + others
    return ModelShape(
        architecture="moe",
        n_layer=n_layer,
        n_embd=n_embd,
        n_ff=expert_ff * n_used,
        n_head=n_head,
        n_head_kv=n_head_kv,
        head_dim_k=head_dim,
        head_dim_v=head_dim,
        n_vocab=n_vocab,
        ctx_train=131072,
        weights_bytes=int(total),
        embd_bytes=int(n_vocab * n_embd * other_bpw / 8),
        output_bytes=int(n_vocab * n_embd * other_bpw / 8),
        active_fraction=(total - experts + experts * n_used / n_expert) / total,
    )


LLAMA_8B_Q4_K_M = _dense(32, 4096, 14336, 32, 8, 128, 128256, 4.92e9, 4.5, 6.5625)
QWEN3_30B_A3B_Q4_0 = _moe(48, 2048, 768, 128, 8, 32, 4, 128, 151936, 4.5, 4.5)
QWEN3_30B_A3B_Q8_0 = _moe(48, 2048, 768, 128, 8, 32, 4, 128, 151936, 8.5, 8.5)
GPT_OSS_20B_MXFP4 = _moe(24, 2880, 2880, 32, 4, 64, 8, 64, 201088, 4.25, 8.5)
QWEN25_CODER_32B_Q4_K_L = _dense(64, 5120, 27648, 40, 8, 128, 152064, 20.4e9, 8.5, 8.5, arch="qwen2")


def nvidia(name: str, vram_gb: float) -> hardware.Hardware:
    return hardware.from_profile(
        {
            "os": "linux",
            "arch": "x64",
            "physical_cores": 16,
            "ram_gb": 64,
            "cpu_features": ["avx2"],
            "backends": ["cuda", "cpu"],
            "gpus": [{"vendor": "nvidia", "name": name, "vram_gb": vram_gb, "backend": "cuda"}],
        }
    )


def apple(chip: str, ram_gb: float) -> hardware.Hardware:
    return hardware.from_profile(
        {
            "os": "darwin",
            "arch": "arm64",
            "physical_cores": 10,
            "ram_gb": ram_gb,
            "cpu_name": f"Apple {chip}",
            "unified_memory": True,
            "backends": ["metal", "cpu"],
        }
    )


@dataclass(frozen=True)
class Row:
    machine: str
    hardware: hardware.Hardware
    backend: str
    model: str
    shape: ModelShape
    tokens_per_s: float  # published (or measured) generation speed, one stream
    prompt_tokens_per_s: float = 0.0  # pp512 where published
    source: str = ""


def published_rows() -> list[Row]:
    """Every row of CATALOG.md's table but the RTX 2080 + CPU one (--n-cpu-moe 36 keeps the experts of 36
    layers on a CPU the row does not name: a split this tool does not plan)."""
    return [
        Row(
            "RTX 4090",
            nvidia("NVIDIA GeForce RTX 4090", 24),
            "cuda",
            "Qwen3 30B-A3B Q4_0",
            QWEN3_30B_A3B_Q4_0,
            161.55,
            source="llama.cpp PR 16834",
        ),
        Row(
            "RTX 4090",
            nvidia("NVIDIA GeForce RTX 4090", 24),
            "cuda",
            "gpt-oss 20B MXFP4",
            GPT_OSS_20B_MXFP4,
            186.10,
            source="llama.cpp PR 16834",
        ),
        Row(
            "RTX 3080",
            nvidia("NVIDIA GeForce RTX 3080", 10),
            "cuda",
            "Llama 3.1 8B Q4_K_M",
            LLAMA_8B_Q4_K_M,
            111.95,
            source="a public benchmark thread",
        ),
        Row(
            "M2 Ultra",
            apple("M2 Ultra", 192),
            "metal",
            "Qwen3 30B-A3B Q8_0",
            QWEN3_30B_A3B_Q8_0,
            76.31,
            2045,
            source="llama.cpp PR 15616",
        ),
        Row(
            "M1 Max 64 GB",
            apple("M1 Max", 64),
            "metal",
            "Llama 3.1 8B Q4_K_M",
            LLAMA_8B_Q4_K_M,
            46.2,
            499.6,
            source="a public benchmark thread",
        ),
        Row(
            "M1 Pro 32 GB",
            apple("M1 Pro", 32),
            "metal",
            "gpt-oss 20B",
            GPT_OSS_20B_MXFP4,
            37.05,
            source="an mlx-lm issue",
        ),
        Row(
            "M4 Pro 64 GB",
            apple("M4 Pro", 64),
            "metal",
            "Qwen2.5-Coder-32B Q4_K_L",
            QWEN25_CODER_32B_Q4_K_L,
            11.0,
            source="llama.cpp PR 10455",
        ),
        Row(
            "Mac mini M4 16 GB",
            apple("M4", 16),
            "metal",
            "Llama 3.1 8B Q4_K_M",
            LLAMA_8B_Q4_K_M,
            20.87,
            source="a public benchmark thread",
        ),
    ]
