"""Beyond one machine, against the real thing: llama.cpp's RPC server (the test runtime's ggml-rpc-server) as
workers on loopback, a model planned across them that does not fit this machine's (faked) memory budget,
chat and usage through them, a worker killed mid-request, and the worker command on this machine."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import httpx
import psutil
import pytest

from aidevops_local.cli.main import main as cli
from aidevops_local.core.accounting import usage
from aidevops_local.core.rpc import devices, pool, worker
from aidevops_local.core.serving import server, supervisor
from aidevops_local.core.system import config
from aidevops_local.core.system.errors import ConfigError, Refused
from tests.serving import chat, serving_settings
from tests.waiting import wait_for


@pytest.fixture
def rpc_servers(llama_server_dir, free_port):
    """start(n): n raw RPC servers on loopback ports, as other machines' workers would be; killed after."""
    started: list[subprocess.Popen] = []

    def start(n: int) -> list[tuple[str, subprocess.Popen]]:
        out = []
        for _ in range(n):
            port = free_port()
            proc = subprocess.Popen(
                [str(llama_server_dir / "ggml-rpc-server"), "--host", "127.0.0.1", "--port", str(port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            started.append(proc)
            wait_for(lambda p=port: worker.answers("127.0.0.1", p), what=f"the RPC server on port {port}")
            out.append((f"127.0.0.1:{port}", proc))
        return out

    yield start
    for proc in started:
        proc.kill()
        proc.wait(timeout=5)


def test_the_engine_says_each_workers_memory(system_runtime, rpc_servers, free_port):
    (one, _), (two, _) = rpc_servers(2)
    nobody = f"127.0.0.1:{free_port()}"  # nothing listens there
    found = devices.list_devices([one, two, nobody])
    assert [len(found[one]), len(found[two]), len(found[nobody])] == [1, 1, 0]
    assert 1 << 30 < found[one][0].free_bytes <= found[one][0].total_bytes


def test_worker_lines_from_the_network_are_checked():
    text = "  RPC0: 127.0.0.1:1 (100 MiB, 900 MiB free)\n  RPC1: 10.0.0.9:2 (5 MiB, 1 MiB free)\n  junk: (x MiB)"
    found = devices.parse(text, ["127.0.0.1:1"])
    assert [(d.name, d.total_bytes, d.free_bytes) for d in found["127.0.0.1:1"]] == [("RPC0", 100 << 20, 100 << 20)]


@pytest.mark.parametrize(
    "spec", ["-oProxyCommand=x@h", "me@host;rm", "host", "host:0", "host:99999", "a b:1", "h,i:5", "me@"]
)
def test_a_malformed_worker_is_refused_before_anything_runs(spec):
    with pytest.raises(ConfigError):
        pool.parse(spec)


def test_worker_forms():
    assert pool.parse("me@studio.local").ssh_target == "me@studio.local"
    assert pool.parse("192.168.1.20:50052").endpoint == "192.168.1.20:50052"


def test_a_model_too_big_for_this_machine_runs_across_two_workers(
    system_runtime, small_machine, rpc_servers, smollm2_gguf, capsys
):
    workers = [endpoint for endpoint, _ in rpc_servers(2)]
    serving_settings(workers=workers)
    status = server.serve(str(smollm2_gguf))
    try:
        preset = config.paths().router_presets.read_text()
        assert f"rpc = {','.join(workers)}" in preset
        assert "n-gpu-layers = 31" in preset and "tensor-split = 0.5,0.5" in preset  # every layer on the workers
        assert [chat(status.endpoint, status.model).status_code for _ in range(3)] == [200, 200, 200]
        capsys.readouterr()
        assert cli(["status", "--json"]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert [(w["worker"], w["via"], w["answers"]) for w in shown["workers"]] == [
            (w, "direct", True) for w in workers
        ]
        assert cli(["status"]) == 0
        assert f"{workers[0]} (" in capsys.readouterr().out
    finally:
        server.stop(grace=5)
    report = usage.report(live_log=None)
    assert report.total.requests == 3  # one row per request, as without workers


def test_without_the_workers_it_does_not_fit_and_says_so(system_runtime, small_machine, smollm2_gguf, free_port):
    nobody = f"127.0.0.1:{free_port()}"  # a worker whose RPC server does not run
    serving_settings(workers=[nobody])
    with pytest.raises(Refused) as refused:
        server.serve(str(smollm2_gguf))
    assert "does not fit" in refused.value.message and f"left out {nobody}" in refused.value.message
    assert server.status().state == "stopped"


def test_a_worker_that_dies_mid_request_ends_it_and_the_restart_leaves_it_out(
    system_runtime, rpc_servers, smollm2_gguf
):
    (first, _), (second, victim) = rpc_servers(2)
    serving_settings(workers=[first, second])
    status = server.serve(str(smollm2_gguf))
    try:
        threading.Timer(1.0, victim.kill).start()
        started = time.monotonic()
        body = {"model": status.model, "stream": True, "max_tokens": 4000}
        body["messages"] = [{"role": "user", "content": "Write a long story"}]
        with httpx.stream("POST", f"{status.endpoint}/chat/completions", json=body, timeout=60) as response:
            lines = list(response.iter_lines())
        assert time.monotonic() - started < 30  # ended, not hung
        assert not any("[DONE]" in line for line in lines) and "error" in lines[-1]
        after = wait_for(lambda: (s := server.status()).state == "crashed" and s, what="the crash to show")
        assert [(w["worker"], w["answers"]) for w in after.workers] == [(first, True), (second, False)]
        assert f"Worker {second} stopped answering" in after.message
        crash = supervisor.Supervisor(backoff=(0.0,)).observe(after)  # a first snapshot: no crash yet
        assert crash is None
        restarted = supervisor.restart(status.model)
        assert restarted.state == "running"
        assert [(w["worker"], w.get("left_out", False)) for w in restarted.workers] == [(first, False), (second, True)]
        assert f"rpc = {first}\n" in config.paths().router_presets.read_text()
        assert chat(restarted.endpoint, restarted.model).status_code == 200
    finally:
        server.stop(grace=5)


def test_the_crash_notice_names_the_worker():
    crash = supervisor.Crash(model="m", port=1, pid=2, restart_in=5.0, lost_workers=("me@studio",))
    assert crash.body == "m on port 1 exited. Worker me@studio stopped answering. Restarting in 5 s without it."


# ---- this machine as a worker ------------------------------------------------------------------------------


def test_worker_start_status_stop(system_runtime, capsys):
    assert cli(["worker", "start", "--json"]) == 0
    started = json.loads(capsys.readouterr().out)
    try:
        assert started["running"] and started["loopback"] and started["endpoint"].startswith("127.0.0.1:")
        assert started["devices"] and started["devices"][0]["free_bytes"] > 0
        assert cli(["worker", "start", "--json"]) == 0  # again: the same one, not a second
        assert json.loads(capsys.readouterr().out)["pid"] == started["pid"]
        listening = {c.laddr.ip for c in psutil.Process(started["pid"]).net_connections() if c.status == "LISTEN"}
        assert listening == {"127.0.0.1"}
        assert cli(["worker", "status"]) == 0
        assert "this machine only" in capsys.readouterr().out
    finally:
        assert cli(["worker", "stop"]) == 0
    assert not psutil.pid_exists(started["pid"]) or psutil.Process(started["pid"]).status() == psutil.STATUS_ZOMBIE
    assert cli(["worker", "status"]) == 3


def test_listening_beyond_loopback_says_what_it_exposes_and_the_cache_is_passed_on(system_runtime, capsys):
    assert cli(["worker", "start", "--listen", "0.0.0.0", "--cache", "--json"]) == 0
    try:
        captured = capsys.readouterr()
        shown = json.loads(captured.out)
        assert "has no authentication" in captured.err and not shown["loopback"] and shown["cache"]
        assert "--cache" in psutil.Process(shown["pid"]).cmdline()
    finally:
        worker.stop()


def test_stop_never_signals_a_process_we_did_not_start(system_runtime):
    other = subprocess.Popen(["sleep", "30"])
    try:
        record = {"pid": other.pid, "create_time": psutil.Process(other.pid).create_time(), "host": "127.0.0.1"}
        record |= {"port": 1, "binary": "/bin/sleep", "exe_id": [0, 0], "log_path": "", "started_at": 0.0}
        (config.paths().app_dir / "worker.json").write_text(json.dumps(record))
        assert worker.stop() is False
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_a_build_without_an_rpc_server_says_how_to_get_one(tmp_path, llama_server_dir, capsys):
    from aidevops_local.core.llamacpp import runtime

    build = tmp_path / "build"
    build.mkdir()
    for item in llama_server_dir.iterdir():
        if item.name != "ggml-rpc-server":
            (build / item.name).symlink_to(item)
    runtime.use_system(path=build / "llama-server")
    assert cli(["worker", "start"]) == 4
    assert "-DGGML_RPC=ON" in capsys.readouterr().err


def test_a_main_machine_with_its_own_gpu_leaves_the_split_to_llama_cpp():
    from aidevops_local.core.serving import pooling
    from aidevops_local.core.system import hardware

    card = {"vendor": "nvidia", "name": "NVIDIA GeForce RTX 4090", "vram_gb": 24, "backend": "cuda"}
    machine = {"os": "linux", "arch": "x64", "physical_cores": 8, "ram_gb": 32, "backends": ["cuda", "cpu"]}
    with_gpu = hardware.from_profile({**machine, "gpus": [card]})
    worker_device = devices.Device("RPC0", "10.0.0.5:50052", 8 << 30, 8 << 30)
    pooled = pool.Pool(members=[pool.Member("10.0.0.5:50052", "10.0.0.5:50052", [worker_device])])
    hw, backend, rpc, split = pooling.devices(with_gpu, "cuda", pooled)
    assert (backend, rpc, split) == ("rpc", "10.0.0.5:50052", False)
    assert [g.vram_total for g in hw.gpus] == [8 << 30]  # the plan counts the worker's memory only: errs low
    without = hardware.from_profile({**machine, "backends": ["cpu"]})
    assert pooling.devices(without, "cpu", pooled)[3] is True


def test_the_worker_gets_the_builds_environment_without_the_tools_secrets(
    system_runtime, llama_server_dir, monkeypatch
):
    """Like llama-server: the build's folder first on the loader's path, and no HF_TOKEN or GITHUB_TOKEN."""
    monkeypatch.setenv("HF_TOKEN", "hf_not_for_the_worker")
    monkeypatch.setenv("GITHUB_TOKEN", "gh_not_for_the_worker")
    started = worker.start()
    try:
        environ = psutil.Process(started.pid).environ()
        assert "HF_TOKEN" not in environ and "GITHUB_TOKEN" not in environ
        assert environ["LD_LIBRARY_PATH"].split(":")[0] == str(llama_server_dir)
    finally:
        worker.stop()
