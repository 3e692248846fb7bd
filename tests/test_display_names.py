"""Display names: the catalog's name for a catalog file, else the GGUF's own, else the cleaned file stem; the
quant apart, once. Real GGUFs from the fixtures; a catalog model is the tiny model under a catalog file name."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

from aidevops_local.core.models import display_names, gguf_meta, library
from aidevops_local.core.system import ports
from aidevops_local.core.system.units import human_bytes
from tests.small_gguf import write_small_gguf


def _model(path: Path, **kw) -> library.LocalModel:
    return library._model_at(path, source="external", where="models", **kw)


@pytest.fixture(autouse=True)
def _fresh_cache():
    display_names.clear_cache()
    yield
    display_names.clear_cache()


def test_a_catalog_file_gets_the_catalog_name_and_its_quant_apart(tmp_path, tiny_gguf):
    path = tmp_path / "Llama-3.2-3B-Instruct-Q4_K_M.gguf"
    shutil.copy(tiny_gguf, path)
    shown = display_names.display_name(_model(path))
    assert shown.name == "Llama 3.2 3B Instruct"  # not the header's "Tiny Random Llama": the catalog knows it
    assert shown.quant == "Q4_K_M" and shown.detail == f"Q4_K_M · {human_bytes(path.stat().st_size)}"
    other_quant = tmp_path / "Llama-3.2-3B-Instruct-Q8_0.gguf"
    shutil.copy(tiny_gguf, other_quant)
    assert display_names.display_name(_model(other_quant)).name == "Llama 3.2 3B Instruct"


def test_a_gguf_is_named_by_its_header_unless_the_converter_composed_it(smollm2_gguf, gemma3_gguf, tiny_gguf):
    gemma = display_names.display_name(_model(gemma3_gguf))
    assert (gemma.name, gemma.quant) == ("Gemma 3 270M", "Q4_K_M")  # "Gemma 3 270m", its size label's case
    assert display_names.display_name(_model(tiny_gguf)).name == "Tiny Random Llama"
    # SmolLM2's header says "Smollm2 135M 8k Lc100K Mix1 Ep2" (basename, size and a fine-tune tag): the file
    # name says more, without its quant.
    smol = display_names.display_name(_model(smollm2_gguf))
    assert (smol.name, smol.quant) == ("SmolLM2 135M Instruct", "Q4_1")
    assert smol.detail == "Q4_1 · 94 MB" and "Q4_1" not in smol.name


def test_without_a_header_name_the_stem_is_cleaned(tmp_path):
    path = write_small_gguf(tmp_path / "Mistral-Nemo-Base-2407-IQ4_XS.gguf")
    assert display_names.display_name(_model(path)).name == "Mistral Nemo Base 2407"
    assert display_names.clean_stem("Qwen_Qwen3-8B-Q4_K_M.gguf") == "Qwen3 8B"
    assert display_names.clean_stem("big-model-Q4_K_M-00001-of-00003.gguf") == "big model"


def test_copies_of_one_file_are_told_apart(tmp_path, tiny_gguf):
    models = []
    for name in ("tiny-a", "tiny-b"):
        shutil.copy(tiny_gguf, tmp_path / f"{name}.gguf")
        models.append(_model(tmp_path / f"{name}.gguf"))
    shown = display_names.display_names(models)
    assert [shown[m.name].name for m in models] == ["Tiny Random Llama (tiny-a)", "Tiny Random Llama (tiny-b)"]


def test_names_are_cached_per_file(tmp_path, tiny_gguf, monkeypatch):
    path = tmp_path / "tiny.gguf"
    shutil.copy(tiny_gguf, path)
    assert display_names.display_name(_model(path)).name == "Tiny Random Llama"

    def no_reads(_path):
        raise AssertionError("the header was read again")

    monkeypatch.setattr(display_names, "cached_header", no_reads)
    assert display_names.display_name(_model(path)).name == "Tiny Random Llama"
    path.write_bytes(path.read_bytes() + b"\0" * 32)  # another file now: read again
    monkeypatch.setattr(display_names, "cached_header", gguf_meta.cached_header)
    gguf_meta.clear_cache()
    assert display_names.display_name(_model(path)).name == "Tiny Random Llama"


def test_a_free_port_near_a_taken_one(free_port):
    port = free_port()
    with socket.create_server(("127.0.0.1", port)):
        assert not ports.is_free("127.0.0.1", port)
        offered = ports.free_port_near("127.0.0.1", port)
        assert offered != port and ports.is_free("127.0.0.1", offered)
        assert 0 < offered - port <= ports.NEAR or offered > 1024


def test_the_cli_lists_and_serves_models_by_their_display_names(isolated_home, tiny_gguf, smollm2_gguf, free_port):
    import subprocess
    import sys

    from aidevops_local.core.serving import health

    models = isolated_home / "models"
    models.mkdir()
    shutil.copy(tiny_gguf, models / "Llama-3.2-3B-Instruct-Q4_K_M.gguf")
    shutil.copy(smollm2_gguf, models / smollm2_gguf.name)
    done = subprocess.run(
        [sys.executable, "-m", "aidevops_local", "models"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if "│" in line]
    cells = [[cell.strip() for cell in row.split("│")][:3] for row in rows]
    assert ["Llama-3.2-3B-Instruct-Q4_K_M", "Llama 3.2 3B Instruct", "Q4_K_M"] in cells, rows
    assert ["SmolLM2-135M-Instruct.Q4_1", "SmolLM2 135M Instruct", "Q4_1"] in cells, rows
    from aidevops_local.cli import server_cmd

    status = health.ServerStatus(
        state="running",
        running=True,
        model="Llama-3.2-3B-Instruct-Q4_K_M",
        model_path=str(models / "Llama-3.2-3B-Instruct-Q4_K_M.gguf"),
    )
    assert server_cmd._model_text(status) == "Llama 3.2 3B Instruct (Llama-3.2-3B-Instruct-Q4_K_M, Q4_K_M)"
