"""Search and file listing against a local Hub that speaks the real protocol to the real huggingface_hub."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from aidevops_local.core.models import hub
from aidevops_local.core.system import hardware
from aidevops_local.core.system.errors import ChoiceNeeded, GatedRepo, ModelNotFound, NetworkError, NotFound


@pytest.fixture
def hub_env(fake_hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    return fake_hub


def _quants(*names: str, data: bytes = b"GGUF-not-really") -> dict:
    return {name: data for name in names}


def test_search_lists_gguf_repos_by_downloads(hub_env):
    hub_env.add_repo(
        "bartowski/Qwen-Coder-GGUF",
        _quants("a-Q4_K_M.gguf"),
        downloads=500,
        likes=9,
        last_modified="2026-03-04T05:06:07Z",
    )
    hub_env.add_repo("unsloth/Qwen-Chat-GGUF", _quants("b-Q4_K_M.gguf"), downloads=9000, gated="manual")
    hub_env.add_repo("someone/qwen-safetensors", {"model.safetensors": b"x"}, downloads=10**6)
    hub_env.add_repo("other/Llama-GGUF", _quants("c-Q4_K_M.gguf"), downloads=10**5)
    found = hub.search("qwen")
    assert [r.repo_id for r in found] == ["unsloth/Qwen-Chat-GGUF", "bartowski/Qwen-Coder-GGUF"]
    chat, coder = found
    assert chat.downloads == 9000 and chat.gated == "manual"
    assert coder.likes == 9 and coder.last_modified == "2026-03-04"
    assert all(r.path.startswith(("/api/models", "/api/whoami")) for r in hub_env.requests)
    assert len(hub.search("qwen", limit=1)) == 1


def test_search_with_several_words_finds_repos_holding_all_of_them(hub_env):
    """The Hub matches its search string as one piece of the id: "qwen coder" alone finds nothing. The
    search asks for the most selective word and keeps the repos whose id holds every word."""
    for repo, downloads in {
        "Qwen/Qwen2.5-Coder-7B-Instruct-GGUF": 700,
        "bartowski/Qwen2.5-Coder-14B-Instruct-GGUF": 900,
        "unsloth/Qwen3-8B-GGUF": 5000,
        "someone/deepseek-coder-6.7b-GGUF": 8000,
    }.items():
        hub_env.add_repo(repo, _quants("m-Q4_K_M.gguf"), downloads=downloads)
    hub_env.add_repo("Qwen/Qwen2.5-Coder-7B-Instruct", {"model.safetensors": b"x"}, downloads=10**6)
    found = [r.repo_id for r in hub.search("Qwen  CODER")]
    assert found == ["bartowski/Qwen2.5-Coder-14B-Instruct-GGUF", "Qwen/Qwen2.5-Coder-7B-Instruct-GGUF"]
    asked = [r.target for r in hub_env.requests if r.path == "/api/models"]
    assert asked and all("search=coder" in t for t in asked)
    assert [r.repo_id for r in hub.search("qwen coder", limit=1)] == ["bartowski/Qwen2.5-Coder-14B-Instruct-GGUF"]
    assert hub.search("qwen coder 32b") == []
    assert hub.search_word(["qwen", "coder", "instruct", "gguf"]) == "coder"
    assert hub.search_word(["gguf"]) == "gguf"


def test_list_files_groups_split_sets_and_marks_fit(hub_env, tiny_gguf, tiny_split_gguf):
    files = {
        "tiny-Q8_0.gguf": tiny_gguf,
        "README.md": b"# tiny",
        "mmproj-model-f16.gguf": tiny_gguf,
        "Q4_K_M/tiny-Q4_K_M-00001-of-00002.gguf": tiny_split_gguf[0],
        "Q4_K_M/tiny-Q4_K_M-00002-of-00002.gguf": tiny_split_gguf[1],
        "broken-Q2_K-00001-of-00003.gguf": tiny_gguf,
    }  # an incomplete set: left out
    hub_env.add_repo("org/tiny-GGUF", files)
    listed = hub.list_files("org/tiny-GGUF", hardware=hardware.detect())
    by_name = {f.filename: f for f in listed}
    assert set(by_name) == {"tiny-Q8_0.gguf", "Q4_K_M/tiny-Q4_K_M-00001-of-00002.gguf"}
    split = by_name["Q4_K_M/tiny-Q4_K_M-00001-of-00002.gguf"]
    assert split.split and split.quant == "Q4_K_M"
    assert split.size_bytes == sum(p.stat().st_size for p in tiny_split_gguf)
    single = by_name["tiny-Q8_0.gguf"]
    assert single.parts[0].sha256 and len(single.parts[0].sha256) == 64
    assert single.fits is True and single.needs_bytes > 0
    tiny_machine = hardware.from_profile(
        {"os": "linux", "arch": "x64", "physical_cores": 2, "ram_gb": 2.05, "backends": ["cpu"]}
    )
    assert all(f.fits is False for f in hub.list_files("org/tiny-GGUF", hardware=tiny_machine))
    assert all(f.fits is None for f in hub.list_files("org/tiny-GGUF"))


def test_unsafe_names_are_not_listed(hub_env):
    hub_env.add_repo("evil/repo-GGUF", _quants("../../evil-Q4_K_M.gguf", "good-Q4_K_M.gguf"))
    assert [f.filename for f in hub.list_files("evil/repo-GGUF")] == ["good-Q4_K_M.gguf"]


def test_missing_repo_is_model_not_found(hub_env):
    with pytest.raises(ModelNotFound, match="No repository nobody/nothing"):
        hub.list_files("nobody/nothing")


def test_offline_mode_never_touches_the_network(hub_env, monkeypatch):
    hub_env.add_repo("org/x-GGUF", _quants("x-Q4_K_M.gguf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(NetworkError, match="Offline mode"):
        hub.search("x")
    with pytest.raises(NetworkError, match="Offline mode"):
        hub.list_files("org/x-GGUF")
    assert hub_env.requests == []


def test_unreachable_hub_is_a_network_error(monkeypatch, free_port):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(NetworkError, match="Cannot reach"):
        hub.search("anything")


def test_gated_error_explains_the_licence(hub_env):
    from aidevops_local.core.models import downloads

    hub_env.add_repo("google/gated-GGUF", _quants("g-Q4_K_M.gguf"), gated="manual", allowed_tokens={"hf_ok"})
    with pytest.raises(GatedRepo) as info:
        downloads.pull("google/gated-GGUF")
    assert "licence" in info.value.message or "licence" in info.value.hint
    assert f"{hub_env.endpoint}/google/gated-GGUF" in info.value.hint
    assert "token" in info.value.hint


def _file(name: str, quant: str, size: int = 1) -> hub.RemoteFile:
    return hub.RemoteFile(filename=name, size_bytes=size, quant=quant, parts=(hub.RemotePart(name, size, "0" * 64),))


def test_default_quant_order():
    q4, q5, q8 = _file("m-Q4_K_M.gguf", "Q4_K_M"), _file("m-Q5_K_M.gguf", "Q5_K_M"), _file("m-Q8_0.gguf", "Q8_0")
    assert hub.choose_file([q8, q5, q4], repo_id="o/r") is q4
    assert hub.choose_file([q8, q5], repo_id="o/r") is q5
    assert hub.choose_file([q8], repo_id="o/r") is q8
    assert hub.choose_file([q4, q8], repo_id="o/r", quant="q8_0") is q8
    assert hub.choose_file([q4, q8], repo_id="o/r", filename="m-Q8_0.gguf") is q8
    with pytest.raises(NotFound, match="no Q6_K"):
        hub.choose_file([q4, q8], repo_id="o/r", quant="Q6_K")


def test_no_default_quant_asks():
    files = [_file("m-Q2_K.gguf", "Q2_K"), _file("m-Q6_K.gguf", "Q6_K")]
    with pytest.raises(ChoiceNeeded) as info:
        hub.choose_file(files, repo_id="o/r")
    assert info.value.choices == ["Q2_K", "Q6_K"]
    assert hub.choose_file(files[:1], repo_id="o/r").quant == "Q2_K"  # the only file needs no question


def _cli(*args):
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "aidevops_local", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_cli_search_and_repo_listing(hub_env, tiny_gguf):
    hub_env.add_repo("org/tiny-GGUF", {"tiny-Q8_0.gguf": tiny_gguf}, downloads=42)
    done = _cli("search", "tiny")
    assert done.returncode == 0, done.stderr
    assert "org/tiny-GGUF" in done.stdout and "42" in done.stdout
    done = _cli("search", "tiny", "--json")
    assert json.loads(done.stdout)[0]["repo_id"] == "org/tiny-GGUF"
    done = _cli("search", "--repo", "org/tiny-GGUF")
    assert done.returncode == 0, done.stderr
    assert "tiny-Q8_0.gguf" in done.stdout and "Q8_0" in done.stdout and "yes" in done.stdout
    done = _cli("search", "nothing-matches")
    assert done.returncode == 5


@pytest.mark.parametrize("command", [["search", "qwen"], ["search", "--repo", "org/x-GGUF"], ["pull", "org/x-GGUF"]])
@pytest.mark.parametrize("where", ["closed port", "unresolvable name"])
def test_an_unreachable_hub_fails_at_once_with_one_error(free_port, command, where):
    """A refused connection or a name that does not resolve is not retried (huggingface_hub would try six
    times over ~24 s, logging each try): one error line, its hint, exit 7."""
    endpoint = f"http://127.0.0.1:{free_port()}" if where == "closed port" else "http://nonexistent.invalid"
    done = subprocess.run(
        [sys.executable, "-m", "aidevops_local", *command],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "300", "HF_ENDPOINT": endpoint},
        timeout=120,
        check=False,
    )
    assert done.returncode == 7, done.stderr
    lines = done.stderr.splitlines()
    assert [line.split(":")[0] for line in lines] == ["error", "hint"], done.stderr
    assert "Cannot reach the Hugging Face Hub" in lines[0] and "Retry" not in done.stderr


def test_the_hub_is_reached_through_the_users_proxy():
    """Behind a proxy the Hub is reached through it (the fail-fast transport must not bypass it)."""
    import http.server
    import threading

    seen: list[str] = []

    class Proxy(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen.append(self.path)
            self.send_error(502)

        def log_message(self, *args):
            pass

    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        env = {k: v for k, v in os.environ.items() if k.lower() != "no_proxy"}
        env.update(
            {
                "HF_ENDPOINT": "http://hub.invalid",
                "HTTP_PROXY": f"http://127.0.0.1:{proxy.server_address[1]}",
                "COLUMNS": "300",
            }
        )
        done = subprocess.run(
            [sys.executable, "-m", "aidevops_local", "search", "qwen"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert seen and seen[0].startswith("http://hub.invalid/api/models"), (seen, done.stderr)
    assert done.returncode != 0 and "Traceback" not in done.stderr
