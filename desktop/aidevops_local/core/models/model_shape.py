"""What a memory estimate needs to know about a model, read from a GGUF header (or, for a model not on
disk, written down in the catalog or guessed from its size).

The shape is architecture-aware where llama.cpp is: head dimensions from `attention.key_length` (Gemma),
sliding-window layers by the architecture's pattern (only those llama.cpp applies a window to), per-layer
KV head counts (hybrid models with recurrent layers), MLA's compressed cache (DeepSeek), and for mixtures of
experts the share of the weights read per token.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..system.errors import CorruptModel
from .gguf_meta import MAX_NUMERIC_ARRAY_KEEP, GgufHeader

# Tensor types the CPU backend repacks on AVX2/Arm for faster matmuls (ggml-cpu repack.cpp).
REPACK_TYPES = {2, 12, 20}  # Q4_0, Q4_K, IQ4_NL
# Layer patterns of sliding-window attention, by architecture: every Nth layer attends to the whole context.
SWA_PATTERNS = {
    "gemma2": 2,
    "gemma3": 6,
    "gemma3n": 5,
    "cohere2": 4,
    "llama4": 4,
    "gpt-oss": 2,
    "exaone4": 4,
    "smallthinker": 4,
}
# Bounds of a header's counts and sizes. llama.cpp reads them as unsigned 32-bit integers and stops at 512 layers;
# past these no real model goes, and within them the estimate's arithmetic (log2, ranges, divisions) is safe.
MAX_LAYERS = MAX_NUMERIC_ARRAY_KEEP  # per-layer arrays longer than this arrive as their length only
MAX_SIZE = 1 << 30  # widths, heads, vocabulary, context, window


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs to know about a model: from a GGUF header, or written down in the catalog."""

    architecture: str
    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    head_dim_k: int
    head_dim_v: int
    n_vocab: int
    ctx_train: int
    weights_bytes: int  # every tensor
    embd_bytes: int = 0  # token_embd: stays on the CPU even when every layer is offloaded
    output_bytes: int = 0  # output.weight (0 when tied to the embeddings)
    repack_bytes: int = 0  # layer weights the CPU backend repacks
    swa_window: int = 0
    swa_layers: int = 0
    kv_layers: int = 0  # layers that keep a KV cache (recurrent layers do not); 0 means all
    kv_lora_rank: int = 0  # MLA (DeepSeek): the cache keeps a compressed latent instead of K and V
    n_rot: int = 0
    n_merges: int = 0
    active_fraction: float = 1.0  # share of the weights read per token (mixture of experts: < 1)

    @property
    def layer_bytes(self) -> float:
        """Average weights of one repeating layer (what one step of -ngl moves to the GPU)."""
        return max(0, self.weights_bytes - self.embd_bytes - self.output_bytes) / max(1, self.n_layer)

    @property
    def active_bytes(self) -> int:
        return int(self.weights_bytes * self.active_fraction)


def _count(header: GgufHeader, key: str, default: int = 0, *, low: int = 0, high: int = MAX_SIZE) -> int:
    """The checked `<architecture>.<key>`: a whole number in [low, high], or for a per-layer array of them the
    largest; ``default`` when missing. The file is hostile until checked: anything else (a float, NaN, text,
    a bool, a negative or absurd number) is a CorruptModel naming the key."""
    value = header.arch_value(key)
    if value is None:
        return default
    items = value if isinstance(value, list) else [value]
    for i, item in enumerate(items):
        if type(item) is not int or not low <= item <= high:  # not isinstance: bool is an int here
            where = f"[{i}]" if isinstance(value, list) else ""
            raise _corrupt(header, f"{header.architecture}.{key}{where} is {_shown(item)}")
    return max(items, default=default)


def _shown(value) -> str:
    if isinstance(value, tuple):  # a numeric array past MAX_NUMERIC_ARRAY_KEEP, kept as ("array", length)
        return f"an array of {value[-1]} values"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _corrupt(header: GgufHeader, what: str) -> CorruptModel:
    return CorruptModel(
        f"{header.path.name} is not a valid GGUF file: {what}.",
        hint="Its header holds numbers no model has: the file is damaged or was badly converted. "
        "Delete it and download it again.",
    )


def _experts(header: GgufHeader) -> tuple[int, int]:
    """(experts, experts used per token); llama.cpp refuses more used than there are, and so do we: the share
    of weights read per token would pass 1."""
    n_expert, n_used = _count(header, "expert_count"), _count(header, "expert_used_count")
    if n_used > n_expert:
        prefix = header.architecture
        raise _corrupt(header, f"{prefix}.expert_used_count is {n_used}, more than {prefix}.expert_count {n_expert}")
    return n_expert, n_used


def shape_from_header(header: GgufHeader) -> ModelShape:
    """Everything the estimate needs, from a (header-only) GGUF read."""
    get = header.arch_value
    n_layer = _count(header, "block_count", low=1, high=MAX_LAYERS)  # 0 only when missing
    n_embd = _count(header, "embedding_length")
    n_head = _count(header, "attention.head_count") or 1
    kv_heads = get("attention.head_count_kv")
    n_head_kv = _count(header, "attention.head_count_kv", n_head)
    kv_layers = sum(1 for v in kv_heads if v) if isinstance(kv_heads, list) else 0
    head_dim_k = _count(header, "attention.key_length") or n_embd // n_head
    head_dim_v = _count(header, "attention.value_length") or head_dim_k
    n_ff = _count(header, "feed_forward_length")
    n_expert, n_used = _experts(header)
    if n_expert and n_used:
        n_ff = max(n_ff, _count(header, "expert_feed_forward_length") * n_used)
    by_name = {t.name: t for t in header.tensors}
    tokens = header.metadata.get("tokenizer.ggml.tokens")
    n_vocab = _count(header, "vocab_size") or _array_len(tokens)
    if not n_vocab and "token_embd.weight" in by_name and len(by_name["token_embd.weight"].shape) == 2:
        n_vocab = by_name["token_embd.weight"].shape[1]
        if n_vocab > MAX_SIZE:  # a dimension the size check passes when another one is 0
            raise _corrupt(header, f"token_embd.weight has {n_vocab} rows")
    embd = by_name.get("token_embd.weight")
    output = by_name.get("output.weight")
    repack = sum(
        t.n_bytes
        for t in header.tensors
        if t.ggml_type in REPACK_TYPES and t.name != "token_embd.weight" and len(t.shape) == 2 and t.shape[1] % 8 == 0
    )
    experts = sum(t.n_bytes for t in header.tensors if "_exps" in t.name)
    total = header.tensor_bytes
    active = 1.0
    if experts and n_expert and n_used and total:
        active = (total - experts + experts * n_used / n_expert) / total
    window = _count(header, "attention.sliding_window")
    return ModelShape(
        architecture=header.architecture,
        n_layer=n_layer,
        n_embd=n_embd,
        n_ff=n_ff,
        n_head=n_head,
        n_head_kv=n_head_kv,
        head_dim_k=head_dim_k,
        head_dim_v=head_dim_v,
        n_vocab=n_vocab,
        ctx_train=_count(header, "context_length"),
        weights_bytes=total,
        embd_bytes=embd.n_bytes if embd else 0,
        output_bytes=output.n_bytes if output else 0,
        repack_bytes=repack,
        swa_window=window,
        swa_layers=_swa_layers(header, n_layer, window),
        kv_layers=kv_layers,
        kv_lora_rank=_count(header, "attention.kv_lora_rank"),
        n_rot=_count(header, "rope.dimension_count"),
        n_merges=_array_len(header.metadata.get("tokenizer.ggml.merges")),
        active_fraction=active,
    )


def _array_len(value) -> int:
    if isinstance(value, tuple) and len(value) == 2 and value[0] == "array":
        return int(value[1])
    return len(value) if isinstance(value, list) else 0


def _swa_layers(header: GgufHeader, n_layer: int, window: int) -> int:
    if not window:
        return 0
    pattern = header.arch_value("attention.sliding_window_pattern")
    if isinstance(pattern, list):  # one flag per layer: true = sliding window
        return sum(1 for flag in pattern if flag)
    every = int(pattern) if isinstance(pattern, int) and pattern > 0 else SWA_PATTERNS.get(header.architecture, 0)
    if not every:
        return 0  # llama.cpp ignores the window for this architecture: every layer keeps the full context
    return sum(1 for il in range(n_layer) if il % every < every - 1)


def guess_shape(*, size_bytes: int, ctx_train: int = 32768) -> ModelShape:
    """A plausible shape for a remote file known only by its size (search results): a Llama-like dense
    model scaled from an 8B one at ~4.8 bits per weight. Good enough for a "fits?" mark, no more."""
    scale = max(size_bytes, 1) / (8e9 * 4.8 / 8)
    n_embd = max(512, int(4096 * scale**0.4) // 128 * 128)
    return ModelShape(
        architecture="unknown",
        n_layer=max(8, round(32 * scale**0.3)),
        n_embd=n_embd,
        n_ff=int(n_embd * 3.5),
        n_head=max(4, n_embd // 128),
        n_head_kv=8,
        head_dim_k=128,
        head_dim_v=128,
        n_vocab=128256,
        ctx_train=ctx_train,
        weights_bytes=size_bytes,
    )
