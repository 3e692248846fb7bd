"""tests/online/smoke.sh, end to end against the local stand-ins (--offline): the same script the workflows run
against the real GitHub and Hub, here with the real llama-server release archive from FakeReleases and the tiny
model from FakeHub, the chat through the openai client."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SMOKE = Path(__file__).parent / "online" / "smoke.sh"
# Names as long as real ones: the CLI's messages wrap at 80 columns when not on a terminal, and the script's
# checks must read through that.
REPO = "smoke-test/Tiny-Random-Llama-Instruct-For-Smoke-Tests-GGUF"
FILE = "Tiny-Random-Llama-Instruct-For-Smoke-Tests-Q8_0.gguf"
STEPS = ["install", "search", "pull", "serve", "chat", "usage", "stop", "update-check"]


def run_smoke(*args: str, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SMOKE), *args], capture_output=True, text=True, env=env, timeout=timeout, stdin=subprocess.DEVNULL
    )


@pytest.mark.real_server
def test_smoke_script_passes_every_step_against_the_stand_ins(
    fake_releases, fake_hub, release_archive, tiny_gguf, free_port, isolated_home
):
    archive = release_archive()
    fake_releases.add_release("b10068", {archive.name: archive})
    fake_hub.add_repo(REPO, files={FILE: tiny_gguf, "README.md": b"# tiny"}, downloads=4321)
    (isolated_home / "local-models").mkdir(parents=True)
    (isolated_home / "local-models" / "config.toml").write_text("threads = 1\nctx_size = 2048\nparallel = 1\n")
    port = free_port()
    env = dict(
        os.environ,
        PYTHON=sys.executable,
        AIDEVOPS_LLAMA_RELEASES_URL=fake_releases.base_url,
        HF_ENDPOINT=fake_hub.endpoint,
        SMOKE_MODEL=f"{REPO}:Q8_0",
        SMOKE_QUERY="Tiny-Random-Llama-Instruct",
        SMOKE_PORT=str(port),
        COLUMNS="60",
    )

    done = run_smoke("--offline", env=env)

    assert done.returncode == 0, done.stdout + done.stderr
    steps = re.findall(r"^smoke: (\S+) ok in \d+\.\d s: (.*)$", done.stdout, re.MULTILINE)
    assert [name for name, _ in steps] == STEPS, done.stdout
    detail = dict(steps)
    assert detail["install"].startswith("Installed llama.cpp b10068 (cpu)")
    assert detail["search"] == f"{REPO} is listed"
    pulled = Path(detail["pull"])
    assert pulled.parent == isolated_home / "models" and pulled.read_bytes() == tiny_gguf.read_bytes()
    assert detail["serve"] == f"http://127.0.0.1:{port}/v1"
    assert re.fullmatch(r"\S+: 16 tokens: .*", detail["chat"]), detail["chat"]
    assert detail["usage"].startswith("1 request(s), 16 tokens out"), detail["usage"]
    assert detail["stop"] == "stopped (status exits 3)"
    assert detail["update-check"].startswith("Up to date: llama.cpp b10068")
    assert re.search(r"^smoke: all 8 steps passed in \d+\.\d s$", done.stdout, re.MULTILINE)


def test_offline_refuses_to_reach_the_real_services(isolated_home):
    for endpoint in ("https://huggingface.co", "http://127.0.0.1:9@huggingface.co", "http://localhost.example.org"):
        env = dict(
            os.environ,
            PYTHON=sys.executable,
            AIDEVOPS_LLAMA_RELEASES_URL="http://127.0.0.1:9/releases",
            HF_ENDPOINT=endpoint,
        )

        done = run_smoke("--offline", env=env, timeout=60)

        assert done.returncode == 2, endpoint
        assert done.stderr.strip() == (
            "smoke: --offline needs HF_ENDPOINT pointing at a local stand-in "
            f"(http://127.0.0.1:PORT...), got '{endpoint}'"
        )
        assert done.stdout == ""


def test_unknown_argument_is_a_usage_error(isolated_home):
    done = run_smoke("--offlin", env=dict(os.environ), timeout=60)

    assert done.returncode == 2
    assert "unknown argument '--offlin'" in done.stderr and "--help" in done.stderr


def test_a_failed_step_says_which_and_why_on_one_line(
    fake_releases, fake_hub, release_archive, tiny_gguf, free_port, isolated_home
):
    archive = release_archive()
    fake_releases.add_release("b10068", {archive.name: archive})
    fake_hub.add_repo(REPO, files={FILE.replace("Q8_0", "Q4_0"): tiny_gguf}, downloads=4321)  # no Q8_0
    env = dict(
        os.environ,
        PYTHON=sys.executable,
        AIDEVOPS_LLAMA_RELEASES_URL=fake_releases.base_url,
        HF_ENDPOINT=fake_hub.endpoint,
        SMOKE_MODEL=f"{REPO}:Q8_0",
        SMOKE_QUERY="Tiny-Random-Llama-Instruct",
        SMOKE_PORT=str(free_port()),
        COLUMNS="60",
    )  # a narrow terminal: the CLI's messages would wrap

    done = run_smoke("--offline", env=env)

    assert done.returncode == 1, done.stdout + done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"smoke: pull FAILED \(exit \d+\) after \d+\.\d s: error: .+ hint: .+", last), last
    assert REPO in last
    assert [line.split()[1] for line in done.stdout.splitlines()[1:-1]] == ["install", "search"]
