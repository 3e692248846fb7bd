"""serve / stop / status against the real llama-server and real GGUF files."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import psutil
import pytest

from aidevops_local.cli.main import main as cli
from aidevops_local.core import config, launch, server
from aidevops_local.core.errors import CorruptModel, ModelNotFound, PortInUse, RuntimeNotInstalled, ServerStartFailed
from tests.serving import with_model


@pytest.fixture
def running(system_runtime, tiny_gguf, port):
    status = server.serve(str(tiny_gguf), port=port)
    yield status
    server.stop(grace=2)


def chat(endpoint: str, text: str = "Say hi", max_tokens: int = 8) -> dict:
    body = with_model({"messages": [{"role": "user", "content": text}], "max_tokens": max_tokens}, endpoint)
    response = httpx.post(f"{endpoint}/chat/completions", timeout=60, json=body)
    response.raise_for_status()
    return response.json()


def group_alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
        return True
    except ProcessLookupError:
        return False


def test_serve_chat_status_stop(running):
    assert running.running and running.state == "running"
    assert running.endpoint.startswith("http://127.0.0.1:")
    reply = chat(running.endpoint)
    assert reply["choices"][0]["message"]["role"] == "assistant"
    assert reply["usage"]["completion_tokens"] > 0

    status = server.status()
    assert status.pid == running.pid and status.rss_bytes > 0 and status.uptime_s >= 0
    assert status.model == running.model and status.ram_total_bytes > 0

    pid = running.pid
    result = server.stop(grace=2)
    assert result.stopped and not result.forced
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not group_alive(pid)
    assert server.status().state == "stopped"


def test_server_listens_only_on_loopback(running):
    """The public port is the Host-checking front's; llama-server itself listens on its private socket only."""
    front = psutil.Process(server.current_state().guard_pid)
    conns = [c for c in front.net_connections(kind="inet") if c.status == "LISTEN"]
    assert conns and all(c.laddr.ip == "127.0.0.1" for c in conns)
    assert not [c for c in psutil.Process(running.pid).net_connections(kind="inet") if c.status == "LISTEN"]


def test_second_serve_is_refused_while_one_runs(running, tiny_gguf):
    with pytest.raises(ServerStartFailed, match="already running"):
        server.serve(str(tiny_gguf), port=running.port + 1)


def test_port_taken_is_a_clear_error_and_leaves_nothing(system_runtime, tiny_gguf, port):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        with pytest.raises(PortInUse, match=str(port)) as err:
            server.serve(str(tiny_gguf), port=port)
    assert "--port" in err.value.hint
    assert server.current_state() is None


def test_port_taken_during_start_is_port_in_use(system_runtime, tiny_gguf, port, monkeypatch):
    """The port is grabbed between our check and the server's bind. llama-server says so in its log, but can
    exit before flushing that line: either way the user hears that the port is taken."""
    real_check = launch.check_port_free
    calls = []

    def check_after_the_first(host, p):
        calls.append(p)
        if len(calls) > 1:
            real_check(host, p)

    monkeypatch.setattr(launch, "check_port_free", check_after_the_first)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        with pytest.raises(PortInUse) as err:
            server.serve(str(tiny_gguf), port=port)
    assert "bind" in err.value.details or len(calls) == 2
    assert server.current_state() is None
    assert not [p for p in psutil.process_iter(["name"]) if p.info["name"] == "llama-server"
                and p.ppid() == os.getpid()]


@pytest.mark.parametrize("kind", ["empty", "truncated", "cut_header", "random_header"])
def test_corrupt_gguf_is_refused_before_start(system_runtime, corrupt_ggufs, port, kind):
    with pytest.raises(CorruptModel) as err:
        server.serve(str(corrupt_ggufs[kind]), port=port)
    assert err.value.hint
    assert server.current_state() is None


def test_missing_model_file(system_runtime, tmp_path, port):
    with pytest.raises(ModelNotFound):
        server.serve(str(tmp_path / "nope.gguf"), port=port)


def test_missing_binary_says_to_install(tiny_gguf, port):
    with pytest.raises(RuntimeNotInstalled) as err:
        server.serve(str(tiny_gguf), port=port)
    assert "install" in err.value.hint


def test_server_that_exits_during_start_is_reported_with_its_log(system_runtime, tiny_gguf, port):
    settings = config.load_settings()
    settings.extra_server_args = ["--no-such-flag"]
    config.save_settings(settings)
    with pytest.raises(ServerStartFailed) as err:
        server.serve(str(tiny_gguf), port=port)
    assert "no-such-flag" in err.value.details
    assert server.current_state() is None


def test_killed_server_shows_as_crashed_and_stop_clears_it(running):
    os.kill(running.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while server.status().state != "crashed" and time.monotonic() < deadline:
        time.sleep(0.05)
    status = server.status()
    assert status.state == "crashed" and not status.running
    assert "no longer running" in status.message
    result = server.stop()
    assert not result.stopped and "already exited" in result.message
    assert server.status().state == "stopped"


def test_status_survives_the_server_dying_while_it_runs(running):
    errors: list[BaseException] = []
    done = threading.Event()

    def poll():
        while not done.is_set():
            try:
                server.status()
            except BaseException as exc:  # noqa: BLE001 - any exception is the failure we look for
                errors.append(exc)
                return

    threads = [threading.Thread(target=poll) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    os.kill(running.pid, signal.SIGKILL)
    time.sleep(0.5)
    done.set()
    for t in threads:
        t.join(5)
    assert errors == []
    assert server.status().state == "crashed"


def test_stop_when_nothing_runs():
    result = server.stop()
    assert not result.stopped and result.message == "No server is running."
    assert cli(["stop"]) == 0


def test_stale_state_whose_pid_is_another_process_is_never_signalled():
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        state = server.ServerState(pid=stranger.pid, create_time=psutil.Process(stranger.pid).create_time(),
                                   host="127.0.0.1", port=8080, model="m", model_path="/m.gguf",
                                   binary="/x/llama-server", log_path="/nonexistent.log",
                                   started_at=time.time(), session_id="s")
        server._write_state(state)
        assert server.status().state == "crashed"
        result = server.stop(grace=1)
        assert not result.stopped
        assert stranger.poll() is None, "stop signalled a process it did not start"
        assert server.current_state() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_state_with_a_recycled_pid_is_not_ours(running):
    state = server.current_state()
    state.create_time -= 100  # same pid, other start time: what a recycled pid looks like
    assert server.owned_process(state) is None


def test_in_flight_request_does_not_block_stop(running):
    """llama-server ignores the first SIGTERM while generating; stop must still end it well within grace."""
    def long_request():
        try:
            chat(running.endpoint, "Write a long story", max_tokens=4000)
        except httpx.HTTPError:
            pass

    worker = threading.Thread(target=long_request)
    worker.start()
    time.sleep(0.5)
    started = time.monotonic()
    result = server.stop(grace=5)
    assert result.stopped and time.monotonic() - started < 5
    assert not group_alive(running.pid)
    worker.join(10)


def test_cli_serve_status_stop_json(system_runtime, tiny_gguf, port, capsys):
    assert cli(["serve", str(tiny_gguf), "--port", str(port), "--json"]) == 0
    served = json.loads(capsys.readouterr().out)
    assert served["endpoint"] == f"http://127.0.0.1:{port}/v1"
    try:
        assert cli(["status", "--json"]) == 0
        status = json.loads(capsys.readouterr().out)
        assert status["running"] and status["model"] == served["model"] and status["rss_bytes"] > 0
    finally:
        assert cli(["stop"]) == 0
    capsys.readouterr()
    assert cli(["status", "--json"]) == 3
    assert json.loads(capsys.readouterr().out)["state"] == "stopped"


def test_status_in_a_fresh_process_imports_no_hub(running):
    code = ("import sys, time; t = time.perf_counter(); from aidevops_local.cli.main import main; "
            "rc = main(['status', '--json']); "
            "assert 'huggingface_hub' not in sys.modules and 'PySide6' not in sys.modules; sys.exit(rc)")
    env = dict(os.environ)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=30)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["running"] is True


def test_log_tail_leaves_out_our_header(tmp_path):
    log = tmp_path / "x.log"
    log.write_text('# aidevops-local {"model": "m"}\nline one\nline two\n')
    assert server.log_tail(log) == "line one\nline two"


def test_loopback_addresses():
    assert not launch.is_loopback("0.0.0.0") and launch.is_loopback("127.0.0.1") and launch.is_loopback("::1")


def test_prompt_cache_is_capped_at_what_the_plan_leaves_spare(system_runtime, tiny_gguf, port):
    import re

    plan = launch.plan_launch(str(tiny_gguf), port=port)  # a router: each model's cap is in its section
    caps = re.findall(r"^cache-ram = (\d+)$", plan.preset, re.MULTILINE)
    assert plan.router and caps and all(0 <= int(cap) <= 8192 for cap in caps)

    settings = config.load_settings()
    settings.router_mode = False
    plan = launch.plan_launch(str(tiny_gguf), port=port, settings=settings)
    cap = plan.argv[plan.argv.index("--cache-ram") + 1]
    assert not plan.router and 0 <= int(cap) <= 8192

    for router_mode in (True, False):
        settings.router_mode, settings.extra_server_args = router_mode, ["--cache-ram", "64"]
        plan = launch.plan_launch(str(tiny_gguf), port=port, settings=settings)
        assert plan.argv.count("--cache-ram") == 1 and plan.argv[-1] == "64" and "cache-ram" not in plan.preset
