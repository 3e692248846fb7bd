"""serve in router mode, against the real llama-server: one process that offers every local model with its
own plan, switches by a load request, and whose per-model usage is read out of one log."""

from __future__ import annotations

import re
import shutil
import textwrap
import time
from datetime import UTC, datetime

import httpx
import psutil
import pytest

from aidevops_local.cli.main import main as cli
from aidevops_local.core.accounting import usage
from aidevops_local.core.accounting.request_log import LogReader, format_header
from aidevops_local.core.serving import router, server, supervisor
from aidevops_local.core.serving import state as server_state
from aidevops_local.core.serving.state import ServerPhase
from aidevops_local.core.system import config
from aidevops_local.core.system.errors import CorruptModel, LocalModelsError
from tests.serving import serving_settings


@pytest.fixture
def models_dir(isolated_home, tiny_gguf):
    """alpha and beta: two copies of the tiny model in the models folder."""
    folder = isolated_home / "models"
    folder.mkdir(exist_ok=True)
    for name in ("alpha", "beta"):
        shutil.copy(tiny_gguf, folder / f"{name}.gguf")
    return folder


@pytest.fixture
def router_running(system_runtime, models_dir, port):
    status = server.serve("alpha", port=port)
    yield status
    server.stop(grace=2)


def chat(endpoint: str, model: str | None, max_tokens: int = 4) -> httpx.Response:
    body = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": max_tokens}
    if model is not None:
        body["model"] = model
    return httpx.post(f"{endpoint}/chat/completions", json=body, timeout=60)


def test_serve_starts_a_router_that_offers_every_local_model(router_running, models_dir):
    assert router_running.state == "running" and router_running.router
    assert router_running.model == "alpha" and router_running.model_path == str(models_dir / "alpha.gguf")
    assert set(router_running.models) == {"alpha", "beta"}
    preset = config.paths().router_presets.read_text()
    # Each model has its own plan; only the chosen one loads at start.
    assert preset.count("ctx-size = ") == 2 and preset.count("load-on-startup = true") == 1
    assert "[alpha]\nmodel = " in preset
    state = server_state.read()
    assert state.router and "--models-max" in psutil.Process(state.pid).cmdline()

    reply = chat(router_running.endpoint, "alpha")
    assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] == 4
    # A router needs the model's name: the front names the loaded one where a request does not.
    missing = chat(router_running.endpoint, None)
    assert missing.status_code == 200 and missing.json()["model"] == "alpha"


def test_every_model_the_router_lists_can_be_loaded(router_running):
    base = router_running.endpoint.removesuffix("/v1")
    listed = {m["id"] for m in httpx.get(f"{router_running.endpoint}/models", timeout=10).json()["data"]}
    assert listed == {"alpha", "beta"}  # no entry made of the preset file's own lines
    for model_id in sorted(listed):
        router.load(base, model_id)
        assert router.loaded(base) == [model_id]


def test_switch_is_a_load_request_to_the_same_process_and_usage_follows_the_model(router_running):
    pid = router_running.pid
    asked = {"alpha": [], "beta": []}
    asked["alpha"].append(chat(router_running.endpoint, "alpha", 3).json()["usage"])

    status = supervisor.switch_model("beta")
    assert status.pid == pid and status.model == "beta" and status.state == "running"
    assert server_state.read().model == "beta"  # a crash report or a restart now means beta
    assert router.loaded(status.endpoint.removesuffix("/v1")) == ["beta"]  # --models-max 1
    for tokens in (2, 5):
        asked["beta"].append(chat(status.endpoint, "beta", tokens).json()["usage"])
    # A request naming another model switches the router too; status follows it.
    asked["alpha"].append(chat(status.endpoint, "alpha", 6).json()["usage"])
    assert server.status().model == "alpha"

    server.stop(grace=2)
    rows = {}
    for row in usage.store.ModelUsage.select().order_by(usage.store.ModelUsage.timestamp):
        rows.setdefault(row.model, []).append((row.tokens_in, row.tokens_out))
    assert rows == {name: [(u["prompt_tokens"], u["completion_tokens"]) for u in got] for name, got in asked.items()}


def test_a_model_the_router_loads_on_request_gets_an_inventory_row(router_running, models_dir):
    """beta is offered but was never served by name: the request that names it makes the router load it, and
    `models` and `cleanup` must know it was used (issue 12, item 15)."""
    from aidevops_local.core.database import store
    from aidevops_local.core.maintenance import cleanup
    from aidevops_local.core.models import library

    store.database()
    assert store.ModelInventory.get_or_none(store.ModelInventory.model == "beta") is None
    asked = chat(router_running.endpoint, "beta", 3)
    assert asked.status_code == 200
    server.stop(grace=2)  # reads the log: the request is a usage row now
    [row] = usage.store.ModelUsage.select().where(usage.store.ModelUsage.model == "beta")
    beta = store.ModelInventory.get_by_id("beta")
    assert (beta.path, beta.source, beta.total_requests) == (str(models_dir / "beta.gguf"), "external", 1)
    assert beta.last_used == row.timestamp
    [listed] = [m for m in library.list_models() if m.name == "beta"]
    assert listed.total_requests == 1 and listed.last_used is not None  # not "never"
    [stale] = cleanup.find_stale(names=["beta"]).models  # cleanup knows it
    assert stale.files == [str(models_dir / "beta.gguf")]


def test_stop_names_the_model_the_router_serves(router_running, capsys):
    assert chat(router_running.endpoint, "beta").status_code == 200  # a request switches the router to beta
    assert cli(["stop"]) == 0
    assert "Stopped beta" in capsys.readouterr().err


@pytest.fixture
def recording_proxy(monkeypatch):
    """A local HTTP server set as every proxy the environment can name; it records whatever reaches it."""
    import http.server
    import threading

    seen: list[str] = []

    class Record(http.server.BaseHTTPRequestHandler):
        def _record(self):
            seen.append(f"{self.command} {self.path} {dict(self.headers)}")
            self.send_error(502)

        do_GET = do_POST = do_CONNECT = _record

        def log_message(self, *args):
            pass

    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Record)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{proxy.server_address[1]}"
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(var, url)
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    yield seen
    proxy.shutdown()
    proxy.server_close()


def test_requests_to_our_own_server_never_go_through_a_proxy(router_running, recording_proxy):
    status = supervisor.switch_model("beta")  # status reads and a load request (which may carry the API key)
    assert status.model == "beta" and server.status().model == "beta"
    router.unload(status.endpoint.removesuffix("/v1"), "beta")
    assert recording_proxy == []


def test_a_failed_switch_puts_the_previous_model_back(router_running, models_dir, corrupt_ggufs):
    # beta passed the checks at start and is damaged afterwards: the router's instance fails to load it.
    shutil.copy(corrupt_ggufs["random_header"], models_dir / "beta.gguf")
    with pytest.raises(LocalModelsError) as err:
        supervisor.switch_model("beta")
    assert "could not load beta" in err.value.message and "beta.gguf" in err.value.details
    status = server.status()
    assert status.pid == router_running.pid and status.model == "alpha" and status.state == "running"
    assert chat(status.endpoint, "alpha").status_code == 200


def test_a_crashed_model_instance_is_reported_and_a_switch_loads_it_again(router_running):
    [instance] = psutil.Process(router_running.pid).children()
    instance.kill()
    instance.wait(10)
    for probe in (False, True):  # the tray's cheap liveness poll sees it as well as a full status
        status = server.status(probe_health=probe)
        assert (status.state, status.running, status.model) == ("crashed", True, "alpha"), probe
        assert "stopped unexpectedly" in status.message
    assert cli(["status", "--json"]) == 3  # not usable: routing goes elsewhere until it is loaded again
    status = supervisor.switch_model("alpha")
    assert (status.state, status.pid, status.model) == ("running", router_running.pid, "alpha")
    assert cli(["status", "--json"]) == 0


def test_status_exits_0_while_a_model_loads(monkeypatch, capsys):
    loading = server.ServerStatus(state=ServerPhase.STARTING, running=True, pid=1, model="alpha")
    monkeypatch.setattr(server, "status", lambda **_: loading)
    assert cli(["status", "--json"]) == 0 and '"starting"' in capsys.readouterr().out


def test_a_model_pulled_after_the_start_is_served_by_a_restart(router_running, models_dir, tiny_gguf):
    shutil.copy(tiny_gguf, models_dir / "gamma.gguf")
    status = supervisor.switch_model("gamma")
    assert status.pid != router_running.pid and status.model == "gamma"
    assert set(status.models) == {"alpha", "beta", "gamma"}
    assert (status.host, status.port) == (router_running.host, router_running.port)  # not the default 8080


def test_a_restart_to_a_model_that_cannot_start_leaves_the_running_server_alone(
    router_running, models_dir, corrupt_ggufs
):
    shutil.copy(corrupt_ggufs["truncated"], models_dir / "gamma.gguf")  # pulled after the start, and damaged
    with pytest.raises(CorruptModel):
        supervisor.switch_model("gamma")
    status = server.status()
    assert (status.state, status.pid, status.model) == ("running", router_running.pid, "alpha")


def test_a_restart_the_keyring_refuses_leaves_the_running_server_alone(router_running, models_dir, tiny_gguf):
    import keyring
    from keyring.backends import fail

    from aidevops_local.core.system.errors import Refused

    shutil.copy(tiny_gguf, models_dir / "gamma.gguf")
    serving_settings(require_api_key=True)  # the next start needs a key, and no keyring can keep one
    saved = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        with pytest.raises(Refused):
            supervisor.switch_model("gamma")
    finally:
        keyring.set_keyring(saved)
    status = server.status()
    assert (status.state, status.pid, status.model) == ("running", router_running.pid, "alpha")


def test_a_restart_that_fails_after_the_old_server_stopped_brings_the_old_one_back(
    router_running, models_dir, tiny_gguf, monkeypatch
):
    from aidevops_local.core.serving import launch

    shutil.copy(tiny_gguf, models_dir / "gamma.gguf")
    planned = launch.plan_launch

    def damage_gamma_after_planning(model=None, **kwargs):
        plan = planned(model, **kwargs)
        if plan.model == "gamma":  # passes the checks, then fails to load once the old server is gone
            (models_dir / "gamma.gguf").write_bytes(b"GGUF" + b"\xff" * 64)
        return plan

    monkeypatch.setattr(launch, "plan_launch", damage_gamma_after_planning)
    with pytest.raises(CorruptModel):
        supervisor.switch_model("gamma")
    status = server.status()
    assert (status.state, status.model, status.port) == ("running", "alpha", router_running.port)


def test_damaged_models_are_not_offered_and_the_chosen_one_still_serves(
    system_runtime, models_dir, corrupt_ggufs, port
):
    shutil.copy(corrupt_ggufs["truncated"], models_dir / "broken.gguf")
    status = server.serve("alpha", port=port)
    try:
        assert status.model == "alpha" and set(status.models) == {"alpha", "beta"}
    finally:
        server.stop(grace=2)


def test_a_model_that_fails_to_load_at_start_fails_the_start_and_leaves_nothing(
    system_runtime, models_dir, port, monkeypatch
):
    # The checks pass (they read the header) but the load fails: the file changes between plan and start.
    from aidevops_local.core.serving import launch

    planned = launch.plan_launch

    def damage_after_planning(*args, **kwargs):
        plan = planned(*args, **kwargs)
        (models_dir / "alpha.gguf").write_bytes(b"GGUF" + b"\xff" * 64)
        return plan

    monkeypatch.setattr(launch, "plan_launch", damage_after_planning)
    with pytest.raises(CorruptModel) as err:
        server.serve("alpha", port=port)
    assert "could not load the model" in err.value.message and "alpha.gguf" in err.value.details
    assert server_state.read() is None
    assert not [p for p in psutil.Process().children(recursive=True) if p.name() == "llama-server"]


def test_idle_unload_reaches_the_model_instance_and_a_request_wakes_it(system_runtime, models_dir, port):
    serving_settings(idle_unload_s=1)
    status = server.serve("alpha", port=port)
    try:
        [instance] = psutil.Process(status.pid).children()
        argv = instance.cmdline()
        assert argv[argv.index("--sleep-idle-seconds") + 1] == "1"  # the router passes its flags on
        deadline = time.monotonic() + 20
        while not server.status().asleep and time.monotonic() < deadline:
            time.sleep(0.2)  # idle for a second: the model's memory is freed until a request
        asleep = server.status()
        assert (asleep.state, asleep.model, asleep.asleep) == ("running", "alpha", True)
        assert supervisor.switch_model("alpha").pid == status.pid  # asleep is still served: nothing to load
        assert chat(status.endpoint, "alpha").status_code == 200  # a request wakes it
        awake = server.status()
        assert (awake.state, awake.model, awake.asleep) == ("running", "alpha", False)
    finally:
        server.stop(grace=2)


def test_router_mode_off_serves_one_model_that_answers_any_request(system_runtime, models_dir, port):
    serving_settings(router_mode=False)
    status = server.serve("alpha", port=port)
    try:
        assert not status.router and status.models is None and status.model == "alpha"
        assert "--model" in psutil.Process(status.pid).cmdline()
        assert chat(status.endpoint, None).status_code == 200
    finally:
        server.stop(grace=2)


def test_a_start_context_is_for_the_chosen_model_and_odd_names_stay_out_of_the_preset(
    system_runtime, models_dir, tiny_gguf, port
):
    from aidevops_local.core.serving import launch

    shutil.copy(tiny_gguf, models_dir / "odd[name].gguf")  # cannot be an INI section
    plan = launch.plan_launch("alpha", port=port, ctx=1024)
    assert plan.router and plan.ctx_size == 1024
    sections = dict(re.findall(r"^\[(.+)\]\n(?:.*\n)*?ctx-size = (\d+)$", plan.preset, re.MULTILINE))
    assert sections == {"alpha": "1024", "beta": "2048"}  # beta: the setting (serving_settings' ctx_size)
    # A model whose name cannot be a section is served on its own, by a single-model server.
    plan = launch.plan_launch("odd[name]", port=port)
    assert not plan.router and plan.preset == "" and "--model" in plan.argv


# ---- the log of a router, read on its own ---------------------------------------------------------------------

ROUTER_LOG = format_header(
    model="alpha",
    model_path="/m/alpha.gguf",
    port=8080,
    session_id="s",
    started=datetime(2026, 11, 25, 10, 0, tzinfo=UTC),
) + textwrap.dedent("""\
    0.00.011.285 I srv  llama_server: listening on http://127.0.0.1:8080
    0.00.037.430 I srv          load: spawning server instance with name=alpha on port 51035
    0.00.037.492 I srv          load: spawning server instance with args:
    0.00.037.506 I srv          load:   /opt/llama/llama-server
    0.00.037.621 I srv          load:   --model
    0.00.037.634 I srv          load:   /m/alpha.gguf
    [51035] cmd_child_to_router:state:{"state":"loading","payload":{"value":0.0}}
    [51035] 0.03.014.893 I slot launch_slot_: id  3 | task 0 | processing task, is_child = 0
    [51035] 0.03.017.050 I slot print_timing: id  3 | task 0 | prompt eval time =       1.00 ms /    20 tokens
    [51035] 0.03.017.109 I slot print_timing: id  3 | task 0 |        eval time =       1.03 ms /     5 tokens
    0.03.056.386 I srv  proxy_reques: proxying request to model beta on port 36875
    [51035] 0.03.019.935 I slot      release: id  3 | task 0 | stop processing: n_tokens = 24, truncated = 0
    0.03.074.148 I srv        unload: stopping model instance name=alpha
    0.03.078.371 I srv    operator(): instance name=alpha exited with status 0
    0.03.078.446 I srv          load: spawning server instance with name=beta on port 36875
    0.03.078.490 I srv          load: spawning server instance with args:
    0.03.078.654 I srv          load:   --model
    0.03.078.670 I srv          load:   /m/beta.gguf
    [36875] 0.00.535.948 I slot print_timing: id  3 | task 0 | prompt eval time =     160.17 ms /    31 tokens
    [36875] 0.00.536.017 I slot print_timing: id  3 | task 0 |        eval time =      42.51 ms /     5 tokens
    [36875] 0.00.536.553 I slot      release: id  3 | task 0 | stop processing: n_tokens = 35, truncated = 0
    [51035] 0.09.000.000 I slot      release: id  0 | task 9 | stop processing: n_tokens = 9, truncated = 0
    """)


def test_router_log_charges_each_instance_to_its_model_at_its_time():
    import json

    lines = ROUTER_LOG.splitlines()
    for cut in range(len(lines) + 1):  # the reader's state survives a stop after any line
        reader = LogReader()
        got = [r for line in lines[:cut] if (r := reader.feed(line))]
        reader = LogReader(json.loads(json.dumps(reader.state())))
        got += [r for line in lines[cut:] if (r := reader.feed(line))]
        # The second task 0 is beta's own (a new instance); the exited instance's later line counts nothing.
        assert [(r.key, r.model, r.model_path, r.tokens_in, r.tokens_out) for r in got] == [
            ("s/1:0", "alpha", "/m/alpha.gguf", 20, 5),
            ("s/2:0", "beta", "/m/beta.gguf", 31, 5),
        ]
        alpha, beta = got
        # An instance's clock starts at its spawn line: 37.43 ms + 3.019935 s, and 3.078446 s + 0.536553 s.
        assert alpha.finished == datetime(2026, 11, 25, 10, 0, 3, 57365, UTC)
        assert beta.finished == datetime(2026, 11, 25, 10, 0, 3, 614999, UTC)


def test_status_help_says_what_the_code_does_while_starting(capsys):
    with pytest.raises(SystemExit):
        cli(["status", "--help"])
    exits = capsys.readouterr().out.split("exit status:", 1)[1]
    up, down = exits.split("; 3", 1)
    assert up.lstrip().startswith("0") and "starting" in up and "starting" not in down


def test_a_model_a_client_switched_the_router_to_is_never_removed(router_running, models_dir):
    """A request naming beta loads it without us: removal asks the router what it serves, not only the state
    file (which still names alpha)."""
    from aidevops_local.core.maintenance import removal
    from aidevops_local.core.models import library
    from aidevops_local.core.system.errors import Refused

    assert chat(router_running.endpoint, "beta").status_code == 200
    assert server_state.read().model == "alpha"
    with pytest.raises(Refused, match="being served"):
        removal.remove_model(library.resolve_model("beta"), confirmed=True)
    assert (models_dir / "beta.gguf").is_file()
