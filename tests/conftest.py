"""Every test runs against its own root: no test touches the real ~/.aidevops, Hugging Face cache or
keyring."""

from __future__ import annotations

import json

import pytest

from tests.serving import serving_settings

pytest_plugins = ["tests.fixtures.plugin"]


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    root = tmp_path / "aidevops"
    root.mkdir()
    monkeypatch.setenv("AIDEVOPS_HOME", str(root))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    monkeypatch.delenv("AIDEVOPS_LLAMA_RELEASES_URL", raising=False)
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    return root


@pytest.fixture
def system_runtime(llama_server_dir):
    """The real llama-server adopted as a system binary (cheap); the install path has its own tests."""
    from aidevops_local.core.llamacpp import runtime

    runtime.use_system(path=llama_server_dir / "llama-server")
    serving_settings()


@pytest.fixture
def port(free_port) -> int:
    return free_port()


@pytest.fixture
def small_machine(tmp_path, monkeypatch):
    """This machine as the plan sees it: 1.15 GiB available, ~150 MiB after the 1 GiB margin it leaves, less than
    SmolLM2 needs at a 2048-token context (~200 MiB): alone, it does not fit."""
    profile = tmp_path / "small.json"
    machine = {"os": "linux", "arch": "x64", "physical_cores": 1, "ram_gb": 1.15, "cpu_features": ["avx2"]}
    profile.write_text(json.dumps({**machine, "backends": ["cpu"]}))
    monkeypatch.setenv("AIDEVOPS_HARDWARE_PROFILE", str(profile))
