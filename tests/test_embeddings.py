"""Embedding and reranking models are served as such: the GGUF says what a model is for, and serve starts it
with --embedding (or --reranking) in the router's preset and in single-model mode, never a chat model."""

from __future__ import annotations

import shutil

import gguf
import httpx
import psutil
import pytest

from aidevops_local.core.accounting import usage
from aidevops_local.core.llamacpp import build_features
from aidevops_local.core.models import model_kind
from aidevops_local.core.models.gguf_meta import read_header
from aidevops_local.core.serving import launch, server
from aidevops_local.core.serving import state as server_state
from aidevops_local.core.system import config
from tests.fixtures.tiny_bert import TINY_BERT_N_EMBD, write_tiny_bert_gguf
from tests.serving import serving_settings

TEXTS = ["hello world", "the cat sat on the mat"]


@pytest.fixture
def models_dir(isolated_home, tiny_gguf, tiny_bert_gguf):
    """chatty (the tiny llama), embedder (the tiny BERT) and ranker (a BERT with a rank head)."""
    folder = isolated_home / "models"
    folder.mkdir(exist_ok=True)
    shutil.copy(tiny_gguf, folder / "chatty.gguf")
    shutil.copy(tiny_bert_gguf, folder / "embedder.gguf")
    write_tiny_bert_gguf(folder / "ranker.gguf", pooling=int(gguf.PoolingType.RANK))
    return folder


def embed(endpoint: str, model: str | None, texts: list[str]) -> httpx.Response:
    body = {"input": texts} if model is None else {"input": texts, "model": model}
    return httpx.post(f"{endpoint}/embeddings", json=body, timeout=60)


def assert_vectors(reply: httpx.Response, count: int) -> None:
    assert reply.status_code == 200, reply.text
    vectors = [item["embedding"] for item in reply.json()["data"]]
    assert len(vectors) == count
    assert all(len(v) == TINY_BERT_N_EMBD and any(x != 0 for x in v) for v in vectors)


def test_the_kind_comes_from_the_gguf(tiny_gguf, tiny_bert_gguf, tmp_path):
    assert model_kind.kind_of(read_header(tiny_gguf)) == "chat"
    assert model_kind.kind_of(read_header(tiny_bert_gguf)) == "embedding"
    ranker = write_tiny_bert_gguf(tmp_path / "ranker.gguf", pooling=int(gguf.PoolingType.RANK))
    assert model_kind.kind_of(read_header(ranker)) == "reranking"
    # A decoder converted as an embedding model (Qwen3-Embedding: last-token pooling) is one too.
    writer = gguf.GGUFWriter(tmp_path / "llama-embed.gguf", "llama")
    writer.add_pooling_type(gguf.PoolingType.LAST)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()
    assert model_kind.kind_of(read_header(tmp_path / "llama-embed.gguf")) == "embedding"


def test_the_router_serves_embeddings_and_reranking_beside_a_chat_model(system_runtime, models_dir, port):
    status = server.serve("chatty", port=port)
    try:
        preset = config.paths().router_presets.read_text()
        sections = {s.split("]", 1)[0]: s for s in preset.split("\n[")[1:]}
        assert "embedding = true" in sections["embedder"] and "reranking" not in sections["embedder"]
        assert "reranking = true" in sections["ranker"] and "pooling = rank" in sections["ranker"]
        assert "embedding" not in sections["chatty"] and "reranking" not in sections["chatty"]

        reply = embed(status.endpoint, "embedder", TEXTS)  # through the front on the TCP port, by name
        assert_vectors(reply, len(TEXTS))
        prompt_tokens = reply.json()["usage"]["prompt_tokens"]
        ranked = httpx.post(
            f"{status.endpoint}/rerank",
            json={"model": "ranker", "query": "cat", "documents": TEXTS},
            timeout=60,
        )
        assert ranked.status_code == 200 and len(ranked.json()["results"]) == len(TEXTS)
        body = {"model": "chatty", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}
        chat = httpx.post(f"{status.endpoint}/chat/completions", json=body, timeout=60)
        assert chat.status_code == 200 and chat.json()["usage"]["completion_tokens"] == 3
    finally:
        server.stop(grace=2)
    # The usage log took the embeddings as prompt-only requests: every input token, nothing generated.
    rows = list(usage.store.ModelUsage.select().where(usage.store.ModelUsage.model == "embedder"))
    assert rows and sum(r.tokens_in for r in rows) == prompt_tokens and {r.tokens_out for r in rows} == {0}
    [chat_row] = usage.store.ModelUsage.select().where(usage.store.ModelUsage.model == "chatty")
    assert chat_row.tokens_out == 3


def test_single_model_mode_serves_an_embedding_model_with_embedding_on(system_runtime, models_dir, port):
    serving_settings(router_mode=False)
    status = server.serve("embedder", port=port)
    try:
        assert not status.router
        assert "--embedding" in psutil.Process(server_state.read().pid).cmdline()
        replies = [embed(status.endpoint, None, TEXTS), embed(status.endpoint, "embedder", ["local model"])]
        assert_vectors(replies[0], len(TEXTS))
        assert_vectors(replies[1], 1)
    finally:
        server.stop(grace=2)
    rows = list(usage.store.ModelUsage.select())
    assert {r.model for r in rows} == {"embedder"} and {r.tokens_out for r in rows} == {0}
    assert sum(r.tokens_in for r in rows) == sum(r.json()["usage"]["prompt_tokens"] for r in replies)


def test_a_chat_model_is_started_without_embedding_flags(system_runtime, models_dir):
    serving_settings(router_mode=False)
    argv = launch.plan_launch("chatty").argv
    assert not {"--embedding", "--embeddings", "--reranking", "--pooling"} & set(argv)


def test_an_older_build_without_reranking_still_serves_a_rerankers_vectors():
    old_help = (
        "--embedding, --embeddings              restrict to only support embedding use case\n"
        "--pooling {none,mean,cls,last}         pooling type for embeddings\n"
    )
    found = build_features.parse_help(old_help)
    assert found.embedding and not found.reranking and not found.pooling_rank
    assert launch._kind_args(found, "reranking") == ["--embedding"]
    assert launch._kind_args(found, "chat") == []
    assert launch._kind_args(build_features.BuildFeatures(), "embedding") == []  # --help did not run


def test_recommend_offers_the_embedding_model_for_rag_and_never_as_a_chat_pick():
    from aidevops_local.core.models import recommend
    from aidevops_local.core.system import hardware

    laptop = {"os": "linux", "arch": "x64", "physical_cores": 4, "ram_gb": 8, "backends": ["cpu"]}
    result = recommend.recommend(hardware.from_profile(laptop))
    assert result.picks and all(p.use in ("chat", "coding") for p in result.picks)
    assert all("embed" not in p.name.lower() for p in result.picks)
    rag = result.embedding
    assert rag is not None and rag.use == "embedding" and rag.name == "nomic-embed-text v1.5"
    assert rag.pull_command.endswith("--file nomic-embed-text-v1.5.Q4_K_M.gguf") and "/v1/embeddings" in rag.why
    assert rag.ctx == 2048 and 0 < rag.memory_bytes < 2**30


def test_the_recommend_command_shows_the_embedding_model(capsys, monkeypatch, tmp_path):
    import json

    from aidevops_local.cli.main import main as cli

    profile = tmp_path / "laptop.json"
    profile.write_text(json.dumps({"os": "linux", "arch": "x64", "physical_cores": 4, "ram_gb": 8}))
    monkeypatch.setenv("AIDEVOPS_HARDWARE_PROFILE", str(profile))
    assert cli(["recommend"]) == 0
    out = capsys.readouterr().out
    assert "For RAG, the embedding model: nomic-embed-text v1.5" in out
