"""Supervision: the policy on its own (status snapshots in, decisions out, on an injected clock), and
`serve --supervise` as a real process around the real llama-server: a kill -9 is restarted, a stop from
another process ends it with 0, SIGTERM stops the server it supervises."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import psutil
import pytest

from aidevops_local.core.serving import server, supervisor
from aidevops_local.core.serving.server import ServerStatus
from aidevops_local.core.serving.supervisor import Supervisor
from tests.waiting import wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def snap(state: str, pid: int = 42, *, running: bool | None = None) -> ServerStatus:
    up = state in ("running", "starting", "stopping") if running is None else running
    return ServerStatus(state=state, running=up, pid=pid, port=8080, model="tiny")


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_crash_is_seen_once_and_restarted_after_the_first_delay(clock):
    policy = Supervisor(clock=clock)
    assert policy.observe(snap("starting")) is None
    assert policy.observe(snap("running")) is None
    crash = policy.observe(snap("crashed"))
    assert crash == supervisor.Crash(model="tiny", port=8080, pid=42, restart_in=2, attempt=1)
    assert crash.body == "tiny on port 8080 exited. Restarting in 2 s."
    assert policy.observe(snap("crashed")) is None  # the same crash, seen by the next poll
    assert policy.take_due() is None
    clock.now += 2
    assert policy.take_due() == "tiny"
    assert policy.take_due() is None  # once


def test_the_backoff_grows_then_gives_up(clock):
    policy = Supervisor(clock=clock)
    delays = []
    for pid in range(1, 6):
        policy.observe(snap("running", pid))
        clock.now += 30  # up for a while, not long enough to count as stable
        crash = policy.observe(snap("crashed", pid))
        delays.append(crash.restart_in)
    assert delays == [2, 5, 15, 60, None]
    assert crash.gave_up and "Restarting" not in crash.body


def test_running_long_enough_resets_the_backoff(clock):
    policy = Supervisor(clock=clock)
    policy.observe(snap("running", 1))
    assert policy.observe(snap("crashed", 1)).restart_in == 2
    policy.observe(snap("running", 2))
    clock.now += supervisor.RESTART_STABLE_S + 1
    policy.observe(snap("running", 2))
    assert policy.observe(snap("crashed", 2)).restart_in == 2


def test_without_automatic_restart_a_crash_is_reported_and_nothing_is_due(clock):
    policy = Supervisor(clock=clock)
    policy.observe(snap("running"))
    crash = policy.observe(snap("crashed"), auto_restart=False)
    assert crash.restart_in is None and not crash.gave_up and crash.body == "tiny on port 8080 exited."
    clock.now += 3600
    assert policy.take_due() is None


def test_a_stop_is_never_a_crash(clock):
    policy = Supervisor(clock=clock)
    for state in ("running", "stopping", "stopped"):
        assert policy.observe(snap(state)) is None
    # A stop the poll missed the "stopping" of: the state file is gone, so the status is "stopped".
    policy.observe(snap("running"))
    assert policy.observe(snap("stopped")) is None


def test_a_crash_during_a_stop_is_the_stop(clock):
    """The process dies while a stop is under way (status stays "stopping", then "stopped"); and an exit
    while our own start, stop or switch runs is ours too."""
    policy = Supervisor(clock=clock)
    policy.observe(snap("running"))
    assert policy.observe(snap("stopping")) is None
    assert policy.observe(snap("crashed", running=False)) is None  # after "stopping": part of the stop
    policy.observe(snap("running", 2))
    assert policy.observe(snap("crashed", 2), acting=True) is None
    assert policy.take_due() is None


def test_a_router_whose_model_crashed_is_a_crash_and_may_be_restarted(clock):
    policy = Supervisor(clock=clock)
    policy.observe(snap("running"))
    crashed = snap("crashed", running=True)  # the router runs on; its model instance exited
    assert policy.observe(crashed).restart_in == 2
    assert policy.may_restart(crashed) and policy.may_restart(snap("stopped"))
    assert not policy.may_restart(snap("running")) and not policy.may_restart(snap("starting"))


def test_a_failed_restart_takes_the_next_delay(clock):
    policy = Supervisor(clock=clock, backoff=(1, 4))
    policy.observe(snap("running"))
    policy.observe(snap("crashed"))
    clock.now += 1
    assert policy.take_due() == "tiny"
    again = policy.restart_failed(snap("stopped"))
    assert again.restart_in == 4 and again.attempt == 2 and again.model == "tiny"
    clock.now += 4
    assert policy.take_due() == "tiny"
    assert policy.restart_failed(snap("stopped")).gave_up


# ---- the real server ---------------------------------------------------------------------------------------


def served(log, port: int) -> int:
    """The pid of the server the command started, once it printed the endpoint (the start finished)."""
    wait_for(lambda: f"http://127.0.0.1:{port}/v1" in log.read_text(), timeout=30, what="the start")
    return running_pid()


def running_pid() -> int | None:
    status = server.status(probe_health=False)
    return status.pid if status.state == "running" else None


@pytest.fixture
def supervise_cli(system_runtime, tiny_gguf, port, tmp_path):
    """`serve <tiny> --supervise` as a real process; its output goes to a file (read at the end)."""
    log = tmp_path / "supervise.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "aidevops_local", "serve", str(tiny_gguf), "--port", str(port), "--supervise"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        yield proc, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        server.stop(grace=2)


def test_supervise_restarts_a_killed_server_and_a_stop_elsewhere_ends_it(supervise_cli, port):
    proc, log = supervise_cli
    first = served(log, port)

    os.killpg(first, signal.SIGKILL)
    wait_for(lambda: "Restarted" in log.read_text(), timeout=30, what="the restart")
    second = running_pid()
    assert second and second != first
    status = server.status()
    assert status.port == port and status.model == "tiny-random-llama" and psutil.pid_exists(second)

    result = server.stop(grace=5)  # `aidevops-local stop` from another terminal
    assert result.stopped
    assert proc.wait(30) == 0
    out = log.read_text()
    assert "exited. Restarting in 2 s." in out and "Restarted tiny-random-llama" in out and "supervision ends" in out
    assert "crash" not in out.split("Restarted tiny-random-llama")[1]  # the stop was not taken for a crash
    assert server.status().state == "stopped"


def test_sigterm_stops_the_supervised_server_and_exits_0(supervise_cli, port):
    proc, log = supervise_cli
    pid = served(log, port)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert server.status().state == "stopped" and not psutil.pid_exists(pid)
    assert f"(pid {pid})" in log.read_text()


def test_a_server_that_keeps_crashing_is_given_up_on(system_runtime, tiny_gguf, port):
    started = server.serve(str(tiny_gguf), port=port)
    policy = Supervisor(backoff=(0.2,))
    policy.observe(started)
    stop, events = threading.Event(), []
    outcome: list[str] = []
    watcher = threading.Thread(
        target=lambda: outcome.append(
            supervisor.supervise(stop, supervisor.restart, lambda kind, line: events.append(kind), policy=policy)
        )
    )
    watcher.start()
    try:
        os.killpg(started.pid, signal.SIGKILL)
        wait_for(lambda: "restarted" in events, timeout=30, what="the restart")  # finished: killing it now is a crash
        second = running_pid()
        assert second and second != started.pid
        os.killpg(second, signal.SIGKILL)
        watcher.join(30)
        assert outcome == ["gave_up"] and events == ["crash", "restarted", "crash"]
        assert server.status().state == "crashed"
    finally:
        stop.set()
        watcher.join(10)
        server.stop(grace=2)


def test_router_is_a_plain_client_that_imports_nothing_of_server():
    """Switching lives in supervisor.py: router.py (which server.py uses) must not import server back."""
    import ast
    import inspect

    from aidevops_local.core.serving import router

    tree = ast.parse(inspect.getsource(router))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names}
    modules = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "server" not in imported and not any(m and m.endswith("server") for m in modules)
    assert not hasattr(router, "switch_model") and callable(supervisor.switch_model)
