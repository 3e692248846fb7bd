"""The header-only GGUF reader: real models, split sets, damaged files, and a fuzzer that may only ever get
CorruptModel back, quickly and without unbounded memory."""

from __future__ import annotations

import itertools
import os
import shutil
import struct
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aidevops_local.core.models import gguf_meta
from aidevops_local.core.system.errors import CorruptModel, ModelNotFound

MIB = 1 << 20


def test_reads_smollm2_header_without_the_vocabulary(smollm2_gguf):
    header = gguf_meta.read_header(smollm2_gguf)
    assert header.architecture == "llama"
    assert header.arch_value("block_count") == 30
    assert header.arch_value("attention.head_count_kv") == 3
    assert header.metadata["tokenizer.ggml.tokens"] == ("array", 49152)
    assert header.metadata["tokenizer.ggml.merges"] == ("array", 48900)
    assert header.quant == "Q4_1"
    assert len(header.tensors) == 272
    # llama-server logs "CPU_Mapped model buffer size = 92.10 MiB" for this file.
    assert round(header.tensor_bytes / MIB, 2) == 92.10


def test_tensor_sizes_follow_the_ggml_type_table(gemma3_gguf):
    header = gguf_meta.read_header(gemma3_gguf)
    assert header.quant == "Q4_K_M"
    assert header.arch_value("attention.sliding_window") == 512
    embd = next(t for t in header.tensors if t.name == "token_embd.weight")
    assert embd.type_name == "Q8_0" and embd.shape == (640, 262144)
    assert embd.n_bytes == 640 * 262144 // 32 * 34
    # "CPU_Mapped model buffer size = 235.16 MiB" in llama-server's log.
    assert round(header.tensor_bytes / MIB, 2) == 235.16
    # Tensor extents tile the data section: sorted by offset, none overlaps the next.
    spans = sorted((t.offset, t.offset + t.n_bytes) for t in header.tensors)
    assert all(end <= nxt for (_, end), (nxt, _) in itertools.pairwise(spans))


def test_header_cache_is_keyed_by_size_and_mtime(tmp_path, tiny_gguf):
    copy = tmp_path / "model.gguf"
    shutil.copy(tiny_gguf, copy)
    gguf_meta.clear_cache()
    first = gguf_meta.cached_header(copy)
    assert gguf_meta.cached_header(copy) is first
    os.utime(copy, ns=(time.time_ns(), time.time_ns() + 10**9))  # a rewritten file is read again
    assert gguf_meta.cached_header(copy) is not first


def test_split_model_is_read_as_one(tiny_split_gguf, tiny_gguf):
    whole = gguf_meta.read_header(tiny_gguf)
    model = gguf_meta.read_model(tiny_split_gguf[1])  # any part names the set
    assert model.path == tiny_split_gguf[0]
    assert model.parts == tuple(tiny_split_gguf)
    assert model.file_size == sum(p.stat().st_size for p in tiny_split_gguf)
    assert sorted(t.name for t in model.tensors) == sorted(t.name for t in whole.tensors)
    assert model.tensor_bytes == whole.tensor_bytes
    assert gguf_meta.validate_gguf(tiny_split_gguf[0]).tensor_bytes == whole.tensor_bytes


def test_split_model_with_a_missing_part_is_refused(tmp_path, tiny_split_gguf):
    first = tmp_path / tiny_split_gguf[0].name
    shutil.copy(tiny_split_gguf[0], first)
    with pytest.raises(ModelNotFound, match="missing part"):
        gguf_meta.validate_gguf(first)


@pytest.mark.parametrize("kind", ["empty", "truncated", "cut_header", "random_header"])
def test_damaged_files_are_corrupt_models(corrupt_ggufs, kind):
    with pytest.raises(CorruptModel) as info:
        gguf_meta.validate_gguf(corrupt_ggufs[kind])
    assert info.value.hint


def test_missing_file_is_model_not_found(tmp_path):
    with pytest.raises(ModelNotFound):
        gguf_meta.read_header(tmp_path / "nope.gguf")


def test_split_names():
    assert gguf_meta.split_stem("Qwen3-32B-Q4_K_M-00001-of-00002.gguf") == "Qwen3-32B-Q4_K_M"
    assert gguf_meta.split_stem("model.gguf") is None
    parts = gguf_meta.split_parts(Path("/m/x-00002-of-00003.gguf"))
    assert [p.name for p in parts] == ["x-00001-of-00003.gguf", "x-00002-of-00003.gguf", "x-00003-of-00003.gguf"]


# ---- fuzzing ------------------------------------------------------------------------------------------------


def _header(n_tensors: int, n_kv: int) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, n_tensors, n_kv)


def _expect_clean(path: Path) -> None:
    """Either a header comes back or CorruptModel does; nothing else, fast, and in bounded memory."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        gguf_meta.read_header(path)
    except CorruptModel:
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert time.perf_counter() - started < 5
    assert peak < 64 * MIB + 64 * path.stat().st_size


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(body=st.binary(min_size=0, max_size=4096), n_tensors=st.integers(0, 2**64 - 1), n_kv=st.integers(0, 2**64 - 1))
def test_fuzz_random_bodies_and_counts(tmp_path, body, n_tensors, n_kv):
    path = tmp_path / "fuzz.gguf"
    path.write_bytes(_header(n_tensors, n_kv) + body)
    _expect_clean(path)


@FUZZ
@given(data=st.data())
def test_fuzz_mutated_real_header(tmp_path, tiny_gguf, data):
    raw = bytearray(tiny_gguf.read_bytes())
    header_len = gguf_meta.read_header(tiny_gguf).data_offset
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, header_len - 1))
        raw[at] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    path = tmp_path / "mutated.gguf"
    path.write_bytes(bytes(raw))
    _expect_clean(path)


@FUZZ
@given(count=st.integers(0, 2**64 - 1), item_type=st.integers(0, 15), length=st.integers(0, 2**64 - 1))
def test_fuzz_absurd_array_and_string_lengths(tmp_path, count, item_type, length):
    key = b"k"
    kv = struct.pack("<Q", len(key)) + key + struct.pack("<IIQ", 9, item_type, count)
    kv += struct.pack("<Q", length) + b"x" * 16
    path = tmp_path / "arrays.gguf"
    path.write_bytes(_header(0, 1) + kv)
    _expect_clean(path)


def test_deeply_nested_arrays_are_refused_not_recursed(tmp_path):
    key = b"k"
    nested = b"".join(struct.pack("<IQ", 9, 1) for _ in range(5000))  # array of array of ... 5000 deep
    path = tmp_path / "nested.gguf"
    path.write_bytes(_header(0, 1) + struct.pack("<Q", 1) + key + struct.pack("<I", 9) + nested)
    with pytest.raises(CorruptModel):
        gguf_meta.read_header(path)
