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
from aidevops_local.core.serving import failures, launch, process, server
from aidevops_local.core.serving import state as server_state
from aidevops_local.core.system import config
from aidevops_local.core.system.errors import (
    CorruptModel,
    ModelNotFound,
    PortInUse,
    RuntimeNotInstalled,
    ServerStartFailed,
)
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
    assert server_state.read().phase == "running"  # recorded: starting at the spawn, running once healthy
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
    front = psutil.Process(server_state.read().guard_pid)
    conns = [c for c in front.net_connections(kind="inet") if c.status == "LISTEN"]
    assert conns and all(c.laddr.ip == "127.0.0.1" for c in conns)
    assert not [c for c in psutil.Process(running.pid).net_connections(kind="inet") if c.status == "LISTEN"]


def test_second_serve_is_refused_while_one_runs(running, tiny_gguf):
    with pytest.raises(ServerStartFailed, match="already running"):
        server.serve(str(tiny_gguf), port=running.port + 1)


def test_two_serves_at_once_leave_one_server_and_the_other_names_it(system_runtime, tiny_gguf, free_port, monkeypatch):
    """Both pass the "already running" check unless a lock holds it through the start: each waits at a
    barrier after planning (the lock makes the second wait before its check; the barrier then gives up)."""
    from aidevops_local.core.system.errors import ExitCode

    planned = launch.plan_launch
    both_planned = threading.Barrier(2)

    def plan_then_meet(*args, **kwargs):
        plan = planned(*args, **kwargs)
        try:
            both_planned.wait(timeout=3)
        except threading.BrokenBarrierError:
            pass
        return plan

    monkeypatch.setattr(launch, "plan_launch", plan_then_meet)
    results: dict[int, object] = {}

    def serve_on(p: int) -> None:
        try:
            results[p] = server.serve(str(tiny_gguf), port=p)
        except ServerStartFailed as exc:
            results[p] = exc

    ports = [free_port(), free_port()]
    threads = [threading.Thread(target=serve_on, args=(p,)) for p in ports]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        started = [r for r in results.values() if isinstance(r, server.ServerStatus)]
        refused = [r for r in results.values() if isinstance(r, ServerStartFailed)]
        assert len(started) == 1 and len(refused) == 1, results
        assert refused[0].exit_code == ExitCode.SERVER_START and started[0].endpoint in refused[0].message
        assert server.status().pid == started[0].pid
        servers = [p for p in psutil.Process().children() if p.name() == "llama-server"]
        assert [p.pid for p in servers] == [started[0].pid]
    finally:
        server.stop(grace=2)
        for p in psutil.Process().children():
            if p.name() == "llama-server":
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)


def test_port_taken_is_a_clear_error_and_leaves_nothing(system_runtime, tiny_gguf, port):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        with pytest.raises(PortInUse, match=str(port)) as err:
            server.serve(str(tiny_gguf), port=port)
    assert "--port" in err.value.hint
    assert server_state.read() is None


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
    assert server_state.read() is None
    assert not [
        p for p in psutil.process_iter(["name"]) if p.info["name"] == "llama-server" and p.ppid() == os.getpid()
    ]


@pytest.mark.parametrize("kind", ["empty", "truncated", "cut_header", "random_header"])
def test_corrupt_gguf_is_refused_before_start(system_runtime, corrupt_ggufs, port, kind):
    with pytest.raises(CorruptModel) as err:
        server.serve(str(corrupt_ggufs[kind]), port=port)
    assert err.value.hint
    assert server_state.read() is None


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
    assert server_state.read() is None


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


def test_a_stop_under_way_is_never_seen_as_a_crash(running, monkeypatch):
    """Another process (the tray) polls while a stop runs: before the signal and after the exit, before the
    state file goes, it sees a stop, never a crash."""
    seen = []
    real_terminate, real_clear = process.terminate_group, server_state.clear

    def terminate(pid, *, grace):
        seen.append((server.status().state, cli(["status", "--json"])))
        return real_terminate(pid, grace=grace)

    def clear():
        seen.append((server.status().state, cli(["status", "--json"])))
        real_clear()

    monkeypatch.setattr(process, "terminate_group", terminate)
    monkeypatch.setattr(server_state, "clear", clear)
    assert server.stop(grace=2).stopped
    assert seen == [("stopping", 3), ("stopped", 3)]
    assert server.status().state == "stopped"


def test_a_start_right_after_a_stop_keeps_its_state(running, tiny_gguf, free_port, monkeypatch):
    """A serve that starts once the old process is gone, before the stop removes the state file: the stop
    must not remove the new server's state (it would run on untracked)."""
    real_terminate = process.terminate_group
    started = []

    def terminate_then_another_serve(pid, *, grace):
        forced = real_terminate(pid, grace=grace)
        started.append(server.serve(str(tiny_gguf), port=free_port()))
        return forced

    monkeypatch.setattr(process, "terminate_group", terminate_then_another_serve)
    try:
        assert server.stop(grace=2).stopped
        monkeypatch.setattr(process, "terminate_group", real_terminate)
        status = server.status()
        assert (status.state, status.pid) == ("running", started[0].pid)
        assert server.stop(grace=2).stopped
    finally:
        for other in started:
            if group_alive(other.pid):
                os.killpg(other.pid, signal.SIGKILL)


def test_stop_when_nothing_runs():
    result = server.stop()
    assert not result.stopped and result.message == "No server is running."
    assert cli(["stop"]) == 0


def test_stale_state_whose_pid_is_another_process_is_never_signalled():
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        state = server.ServerState(
            pid=stranger.pid,
            create_time=psutil.Process(stranger.pid).create_time(),
            host="127.0.0.1",
            port=8080,
            model="m",
            model_path="/m.gguf",
            binary="/x/llama-server",
            log_path="/nonexistent.log",
            started_at=time.time(),
            session_id="s",
        )
        server_state.write(state)
        assert server.status().state == "crashed"
        result = server.stop(grace=1)
        assert not result.stopped
        assert stranger.poll() is None, "stop signalled a process it did not start"
        assert server_state.read() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_a_process_that_only_calls_itself_llama_server_is_never_signalled(llama_server_dir):
    """Its pid and start time match the state file and its argv[0] is our binary's path, but what it runs is
    another program: stop leaves it alone."""
    binary = llama_server_dir / "llama-server"
    stranger = subprocess.Popen(
        [str(binary), "-c", "import time; time.sleep(60)"], executable=sys.executable, start_new_session=True
    )
    try:
        while not psutil.Process(stranger.pid).cmdline():  # its argv appears a moment after exec
            time.sleep(0.01)
        assert psutil.Process(stranger.pid).cmdline()[0] == str(binary)
        state = server.ServerState(
            pid=stranger.pid,
            create_time=psutil.Process(stranger.pid).create_time(),
            host="127.0.0.1",
            port=8080,
            model="m",
            model_path="/m.gguf",
            binary=str(binary),
            log_path="/nonexistent.log",
            started_at=time.time(),
            session_id="s",
        )
        server_state.write(state)
        assert server_state.owned_process(state) is None
        result = server.stop(grace=1)
        assert not result.stopped
        assert stranger.poll() is None, "stop signalled a process it did not start"
    finally:
        stranger.kill()
        stranger.wait()


def test_a_server_stays_ours_after_update_renames_its_build_folder(llama_server_dir, tiny_gguf, tmp_path, port):
    import shutil

    from aidevops_local.core.llamacpp import runtime
    from tests.serving import serving_settings

    def link_or_copy(src, dst):
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    build = tmp_path / "bin"
    shutil.copytree(llama_server_dir, build, symlinks=True, copy_function=link_or_copy)
    runtime.use_system(path=build / "llama-server")
    serving_settings(router_mode=False)
    served = server.serve(str(tiny_gguf), port=port)
    try:
        build.rename(tmp_path / "bin.previous")  # what `update` does to the build that still runs
        assert server_state.owned_process(server_state.read()) is not None
        result = server.stop(grace=2)
        assert result.stopped and not group_alive(served.pid)
    finally:
        if group_alive(served.pid):
            os.killpg(served.pid, signal.SIGKILL)


def test_state_with_a_recycled_pid_is_not_ours(running):
    state = server_state.read()
    state.create_time -= 100  # same pid, other start time: what a recycled pid looks like
    assert server_state.owned_process(state) is None


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
    code = (
        "import sys, time; t = time.perf_counter(); from aidevops_local.cli.main import main; "
        "rc = main(['status', '--json']); "
        "assert 'huggingface_hub' not in sys.modules and 'PySide6' not in sys.modules; sys.exit(rc)"
    )
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


# ---- where it really listens ----------------------------------------------------------------------------


def test_status_says_where_the_server_listens(running, capsys):
    assert running.listening == [f"127.0.0.1:{running.port}"]
    assert server.status(probe_health=False).listening is None  # the liveness poll leaves the socket scan out
    capsys.readouterr()
    assert cli(["status"]) == 0
    listed = [line for line in capsys.readouterr().out.splitlines() if "listening on" in line]
    assert listed and listed[0].split()[-1] == f"127.0.0.1:{running.port}"


def test_extra_args_cannot_move_the_bind(system_runtime, tiny_gguf, port, capsys):
    """`--host 0.0.0.0` in extra_server_args came after our --host and won: the server listened everywhere
    while status said 127.0.0.1. It is refused with the settings, before anything starts."""
    path = config.paths().config_file
    text = path.read_text()
    assert "extra_server_args = []" in text
    path.write_text(text.replace("extra_server_args = []", 'extra_server_args = ["--host", "0.0.0.0"]'))
    try:
        assert cli(["serve", str(tiny_gguf), "--port", str(port)]) == 11
    finally:
        server.stop(grace=2)
    err = capsys.readouterr().err
    assert "--host" in err and "`host`" in err and "Traceback" not in err
    assert server_state.read() is None


def test_status_reports_a_server_listening_beyond_what_it_was_told(llama_server_dir, tiny_gguf, port, tmp_path, capsys):
    """A server bound to every interface while the state file says 127.0.0.1 (what an overriding flag did):
    status reads the address from the kernel and says so."""
    from tests.fixtures.prepare import llama_server

    with llama_server(llama_server_dir, tiny_gguf, port=port, extra_args=["--host", "0.0.0.0"]) as srv:
        server_state.write(
            server.ServerState(
                pid=srv.proc.pid,
                create_time=psutil.Process(srv.proc.pid).create_time(),
                host="127.0.0.1",
                port=port,
                model="tiny",
                model_path=str(tiny_gguf),
                binary=str(llama_server_dir / "llama-server"),
                log_path=str(srv.log_path),
                started_at=time.time(),
                session_id="s",
            )
        )
        status = server.status()
        assert status.running and status.listening == [f"0.0.0.0:{port}"]
        assert f"listens on 0.0.0.0:{port}" in status.message and "other machines" in status.message
        capsys.readouterr()
        assert cli(["status", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["listening"] == [f"0.0.0.0:{port}"]
        server_state.clear()  # the fixture stops its own server


def test_a_public_host_in_the_settings_warns_like_the_flag(tiny_gguf, capsys):
    # No runtime is installed, so serve stops right after the warning: nothing is ever bound to 0.0.0.0.
    config.save_settings(config.Settings(host="0.0.0.0"))
    assert cli(["serve", str(tiny_gguf)]) == 4
    err = " ".join(capsys.readouterr().err.split())
    assert "warning: Binding to 0.0.0.0" in err and "require_api_key = true" in err


def test_llama_arg_host_and_port_in_the_environment_do_not_move_the_bind(
    system_runtime, tiny_gguf, port, free_port, monkeypatch
):
    """llama-server reads LLAMA_ARG_HOST/PORT, which the server inherits; our --host and --port win over them."""
    monkeypatch.setenv("LLAMA_ARG_HOST", "0.0.0.0")
    monkeypatch.setenv("LLAMA_ARG_PORT", str(free_port()))
    status = server.serve(str(tiny_gguf), port=port)
    try:
        assert status.listening == [f"127.0.0.1:{port}"] and "other machines" not in status.message
    finally:
        server.stop(grace=2)


def _failed_start(log, model_path: str) -> server.ServerState:
    """The state of a start that failed, for reading why: only its log and its model matter."""
    return server.ServerState(
        pid=1,
        create_time=0.0,
        host="127.0.0.1",
        port=1,
        model="m",
        model_path=model_path,
        binary="/b",
        log_path=str(log),
        started_at=0.0,
        session_id="s",
    )


def test_a_start_failure_waits_for_the_line_that_explains_it(tmp_path):
    """A router relays its model instance's output, so the instance's exit can be seen before the line that
    says why reaches the log: the failure is read once that line is there, not called unexplained."""
    log = tmp_path / "server.log"
    log.write_text("[40001] 0.00.001.000 I loading model\n")
    state = _failed_start(log, "/m.gguf")

    def explain_later():
        time.sleep(0.4)
        with open(log, "a") as f:
            f.write("[40001] 0.00.002.000 E failed to load model '/m.gguf'\n")

    writer = threading.Thread(target=explain_later)
    writer.start()
    failure = failures.start_failure(state, 1)
    writer.join()
    assert isinstance(failure, CorruptModel) and "failed to load model" in failure.details


def test_a_start_the_log_leaves_unexplained_reads_the_model_file(tmp_path):
    """A router's instance can exit before its last lines reach the log: a model file that no longer reads
    is then the reason given, not an unexplained exit."""
    log = tmp_path / "server.log"
    log.write_text("0.00.022.688 I srv    operator(): instance name=m exited with status 1\n")
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + b"\xff" * 64)
    state = _failed_start(log, str(model))
    failure = failures.start_failure(state, 1)
    assert isinstance(failure, CorruptModel)
    assert "could not load the model" in failure.message and "m.gguf" in failure.details
    assert "instance name=m exited" in failure.details

    state.model_path = str(tmp_path / "gone.gguf")
    unexplained = failures.start_failure(state, 1)
    assert type(unexplained) is ServerStartFailed and "exited during start with status 1" in unexplained.message


def test_a_model_file_that_cannot_be_read_at_all_leaves_the_start_error_as_it_was(tmp_path, monkeypatch):
    """Reading the file is only a second opinion: when that read itself fails (a folder we may not search, a
    file cut short between stat and mmap), the start's own error stands."""
    log = tmp_path / "server.log"
    log.write_text("0.00.022.688 I srv    operator(): instance name=m exited with status 1\n")
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + b"\xff" * 64)

    def unreadable(path, **_):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(failures.gguf_meta, "read_header", unreadable)
    state = _failed_start(log, str(model))
    failure = failures.start_failure(state, 1)
    assert type(failure) is ServerStartFailed and "exited during start with status 1" in failure.message
