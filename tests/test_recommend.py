"""`recommend` on faked machines: the picks, why, and what the next tier needs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from aidevops_local.core.models import recommend
from aidevops_local.core.system import hardware
from aidevops_local.core.system.errors import ConfigError

PROFILES = {
    "8 GB laptop": {
        "os": "linux",
        "arch": "x64",
        "physical_cores": 4,
        "ram_gb": 8,
        "cpu_name": "Intel Core i5-1135G7",
        "cpu_features": ["avx2", "fma", "f16c"],
        "backends": ["cpu"],
    },
    "16 GB Apple Silicon": {
        "os": "darwin",
        "arch": "arm64",
        "physical_cores": 8,
        "ram_gb": 16,
        "cpu_name": "Apple M2",
        "unified_memory": True,
        "backends": ["metal", "cpu"],
        "gpus": [{"vendor": "apple", "name": "Apple M2", "backend": "metal"}],
    },
    "24 GB NVIDIA": {
        "os": "linux",
        "arch": "x64",
        "physical_cores": 8,
        "ram_gb": 32,
        "cpu_name": "AMD Ryzen 7 7700X",
        "cpu_features": ["avx2", "avx512f"],
        "backends": ["cuda", "cpu"],
        "gpus": [{"vendor": "nvidia", "name": "NVIDIA GeForce RTX 4090", "vram_gb": 24, "backend": "cuda"}],
    },
    "CPU-only 64 GB": {
        "os": "linux",
        "arch": "x64",
        "physical_cores": 16,
        "ram_gb": 64,
        "cpu_name": "AMD Ryzen 9 7950X",
        "cpu_features": ["avx2", "avx512f"],
        "backends": ["cpu"],
    },
}

EXPECTED = {  # (chat pick, coding pick, where they run)
    "8 GB laptop": ("Qwen3 4B", "Qwen2.5 Coder 3B Instruct", "cpu"),
    "16 GB Apple Silicon": ("gpt-oss 20B", "Qwen2.5 Coder 7B Instruct", "unified (metal)"),
    "24 GB NVIDIA": ("Qwen3 32B", "Qwen3 Coder 30B A3B Instruct", "gpu (cuda)"),
    "CPU-only 64 GB": ("Qwen3 30B A3B", "Qwen3 Coder 30B A3B Instruct", "cpu"),
}


@pytest.mark.parametrize("profile", list(PROFILES))
def test_expected_picks(profile):
    result = recommend.recommend(hardware.from_profile(PROFILES[profile]))
    chat, coding, device = EXPECTED[profile]
    picks = {p.use: p for p in result.picks[:2]}
    assert (picks["chat"].name, picks["coding"].name) == (chat, coding)
    assert picks["chat"].device == picks["coding"].device == device
    assert 2 <= len(result.picks) <= 3
    assert len({(p.repo, p.file) for p in result.picks}) == len(result.picks)


@pytest.mark.parametrize("profile", list(PROFILES))
def test_every_pick_fits_and_explains_itself(profile):
    result = recommend.recommend(hardware.from_profile(PROFILES[profile]))
    for pick in result.picks:
        assert pick.quant == "Q4_K_M" and pick.size_bytes > 0
        if pick.device.startswith("gpu"):
            assert pick.vram_bytes <= result.usable_vram
        else:
            assert pick.ram_bytes + pick.vram_bytes <= result.usable_ram
        assert pick.memory_bytes > pick.size_bytes  # weights plus KV cache, buffers and overhead
        assert pick.tokens_per_s >= recommend.MIN_TOKENS_PER_S
        assert "GiB usable" in pick.why and "tokens/s" in pick.why
        assert pick.next_tier
        assert pick.pull_command.startswith(f"aidevops-local pull {pick.repo}")


def test_next_tier_names_what_it_would_take():
    result = recommend.recommend(hardware.from_profile(PROFILES["8 GB laptop"]))
    chat = next(p for p in result.picks if p.use == "chat")
    assert re.search(r"Qwen3 8B .*(GiB|GB/s)", chat.next_tier)
    top = recommend.recommend(hardware.from_profile(PROFILES["24 GB NVIDIA"]))
    assert "top of the catalog" in top.picks[0].next_tier


def test_a_machine_too_small_for_anything():
    tiny = hardware.from_profile({"os": "linux", "arch": "x64", "physical_cores": 2, "ram_gb": 2, "backends": ["cpu"]})
    result = recommend.recommend(tiny)
    assert result.picks == () and "fits" in result.note


def test_slow_machine_still_gets_chat_and_coding():
    slow = hardware.from_profile(
        {"os": "linux", "arch": "x64", "physical_cores": 1, "ram_gb": 16, "cpu_features": ["avx2"], "backends": ["cpu"]}
    )
    result = recommend.recommend(slow)
    assert {p.use for p in result.picks} == {"chat", "coding"}


def test_catalog_is_dated_and_well_formed():
    date, models = recommend.load_catalog()
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", date)
    assert len(models) >= 10
    publishers = {m.repo.split("/")[0] for m in models}
    assert {"bartowski", "ggml-org", "unsloth", "lmstudio-community", "Qwen"} <= publishers
    for m in models:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+-GGUF", m.repo), m.repo
        assert m.file.lower().endswith(".gguf") and m.quant
        assert set(m.use) <= {"chat", "coding", "embedding"} and m.shape.n_layer > 0 and m.why
    assert {u for m in models for u in m.use} == {"chat", "coding", "embedding"}


def test_a_broken_catalog_is_a_config_error(tmp_path):
    bad = tmp_path / "catalog.toml"
    bad.write_text('updated = "2026-01-01"\n[[model]]\nname = "x"\n')
    with pytest.raises(ConfigError, match="catalog"):
        recommend.load_catalog(bad)


def test_cli_recommend_for_a_profile(tmp_path):
    profile = tmp_path / "machine.json"
    profile.write_text(json.dumps(PROFILES["24 GB NVIDIA"]))
    env = {**os.environ, "AIDEVOPS_HARDWARE_PROFILE": str(profile), "COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, "-m", "aidevops_local", "recommend", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert [p["name"] for p in data["picks"][:2]] == ["Qwen3 32B", "Qwen3 Coder 30B A3B Instruct"]
    assert data["hardware"]["gpus"][0]["name"] == "NVIDIA GeForce RTX 4090"
    done = subprocess.run(
        [sys.executable, "-m", "aidevops_local", "recommend"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Qwen3 32B" in done.stdout and "next:" in done.stdout and "aidevops-local pull" in done.stdout
