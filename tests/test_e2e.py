"""The README's path for a new user, as real processes: install -> serve -> chat -> status -> stop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import psutil

from tests.serving import with_model

CLI = [sys.executable, "-m", "aidevops_local"]


def run(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=180, stdin=subprocess.DEVNULL)


def test_install_serve_chat_status_stop(fake_releases, release_archive, tiny_gguf, free_port, isolated_home):
    archive = release_archive()
    fake_releases.add_release("b10068", {archive.name: archive})
    env = dict(os.environ, AIDEVOPS_LLAMA_RELEASES_URL=fake_releases.base_url)
    (isolated_home / "local-models").mkdir(parents=True, exist_ok=True)
    (isolated_home / "local-models" / "config.toml").write_text("threads = 1\nctx_size = 2048\nparallel = 1\n")

    done = run("install", "--backend", "cpu", env=env)
    assert done.returncode == 0, done.stderr
    assert (isolated_home / "bin" / "llama-server").exists()

    port = free_port()
    done = run("serve", str(tiny_gguf), "--port", str(port), env=env)
    assert done.returncode == 0, done.stderr
    endpoint = done.stdout.strip().splitlines()[-1]
    assert endpoint == f"http://127.0.0.1:{port}/v1"
    pid = json.loads((isolated_home / "local-models" / "server.json").read_text())["pid"]
    try:
        body = with_model({"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 8}, endpoint)
        reply = httpx.post(f"{endpoint}/chat/completions", timeout=60, json=body).json()
        assert reply["usage"]["completion_tokens"] > 0

        done = run("status", "--json", env=env)
        assert done.returncode == 0, done.stderr
        status = json.loads(done.stdout)
        assert status["running"] and status["pid"] == pid and status["endpoint"] == endpoint
        assert status["build"] and status["rss_bytes"] > 0
        # The server outlives the CLI that started it: it runs detached, in its own session.
        assert psutil.Process(pid).ppid() != os.getpid()
        assert os.getsid(pid) == pid
    finally:
        done = run("stop", env=env)
    assert done.returncode == 0, done.stderr
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    done = run("status", env=env)
    assert done.returncode == 3
    assert "stopped" in done.stdout


def test_version_and_help_run_without_a_runtime(isolated_home):
    env = dict(os.environ)
    done = run("--version", env=env)
    assert done.returncode == 0 and done.stdout.startswith("aidevops-local ")
    for command in ("install", "update", "serve", "stop", "status"):
        done = run(command, "--help", env=env)
        assert done.returncode == 0 and "examples:" in done.stdout, command


def test_serve_without_runtime_exits_4(isolated_home, tiny_gguf):
    done = run("serve", str(tiny_gguf), env=dict(os.environ))
    assert done.returncode == 4
    assert "install" in done.stderr
    assert not Path(isolated_home / "local-models" / "server.json").exists()
