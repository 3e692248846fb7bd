"""Two of the memory estimate's terms, as llama.cpp sizes them: the KV cache and the compute buffer.

They depend on the model's shape, the context, the slots and whether they share one KV stream, and not on the
machine; fit.py adds them up with the weights and overheads and plans a launch from the total.
"""

from __future__ import annotations

from .model_shape import ModelShape

MIB = 1 << 20
UBATCH = 512  # llama-server's default -ub
KV_PAD = 256  # cells are padded to this with flash attention
KV_TYPE_BYTES = {"f16": 2.0, "bf16": 2.0, "f32": 4.0, "q8_0": 34 / 32, "q4_0": 18 / 32, "q5_0": 22 / 32}


def _pad(value: int, to: int) -> int:
    return (value + to - 1) // to * to


def _cells(ctx: int, parallel: int, unified: bool) -> tuple[int, int]:
    """(KV streams, cells per stream). Without a unified cache (llama-server's default once -np is given)
    every slot gets its own stream of ctx / slots cells; with -kvu all slots share one stream of ctx."""
    streams = 1 if unified else max(1, parallel)
    return streams, _pad(max(1, ctx // streams), KV_PAD)


def _swa_cells(shape: ModelShape, per_stream: int, parallel: int, unified: bool) -> int:
    """Cells a sliding-window layer keeps per stream: the window (one per slot when they share a stream)
    plus one batch."""
    window = shape.swa_window * (max(1, parallel) if unified else 1)
    return min(per_stream, _pad(window + UBATCH, KV_PAD))


def kv_bytes(
    shape: ModelShape, *, ctx: int, parallel: int = 1, kv_type: str = "f16", unified: bool = False
) -> tuple[int, int]:
    """(KV bytes of all layers, per-layer average) at this context."""
    streams, per_stream = _cells(ctx, parallel, unified)
    per_cell = KV_TYPE_BYTES.get(kv_type, 2.0)
    if shape.kv_lora_rank:
        per_token = (shape.kv_lora_rank + shape.n_rot) * per_cell
    else:
        per_token = shape.n_head_kv * (shape.head_dim_k + shape.head_dim_v) * per_cell
    layers = shape.kv_layers or shape.n_layer
    swa = min(shape.swa_layers, layers)
    swa_cells = _swa_cells(shape, per_stream, parallel, unified) if swa else 0
    total = int(per_token * streams * ((layers - swa) * per_stream + swa * swa_cells))
    return total, total // max(1, shape.n_layer)


def compute_bytes(shape: ModelShape, *, ctx: int, parallel: int = 1, unified: bool = False) -> int:
    """One batch's activations plus the f16 attention masks (one stream's cells x the batch)."""
    _, per_stream = _cells(ctx, parallel, unified)
    activations = 4 * UBATCH * max(5 * shape.n_embd, 1.5 * shape.n_embd + 3.33 * shape.n_ff)
    masks = per_stream * UBATCH * 2
    if shape.swa_layers:
        masks += _swa_cells(shape, per_stream, parallel, unified) * UBATCH * 2
    return int(activations + masks + MIB)
