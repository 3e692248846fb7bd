"""What a model is for, read once from its GGUF header: chat, embedding or reranking.

llama-server serves an embedding model's /v1/embeddings only when started with --embeddings, and a reranker's
/v1/rerank only with --reranking; the same flags on a chat model restrict it to that use. So the kind decides
the flags, and it comes from the facts the converter wrote: ``<arch>.pooling_type`` (llama.cpp's
LLAMA_POOLING_TYPE: 1 mean, 2 cls, 3 last = a sentence vector; 4 rank = a relevance score) and, for files
without that key, an encoder-only architecture (BERT and its kin exist only to embed).
"""

from __future__ import annotations

from .gguf_meta import GgufHeader

CHAT, EMBEDDING, RERANKING = "chat", "embedding", "reranking"
KINDS = (CHAT, EMBEDDING, RERANKING)

_POOLING_EMBEDDING = {1, 2, 3}  # mean, cls, last
_POOLING_RANK = 4
# Architectures llama.cpp loads as encoders only (non-causal attention, no language-model head).
ENCODER_ARCHITECTURES = frozenset(
    {
        "bert",
        "modern-bert",
        "nomic-bert",
        "nomic-bert-moe",
        "neo-bert",
        "jina-bert-v2",
        "jina-bert-v3",
        "eurobert",
        "gemma-embedding",
        "t5encoder",
    }
)


def kind_of(header: GgufHeader) -> str:
    """chat, embedding or reranking. A pooling type on any architecture (a Qwen3-Embedding is a qwen3 with
    last-token pooling) says it; without one, only an encoder architecture makes an embedding model."""
    pooling = header.arch_value("pooling_type")
    if isinstance(pooling, int) and not isinstance(pooling, bool):
        if pooling == _POOLING_RANK:
            return RERANKING
        if pooling in _POOLING_EMBEDDING:
            return EMBEDDING
    return EMBEDDING if header.architecture in ENCODER_ARCHITECTURES else CHAT
