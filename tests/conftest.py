"""Every test runs against its own root: no test touches the real ~/.aidevops, Hugging Face cache or
keyring."""

from __future__ import annotations

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
