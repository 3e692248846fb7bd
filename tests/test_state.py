"""The state file's owner: the server's phases and their transitions, "a server of ours is running" against real
processes, and the one "is this model served" check."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import asdict

import psutil
import pytest

from aidevops_local.cli.main import main as cli
from aidevops_local.core.rpc import worker
from aidevops_local.core.serving import health
from aidevops_local.core.serving import state as server_state
from aidevops_local.core.serving.state import ServerPhase
from aidevops_local.core.system import process_identity
from aidevops_local.core.system.errors import ExitCode
from tests.fixtures.prepare import free_port


def _state_for(pid: int, binary: str, **extra) -> server_state.ServerState:
    fields = dict(
        pid=pid,
        create_time=psutil.Process(pid).create_time(),
        host="127.0.0.1",
        port=free_port(),  # never connected to; a port nobody holds all the same
        model="m",
        model_path="/m.gguf",
        binary=binary,
        log_path="/nonexistent.log",
        started_at=time.time(),
        session_id="s",
    )
    fields.update(extra)
    return server_state.ServerState(**fields)


@pytest.fixture
def sleeper():
    proc = subprocess.Popen([shutil.which("sleep"), "60"])
    yield proc
    proc.kill()
    proc.wait()


def test_a_server_goes_through_its_phases_in_order():
    phase = ServerPhase.STOPPED
    for target in (ServerPhase.STARTING, ServerPhase.RUNNING, ServerPhase.STOPPING, ServerPhase.STOPPED):
        phase = server_state.advance(phase, target)
    assert phase is ServerPhase.STOPPED
    assert server_state.advance(ServerPhase.RUNNING, ServerPhase.CRASHED) is ServerPhase.CRASHED
    assert server_state.advance(ServerPhase.CRASHED, ServerPhase.STARTING) is ServerPhase.STARTING


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (ServerPhase.STOPPED, ServerPhase.RUNNING),  # a server answers only after it started
        (ServerPhase.STOPPED, ServerPhase.CRASHED),  # nothing ran, nothing crashed
        (ServerPhase.STOPPING, ServerPhase.RUNNING),  # a stop under way is not undone
        (ServerPhase.STOPPING, ServerPhase.CRASHED),  # the exit a stop causes is intended
    ],
)
def test_an_illegal_transition_is_refused(current, target):
    with pytest.raises(ValueError, match=f"from {current} to {target}"):
        server_state.advance(current, target)


def test_every_phase_has_its_transitions_and_keeps_its_string():
    assert set(server_state.TRANSITIONS) == set(ServerPhase)
    assert json.dumps({"state": ServerPhase.CRASHED}) == '{"state": "crashed"}'  # `status --json` is unchanged
    assert asdict(health.ServerStatus(state=ServerPhase.RUNNING, running=True))["state"] == "running"


def test_running_refuses_a_state_file_whose_pid_runs_another_program(sleeper):
    """The pid and its start time match, but the process runs `sleep`, not the binary the state file names."""
    server_state.write(_state_for(sleeper.pid, binary=shutil.which("true")))
    assert server_state.read() is not None
    assert server_state.running() is None
    assert sleeper.poll() is None


def test_running_refuses_a_recycled_pid(sleeper):
    server_state.write(_state_for(sleeper.pid, binary=shutil.which("sleep"), create_time=1.0))
    assert server_state.running() is None


def test_running_names_the_process_it_started(sleeper):
    server_state.write(_state_for(sleeper.pid, binary=shutil.which("sleep")))
    found = server_state.running()
    assert found is not None and found.pid == sleeper.pid
    sleeper.kill()
    sleeper.wait()
    assert server_state.running() is None  # gone: the state file alone is not a running server


def test_no_state_file_or_a_damaged_one_is_no_server():
    assert server_state.running() is None
    damaged = server_state.config.paths().state_file
    damaged.parent.mkdir(parents=True, exist_ok=True)
    damaged.write_text("{not json")
    assert server_state.read() is None and server_state.running() is None


def test_each_recorded_phase_goes_through_the_table_and_a_stop_is_never_marked_running(sleeper):
    state = _state_for(sleeper.pid, shutil.which("sleep"))
    server_state.record_start(state)
    assert server_state.read().phase == ServerPhase.STARTING
    server_state.move(server_state.read(), ServerPhase.STOPPING)  # a stop came while the start waited
    server_state.mark_running(state)  # the start's end: the stop stands
    assert server_state.read().phase == ServerPhase.STOPPING
    assert health.status(probe_health=False).state == ServerPhase.STOPPING
    with pytest.raises(ValueError, match="from stopping to running"):
        server_state.move(server_state.read(), ServerPhase.RUNNING)
    assert server_state.read().phase == ServerPhase.STOPPING  # a refused move writes nothing

    server_state.clear()
    again = _state_for(sleeper.pid, shutil.which("sleep"))
    server_state.record_start(again)
    server_state.mark_running(again)  # no stop came: the start's end marks it running
    assert server_state.read().phase == ServerPhase.RUNNING


def test_a_state_file_from_before_phases_or_from_a_newer_version_reads(sleeper):
    path = server_state.config.paths().state_file
    path.parent.mkdir(parents=True, exist_ok=True)
    legacy = {k: v for k, v in asdict(_state_for(sleeper.pid, shutil.which("sleep"))).items() if k != "phase"}
    path.write_text(json.dumps(legacy))
    assert server_state.read().phase == ServerPhase.RUNNING  # an older version's server, up
    path.write_text(json.dumps({**legacy, "stopping": True}))
    assert server_state.read().phase == ServerPhase.STOPPING  # an older version's stop under way
    path.write_text(json.dumps({**legacy, "phase": "running", "from_the_future": 1}))
    assert server_state.read().pid == sleeper.pid  # a newer field is left, not a reason to lose the server
    path.write_text(json.dumps({**legacy, "phase": "hibernating"}))
    assert server_state.read().phase == ServerPhase.RUNNING  # a phase we do not know: a server, up (stoppable)
    for scalar in ("null", "3", '"text"', "[]"):
        path.write_text(scalar)
        assert server_state.read() is None


def test_a_move_changes_only_the_process_it_names(sleeper):
    """A stop holding an old snapshot never overwrites the record of a start that came since."""
    old = _state_for(sleeper.pid, shutil.which("sleep"))
    server_state.record_start(old)
    newer = _state_for(sleeper.pid, shutil.which("sleep"), create_time=old.create_time + 1, model="n")
    server_state.record_start(newer)
    assert server_state.move(old, ServerPhase.STOPPING) is False
    assert server_state.read().model == "n" and server_state.read().phase == ServerPhase.STARTING
    assert server_state.move(newer, ServerPhase.STOPPING) is True and newer.phase == ServerPhase.STOPPING


def test_serves_matches_the_name_or_the_same_file(tmp_path):
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    link = tmp_path / "link.gguf"
    link.symlink_to(model)
    other = tmp_path / "other.gguf"
    other.write_bytes(b"GGUF")
    state = _state_for(psutil.Process().pid, binary="/x", model="m", model_path=str(model))
    assert server_state.serves(state, [link])  # a link names the served file
    assert server_state.serves(state, [other], name="m")  # a router serves by name
    assert not server_state.serves(state, [other], name="n")
    assert not server_state.serves(None, [model], name="m")  # no server of ours: nothing is served


def test_the_tray_ticks_the_served_model_by_name_and_by_file(tmp_path):
    """The tray's check: the status's model, and a listed model that is the same file under another name (a
    router's id for it); nothing once the model crashed or a stop is under way."""
    from aidevops_local.tray import snapshot

    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    link = tmp_path / "alias.gguf"
    link.symlink_to(model)
    listed = (
        snapshot.ModelEntry(name="m-Q8_0", path=str(link)),
        snapshot.ModelEntry(name="other", path=str(tmp_path / "other.gguf")),
    )
    status = health.ServerStatus(
        state=ServerPhase.RUNNING, running=True, port=free_port(), model="m", model_path=str(model), router=True
    )
    assert snapshot._served(status, listed) == (("m", "m-Q8_0"), True)
    crashed = health.ServerStatus(
        state=ServerPhase.CRASHED, running=True, port=free_port(), model="m", model_path=str(model)
    )
    assert snapshot._served(crashed, listed) == ((), False)


# A state file that does not hold what write() wrote is no server: never a traceback, never a pid to signal.
DAMAGED_FIELDS = [
    {"pid": -5},
    {"pid": 0},
    {"pid": "abc"},
    {"pid": True},
    {"pid": 1.5},
    {"create_time": "x"},
    {"create_time": float("nan")},
    {"port": "8080"},
    {"port": 70000},
    {"host": 5},
    {"exe_id": "1,2"},
    {"exe_id": [1, "2"]},
    {"router": "yes"},
    {"guard_pid": -1},
    {"aliases": {"m": "alias"}},
    {"workers": ["a"]},
]


@pytest.mark.parametrize("damage", DAMAGED_FIELDS, ids=lambda d: repr(d))
def test_a_state_file_with_wrong_types_is_no_server_and_nothing_is_signalled(sleeper, damage, capsys):
    path = server_state.config.paths().state_file
    path.parent.mkdir(parents=True, exist_ok=True)
    good = asdict(_state_for(sleeper.pid, shutil.which("sleep")))
    path.write_text(json.dumps(good))
    assert server_state.running() is not None  # the undamaged file names our sleeper
    path.write_text(json.dumps({**good, **damage}))
    assert server_state.read() is None and server_state.running() is None
    assert cli(["status"]) == ExitCode.NOT_RUNNING
    assert cli(["stop"]) == ExitCode.OK
    out = capsys.readouterr()
    assert "Traceback" not in out.err and "No server is running." in out.out + out.err
    assert sleeper.poll() is None  # still alive: a damaged file never names a process to signal


@pytest.mark.parametrize("damage", [{"pid": "x"}, {"pid": -5}, {"create_time": "x"}, {"exe_id": None}, {"port": True}])
def test_a_worker_file_with_wrong_types_is_no_worker_and_nothing_is_signalled(sleeper, damage, capsys):
    path = server_state.config.paths().app_dir / "worker.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    good = dict(
        pid=sleeper.pid,
        create_time=psutil.Process(sleeper.pid).create_time(),
        host="127.0.0.1",
        port=free_port(),
        binary=shutil.which("sleep"),
        exe_id=process_identity.file_id(shutil.which("sleep")),
        log_path="/nonexistent.log",
        started_at=time.time(),
    )
    path.write_text(json.dumps(good))
    assert worker.read_state() is not None and worker.status(with_devices=False).running
    path.write_text(json.dumps({**good, **damage}))
    assert worker.read_state() is None
    assert cli(["worker", "status"]) == ExitCode.NOT_RUNNING
    assert cli(["worker", "stop"]) == ExitCode.OK
    assert "Traceback" not in capsys.readouterr().err
    assert sleeper.poll() is None


def test_a_state_file_that_cannot_be_read_is_one_line(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("COLUMNS", "1000")
    path = server_state.config.paths().state_file
    path.mkdir(parents=True)  # a folder where the file should be
    assert cli(["status"]) == ExitCode.CONFIG
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"error: Cannot read the server state file {path}: Is a directory",
        "hint: Move it out of the way: aidevops-local writes a new one at the next start.",
    ]
    home = tmp_path / "home-file"
    home.write_text("")
    monkeypatch.setenv("AIDEVOPS_HOME", str(home))  # the root is a file, not a folder
    assert cli(["status"]) == ExitCode.CONFIG
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"error: AIDEVOPS_HOME ({home}) is not a folder." and len(err) == 2, err
