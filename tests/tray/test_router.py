"""Router mode, against the real llama-server: what the build supports (read from --help, cached), and a
switch that is a load request to the running router rather than a restart."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time

import httpx
import pytest

from aidevops_local.core.llamacpp import build_features
from aidevops_local.core.serving import router
from tests.fixtures.prepare import RunningServer, wait_healthy


@pytest.fixture
def llama_server(llama_server_dir):
    return llama_server_dir / "llama-server"


@contextlib.contextmanager
def running_llama_server(llama_server, port: int, log_path, *args: str):
    """The real llama-server on 127.0.0.1 with one thread and a small context, healthy, until the block ends.
    Raises with its log's tail if it exits or is not healthy in time: a test must not run against nothing."""
    argv = [str(llama_server), "--host", "127.0.0.1", "--port", str(port), "-t", "1", "-c", "512", *args]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    try:
        wait_healthy(RunningServer(proc, port, log_path), timeout=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


@pytest.fixture
def router_server(llama_server, tiny_gguf, tmp_path, free_port):
    models = tmp_path / "models"
    models.mkdir()
    for name in ("alpha", "beta"):
        shutil.copy(tiny_gguf, models / f"{name}.gguf")
    with running_llama_server(
        llama_server, free_port(), tmp_path / "router.log", "--models-dir", str(models), "--models-max", "1"
    ) as base:
        yield base, models


def test_support_of_the_real_build(llama_server, isolated_home):
    assert router.support(llama_server) == router.RouterSupport(
        router=True, presets=True, models_max=True, sleep_idle=True
    )


def test_old_build_without_router_mode():
    old = build_features.parse_help("--model FNAME\n--port N\n")
    assert router.from_features(old) == router.RouterSupport()


def test_load_and_switch_on_a_running_router(router_server):
    base, models = router_server
    available = router.models(base)
    assert {m.id for m in available} == {"alpha", "beta"} and all(m.state == "unloaded" for m in available)
    beta = router.router_id(available, "whatever", models / "beta.gguf")  # found by path
    assert beta == "beta"
    router.load(base, "alpha", timeout=30)
    assert router.loaded(base) == ["alpha"]
    router.load(base, "beta", timeout=30)  # --models-max 1: loading beta unloads alpha, no restart
    assert router.loaded(base) == ["beta"]
    router.unload(base, "beta")
    deadline = time.monotonic() + 10
    while router.loaded(base) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert router.loaded(base) == []


def test_unknown_model_is_not_found(router_server):
    base, _ = router_server
    from aidevops_local.core.system.errors import ModelNotFound

    with pytest.raises(ModelNotFound):
        router.load(base, "nope", timeout=5)


def test_a_plain_server_is_not_a_router(llama_server, tiny_gguf, free_port, tmp_path):
    with running_llama_server(llama_server, free_port(), tmp_path / "plain.log", "-m", str(tiny_gguf)) as base:
        assert httpx.get(f"{base}/health", timeout=5).status_code == 200  # up, so None below means "no router"
        assert router.models(base) is None


def test_the_helper_fails_when_the_server_does_not_come_up(llama_server, free_port, tmp_path):
    with pytest.raises(RuntimeError, match="no-such-flag"):
        with running_llama_server(llama_server, free_port(), tmp_path / "bad.log", "--no-such-flag"):
            pytest.fail("the block ran against a server that never started")
