"""`recommend` on faked machines: the picks, why, and what the next tier needs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from aidevops_local.core.models import catalog, hub, recommend
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
BIG = {  # machines of 16, 64 and 160 GB: the catalog's tiers should use what they have
    "CPU-only 16 GB": {
        "os": "linux",
        "arch": "x64",
        "physical_cores": 8,
        "ram_gb": 16,
        "cpu_name": "Intel Core i7-12700",
        "cpu_features": ["avx2", "fma", "f16c"],
        "backends": ["cpu"],
    },
    "CPU-only 64 GB": PROFILES["CPU-only 64 GB"],
    "CPU-only 160 GB": {
        "os": "linux",
        "arch": "x64",
        "physical_cores": 32,
        "ram_gb": 160,
        "cpu_name": "AMD EPYC 9354",
        "cpu_features": ["avx2", "avx512f"],
        "backends": ["cpu"],
    },
    "160 GB with an H200": {
        "os": "linux",
        "arch": "x64",
        "physical_cores": 16,
        "ram_gb": 160,
        "cpu_features": ["avx2", "avx512f"],
        "backends": ["cuda", "cpu"],
        "gpus": [{"vendor": "nvidia", "name": "NVIDIA H200", "vram_gb": 140.4, "backend": "cuda"}],
    },
}
LARGE_MODELS = {"gpt-oss 120B", "Llama 3.3 70B Instruct", "Qwen2.5 72B Instruct"}

EXPECTED = {  # (chat pick, coding pick, where they run); unseen files rank lower than seen ones
    "8 GB laptop": ("Qwen3 4B", "Qwen2.5 Coder 3B Instruct", "cpu"),
    "16 GB Apple Silicon": ("Qwen3 14B", "Qwen2.5 Coder 14B Instruct", "unified (metal)"),
    "24 GB NVIDIA": ("Gemma 3 27B Instruct", "Qwen2.5 Coder 32B Instruct", "gpu (cuda)"),
    "CPU-only 64 GB": ("gpt-oss 20B", "Qwen3 Coder 30B A3B Instruct", "cpu"),
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
        assert pick.quant in catalog.QUANT_QUALITY and pick.size_bytes > 0
        if pick.device.startswith("gpu"):
            assert pick.vram_bytes <= result.usable_vram
        else:
            assert pick.ram_bytes + pick.vram_bytes <= result.usable_ram
        assert pick.memory_bytes > pick.size_bytes  # weights plus KV cache, buffers and overhead
        assert pick.tokens_per_s >= recommend.MIN_TOKENS_PER_S
        assert "GiB usable" in pick.why and "tokens/s" in pick.why and f"{pick.ctx}-token context" in pick.why
        assert 0 < pick.kv_bytes < pick.memory_bytes and pick.ctx >= recommend.RECOMMEND_CTX
        assert pick.next_tier
        assert pick.pull_command.startswith(f"aidevops-local pull {pick.repo}")


def test_next_tier_names_what_it_would_take():
    result = recommend.recommend(hardware.from_profile(PROFILES["8 GB laptop"]))
    chat = next(p for p in result.picks if p.use == "chat")
    assert re.search(r"^\S.* (needs about [\d.]+ GiB|fits .* GB/s)", chat.next_tier), chat.next_tier
    top = recommend.recommend(hardware.from_profile(BIG["160 GB with an H200"]))
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
    assert {"bartowski", "ggml-org", "unsloth", "lmstudio-community"} <= publishers
    for m in models:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+-GGUF", m.repo), m.repo
        assert m.file.lower().endswith(".gguf") and m.quant
        assert set(m.use) <= set(catalog.USES) and m.shape.n_layer > 0 and m.why
    assert {u for m in models for u in m.use} == set(catalog.USES)


def test_every_catalog_file_carries_its_mark_date_and_sane_facts():
    date, models = recommend.load_catalog()
    for m in models:
        assert m.checked in catalog.CHECK_MARKS and catalog.DATE_RE.fullmatch(m.seen) and m.seen <= date, m.file
        assert m.size_bytes > 0 and m.quant.lower() in m.file.lower() and m.quant in catalog.QUANT_QUALITY, m.file
        assert 0 < m.params_b and m.shape.ctx_train >= 512 and m.shape.n_head % m.shape.n_head_kv == 0, m.name
        if m.active_params_b:  # a mixture of experts reads a share of its weights per token
            assert m.active_params_b < m.params_b and m.shape.active_fraction < 0.25, m.name
        # a file of about 4.5 bits per weight at Q4_K_M, more for higher quants
        bits = 8 * m.size_bytes / (m.params_b * 1e9)
        assert 3.5 < bits < 9.5, (m.file, bits)
        split = hub.SPLIT_RE.match(m.file.rsplit("/", 1)[-1])
        assert bool(split) == bool(m.parts_bytes), m.file
        if split:
            assert int(split["no"]) == 1 and int(split["count"]) == len(m.parts_bytes)
            assert abs(sum(m.parts_bytes) - m.size_bytes) < 0.2e9
    variants = {}
    for m in models:
        variants.setdefault(m.name, []).append(m)
    for name, files in variants.items():  # the main file first, then higher quants of the same model
        assert len({f.file for f in files}) == len(files), name
        assert files[0].quant_quality <= min(f.quant_quality for f in files), name


def test_a_split_set_in_the_catalog_is_what_pull_chooses():
    """pull --file with the catalog's first part takes the whole set (downloads use hub.choose_file)."""
    _, models = recommend.load_catalog()
    split = [m for m in models if m.parts_bytes]
    assert {m.name for m in split} >= {"gpt-oss 120B", "Llama 3.3 70B Instruct"}
    for m in split:
        count = len(m.parts_bytes)
        stem = m.file[: -len("-00001-of-0000N.gguf")]
        parts = [
            hub.RemotePart(f"{stem}-{i:05d}-of-{count:05d}.gguf", size, "ab" * 32)
            for i, size in enumerate(m.parts_bytes, 1)
        ]
        single = hub.RemotePart("other-Q8_0.gguf", 1, "cd" * 32)
        chosen = hub.choose_file(hub.group_models([*parts, single]), repo_id=m.repo, filename=m.file)
        assert chosen.split and chosen.filename == m.file and chosen.size_bytes == sum(m.parts_bytes)
        assert chosen.quant == m.quant


def test_catalog_points_at_files_that_were_seen():
    _, models = recommend.load_catalog()
    by_name = {m.name: m for m in models if m.quant == "Q4_K_M"}
    coder = by_name["Qwen2.5 Coder 1.5B Instruct"]
    assert (coder.repo, coder.file, coder.checked) == (
        "unsloth/Qwen2.5-Coder-1.5B-Instruct-GGUF",
        "Qwen2.5-Coder-1.5B-Instruct-Q4_K_M.gguf",
        "hub",
    )
    assert coder.size_bytes == 986 * 10**6
    assert by_name["Qwen3 32B"].repo == "ggml-org/Qwen3-32B-GGUF" and by_name["Qwen3 32B"].checked == "no"
    unseen = {m.name for m in models if not m.file_seen}
    assert unseen == {"Gemma 3 12B Instruct", "Qwen3 30B A3B", "Qwen3 32B", "Qwen3 Coder 30B A3B Instruct"}


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
    assert [p["name"] for p in data["picks"][:2]] == ["Gemma 3 27B Instruct", "Qwen2.5 Coder 32B Instruct"]
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
    assert "Gemma 3 27B" in done.stdout and "next:" in done.stdout and "aidevops-local pull" in done.stdout
    assert re.search(r"\d{5} \(KV [\d.]+ [GM]i?B\)", done.stdout) and "(estimated)" in done.stdout


@pytest.mark.parametrize(
    ("entry", "complaint"),
    [
        ('checked = "maybe"\nseen = "2026-12-04"\n', "checked"),
        ('checked = "hub"\n', "seen"),
        ('checked = "hub"\nseen = "2026-12-04"\nparts_gb = [1.0, 0.5]\n', "split set"),
    ],
)
def test_a_catalog_file_without_its_mark_or_with_odd_parts_is_refused(tmp_path, entry, complaint):
    bad = tmp_path / "catalog.toml"
    bad.write_text(_catalog_text([("A 1B", 50, "a-Q4_K_M.gguf", 1.5, entry)]))
    with pytest.raises(ConfigError, match=complaint):
        recommend.load_catalog(bad)


def _catalog_text(files: list[tuple[str, int, str, float, str]]) -> str:
    """A catalog of small llama-shaped chat models: (name, rank, file, size in GB, the file's marks)."""
    out = ['updated = "2026-12-04"']
    for name, rank, file, size, marks in files:
        out.append(
            f'[[model]]\nname = "{name}"\nuse = ["chat", "coding"]\nrank = {rank}\nrepo = "org/{name.replace(" ", "-")}'
            f'-GGUF"\nfile = "{file}"\nsize_gb = {size}\n{marks}arch = "llama"\nlayers = 16\nembd = 2048\n'
            "ff = 8192\nheads = 32\nkv_heads = 8\nhead_dim = 64\nvocab = 128256\nctx = 131072\nparams_b = 1.2\n"
            'why = "a test model"\n'
        )
    return "\n".join(out)


SEEN = 'checked = "hub"\nseen = "2026-12-04"\n'
UNSEEN = 'checked = "no"\nseen = "2026-12-04"\n'


def test_a_file_nobody_saw_is_never_the_first_pick_when_a_seen_one_of_similar_quality_fits(tmp_path):
    path = tmp_path / "catalog.toml"
    path.write_text(
        _catalog_text([("Seen 1B", 60, "seen-Q4_K_M.gguf", 0.8, SEEN), ("Unseen 1B", 65, "u-Q4_K_M.gguf", 0.8, UNSEEN)])
    )
    result = recommend.recommend(hardware.from_profile(BIG["CPU-only 16 GB"]), catalog=path)
    assert result.picks[0].name == "Seen 1B" and result.picks[0].checked == "hub"
    later = next(p for p in result.picks if p.name == "Unseen 1B")
    assert later.checked == "no" and "not seen on the Hub" in later.why and "search --repo" in later.why
    for profile in [*PROFILES.values(), *BIG.values()]:  # the shipped catalog: the first pick was seen
        assert recommend.recommend(hardware.from_profile(profile)).picks[0].checked != "no"


def test_a_higher_quant_is_taken_when_memory_is_plentiful_and_the_q4_when_it_is_tight(tmp_path):
    path = tmp_path / "catalog.toml"
    q8 = '\n[[model.variant]]\nfile = "m-Q8_0.gguf"\nsize_gb = 1.3\nchecked = "hub"\nseen = "2026-12-04"\n'
    text = _catalog_text([("M 1B", 60, "m-Q4_K_M.gguf", 0.8, SEEN)]).replace(
        'why = "a test model"\n', 'why = "a test model"\n' + q8
    )
    path.write_text(text)
    roomy = recommend.recommend(hardware.from_profile(BIG["160 GB with an H200"]), catalog=path)
    assert [(p.name, p.quant) for p in roomy.picks] == [("M 1B", "Q8_0")]
    tight = dict(
        BIG["160 GB with an H200"],
        gpus=[{"vendor": "nvidia", "name": "NVIDIA GeForce RTX 4090", "vram_gb": 3.2, "backend": "cuda"}],
    )
    assert [p.quant for p in recommend.recommend(hardware.from_profile(tight), catalog=path).picks] == ["Q4_K_M"]


@pytest.mark.parametrize("machine", list(BIG))
def test_recommend_json_uses_what_the_machine_has(machine, tmp_path, monkeypatch, capsys):
    """Through the CLI: every pick fits; 160 GB machines get a 70B-class or 120B MoE model; plentiful GPU
    memory takes a Q6_K/Q8_0; contexts grow past 8192 where they fit, with their KV cost shown."""
    from aidevops_local.cli.main import main as cli

    profile = tmp_path / "machine.json"
    profile.write_text(json.dumps(BIG[machine]))
    monkeypatch.setenv("AIDEVOPS_HARDWARE_PROFILE", str(profile))
    assert cli(["recommend", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    picks = data["picks"]
    assert 2 <= len(picks) <= 3 and data["catalog_date"]
    for p in picks:
        if p["device"].startswith("gpu"):
            assert p["vram_bytes"] <= data["usable_vram"]
        else:
            assert p["ram_bytes"] + p["vram_bytes"] <= data["usable_ram"]
        assert p["size_bytes"] > 0 and p["kv_bytes"] > 0 and p["tokens_per_s"] >= recommend.MIN_TOKENS_PER_S
        assert p["speed_basis"] == "estimated" and p["checked"] in catalog.CHECK_MARKS and p["seen"]
        assert recommend.RECOMMEND_CTX <= p["ctx"] <= p["ctx_train"]
    if "16 GB" not in machine:
        assert all(p["ctx"] > 8192 for p in picks), [(p["name"], p["ctx"]) for p in picks]
    if "160 GB" in machine:
        assert LARGE_MODELS & {p["name"] for p in picks}
    if "H200" in machine:
        assert {"Q6_K", "Q8_0"} & {p["quant"] for p in picks}
        assert all(p["device"] == "gpu (cuda)" for p in picks)
