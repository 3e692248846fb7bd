"""The menu for each state, built from a snapshot: what it says and what it offers."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest
from PySide6.QtWidgets import QMenu

from aidevops_local import __version__
from aidevops_local.core.serving.router import RouterSupport
from aidevops_local.core.serving.server import ServerStatus
from aidevops_local.core.serving.state import ServerPhase
from aidevops_local.tray import menu
from aidevops_local.tray.snapshot import ModelEntry, Snapshot, StaleSummary
from aidevops_local.tray.throughput import Activity

GB = 1 << 30
MODELS = (
    ModelEntry("qwen2.5-coder-7b", "/m/q.gguf", "Q4_K_M", 4 * GB, True, 5 * GB, "Qwen2.5 Coder 7B Instruct"),
    ModelEntry("smollm2-135m", "/m/s.gguf", "Q4_1", 98 << 20, True, 218 << 20, "SmolLM2 135M Instruct"),
    ModelEntry("llama-70b", "/m/l.gguf", "Q4_K_M", 40 * GB, False, 44 * GB, "Llama 3.3 70B Instruct"),
)
RAM = dict(ram_total_bytes=24 * GB, ram_available_bytes=12 * GB, ram_used_percent=50.0)
COMMANDS = ("start_", "stop_", "restart_", "open_", "copy_", "show_", "quit", "switch_", "unload_", "use_", "check_")


@dataclass
class FakeController:
    snapshot: Snapshot
    busy: str = ""
    last_error: str = ""
    free_port: int | None = None
    copied: bool = False
    calls: list = field(default_factory=list)

    def __getattr__(self, name):
        if name.startswith(COMMANDS):
            return lambda *args: self.calls.append((name, *args))
        raise AttributeError(name)


def running(model="smollm2-135m", **kw) -> Snapshot:
    status = ServerStatus(
        state=ServerPhase.RUNNING,
        running=True,
        pid=123,
        endpoint="http://127.0.0.1:8080/v1",
        host="127.0.0.1",
        port=8080,
        model=model,
        rss_bytes=218 << 20,
        **RAM,
    )
    return Snapshot(
        status=status, models=MODELS, runtime_installed=True, served=(model,), start_model="smollm2-135m", **kw
    )


def stopped(**kw) -> Snapshot:
    return Snapshot(
        status=ServerStatus(state=ServerPhase.STOPPED, running=False, **RAM),
        models=MODELS,
        runtime_installed=True,
        start_model="smollm2-135m",
        **kw,
    )


def crashed() -> Snapshot:
    status = ServerStatus(
        state=ServerPhase.CRASHED,
        running=False,
        pid=123,
        port=8080,
        model="smollm2-135m",
        log_path="/logs/x.log",
        message="llama-server (pid 123) is no longer running",
        **RAM,
    )
    return Snapshot(status=status, models=MODELS, runtime_installed=True, start_model="smollm2-135m")


def built(snap: Snapshot, **kw) -> tuple[QMenu, FakeController]:
    ctl = FakeController(snap, **kw)
    m = QMenu()
    menu.build(m, ctl)
    return m, ctl


def items(m: QMenu) -> dict:
    return {a.objectName(): a for a in m.actions() if a.objectName()}


def texts(m: QMenu) -> list[str]:
    return [a.text() for a in m.actions() if not a.isSeparator()]


def starting() -> Snapshot:
    snap = stopped()
    status = replace(snap.status, state=ServerPhase.STARTING, running=True, pid=123, port=8080, model="smollm2-135m")
    return replace(snap, status=status)


def stopping() -> Snapshot:
    snap = starting()
    return replace(snap, status=replace(snap.status, state=ServerPhase.STOPPING))


def test_a_stop_under_way_has_its_own_icon_state_not_the_starting_one():
    assert (starting().state, stopping().state, crashed().state) == ("starting", "stopping", "error")


def pressed(level: str, **kw) -> Snapshot:
    """The 4 GB coder served under memory pressure, in a router (it can unload and keep running)."""
    snap = running("qwen2.5-coder-7b", pressure=level, router_active=True, **kw)
    return replace(snap, status=replace(snap.status, router=True, ram_used_percent=96.0))


STATES = {
    "stopped": (stopped(), {}, "Stopped", "Memory: normal"),
    "starting": (starting(), {}, "Starting SmolLM2 135M Instruct…", "Memory: normal"),
    "stopping": (stopping(), {}, "Stopping SmolLM2 135M Instruct…", "Memory: normal"),
    "running": (running(), {}, "Running · SmolLM2 135M Instruct", "Memory: normal"),
    "busy": (
        running(activity=Activity("/l.log", 10, True, 42.4)),
        {},
        "Running · SmolLM2 135M Instruct",
        "Memory: normal",
    ),
    "crashed": (crashed(), {}, "Error: SmolLM2 135M Instruct stopped unexpectedly", "Memory: normal"),
    "memory high": (pressed("warning"), {}, "Running · Qwen2.5 Coder 7B Instruct", "Memory: high"),
    "memory critical": (pressed("critical"), {}, "Running · Qwen2.5 Coder 7B Instruct", "Memory: critical"),
    "port taken": (stopped(), {"last_error": "Port 8080 is in use.", "free_port": 8093}, "Error: Port", "Memory:"),
}


@pytest.mark.parametrize("case", STATES)
def test_each_state_has_an_enabled_header_the_pressure_word_and_the_always_there_actions(case, qapp):
    snap, kw, header, memory = STATES[case]
    m, ctl = built(snap, **kw)
    found = items(m)
    assert found["state"].text().startswith(header)
    assert found["state"].isEnabled() and found["memory"].isEnabled()  # normal text, not grey
    assert found["memory"].text().startswith(memory) and not found["memory"].icon().isNull()
    assert m.actions()[0] is found["state"]
    for name in ("show_log", "folder", "download", "usage", "settings", "wizard", "updates", "about", "quit"):
        assert found[name].isEnabled(), name
    assert found["about"].text() == f"About aidevops Local Models {__version__}"
    found["state"].trigger()
    assert ctl.calls == [("show_control_window",)]


def test_running_names_the_model_once_with_its_quant_size_and_endpoint(qapp):
    m, ctl = built(running())
    found = items(m)
    assert found["detail"].text() == "Q4_1 · 98 MB · port 8080"
    assert found["memory"].text() == "Memory: normal · server 218 MB · 12.0 GB of 24.0 GB used (50%)"
    assert found["copy"].text() == "Copy http://127.0.0.1:8080/v1" and found["copy"].isEnabled()
    assert found["stop"].isEnabled() and "start" not in found and found["chat"].isEnabled()
    assert all(t.count("Q4_1") <= 1 for t in texts(m))
    assert "unload" not in found and "smaller" not in found  # not a router, no pressure
    found["copy"].trigger()
    assert ctl.calls == [("copy_endpoint",)]


def test_copied_says_so(qapp):
    m, _ = built(running(), copied=True)
    assert items(m)["copy"].text() == "Copied http://127.0.0.1:8080/v1"


def test_busy_shows_tokens_per_second(qapp):
    snap, kw, _, _ = STATES["busy"]
    m, _ = built(snap, **kw)
    assert items(m)["activity"].text() == "Answering requests · 42 tokens/s"
    m, _ = built(running())
    assert "activity" not in items(m)


@pytest.mark.parametrize("level", ["warning", "critical"])
def test_memory_pressure_offers_unload_and_a_smaller_model(level, qapp):
    m, ctl = built(pressed(level))
    found = items(m)
    assert found["unload"].text() == "Unload Qwen2.5 Coder 7B Instruct (keep the server)"
    assert found["smaller"].text() == "Switch to SmolLM2 135M Instruct (98 MB)"
    found["smaller"].trigger()
    found["unload"].trigger()
    assert ctl.calls == [("switch_model", "smollm2-135m"), ("unload_model",)]
    assert menu.LEVEL_COLOURS[{"warning": "high"}.get(level, level)] != menu.LEVEL_COLOURS["normal"]


def test_stopped_start_names_its_model_and_offers_no_endpoint(qapp):
    m, ctl = built(stopped())
    found = items(m)
    assert found["state"].text() == "Stopped" and "detail" not in found
    assert found["start"].text() == "Start SmolLM2 135M Instruct" and found["start"].isEnabled()
    assert "stop" not in found and "unload" not in found
    assert not found["chat"].isEnabled() and not found["copy"].isEnabled()
    found["start"].trigger()
    assert ctl.calls == [("start_server",)]


def test_nothing_to_serve_without_a_runtime(qapp):
    snap = Snapshot(status=ServerStatus(state=ServerPhase.STOPPED, running=False, **RAM), full_at=1.0)
    m, _ = built(snap)
    found = items(m)
    assert found["state"].text() == "Stopped: llama.cpp is not installed"
    assert found["start"].text() == "Start server"
    assert not found["start"].isEnabled() and not found["switch"].isEnabled()


def test_crash_shows_the_error_with_log_and_restart(qapp):
    m, ctl = built(crashed())
    found = items(m)
    assert found["start"].text() == "Restart SmolLM2 135M Instruct"
    found["start"].trigger()
    found["show_log"].trigger()
    assert ctl.calls == [("restart_server",), ("show_log",)]


def test_a_taken_port_offers_a_free_one(qapp):
    m, ctl = built(stopped(), last_error="Port 8080 on 127.0.0.1 is already in use by another program.", free_port=8093)
    found = items(m)
    assert found["state"].text().startswith("Error: Port 8080")
    assert found["use_port"].text() == "Use port 8093" and found["use_port"].isEnabled()
    found["use_port"].trigger()
    assert ctl.calls == [("use_port", 8093)]
    assert "use_port" not in items(built(stopped())[0])


def test_switch_submenu_uses_display_names_checks_the_served_model_and_marks_what_does_not_fit(qapp):
    m, ctl = built(running())
    switch = items(m)["switch"].menu()
    switch.aboutToShow.emit()  # filled when opened
    models = [a for a in switch.actions() if a.isCheckable()]
    assert [a.data() for a in models] == [e.name for e in MODELS]
    assert [a.isChecked() for a in models] == [False, True, False]
    assert models[0].text() == "Qwen2.5 Coder 7B Instruct  ·  Q4_K_M · 4.0 GB"
    assert "does not fit" in models[2].text() and "44.0 GB" in models[2].text()
    assert switch.actions()[0].text() == "Switching restarts the server"
    models[0].trigger()
    assert ctl.calls == [("switch_model", "qwen2.5-coder-7b")]


def test_router_mode_switch_is_not_a_restart(qapp):
    snap = running(router_active=True, router=RouterSupport(router=True))
    offered = [m.name for m in MODELS[:-1]]  # the last one was pulled after the router started
    snap = replace(snap, status=replace(snap.status, router=True, models=offered))
    m, _ = built(snap)
    switch = items(m)["switch"].menu()
    switch.aboutToShow.emit()
    assert "Switching restarts the server" not in texts(switch)
    labels = [a.text() for a in switch.actions() if a.data()]
    assert [label.endswith("(restarts the server)") for label in labels] == [False] * len(offered) + [True]
    assert "unload" in items(m)
    m, _ = built(replace(snap, status=replace(snap.status, asleep=True)))
    assert items(m)["state"].text() == "Running · SmolLM2 135M Instruct (asleep: the next request wakes it)"


def test_cleanup_line_only_when_there_are_unused_models(qapp):
    m, _ = built(stopped())
    assert "cleanup" not in items(m)
    m, _ = built(stopped(stale=StaleSummary(3, 12 * GB)))
    assert items(m)["cleanup"].text() == "Clean up 3 unused models (12.0 GB)…"


def test_busy_job_shows_and_blocks_a_second_start(qapp):
    m, _ = built(stopped(), busy="Starting SmolLM2 135M Instruct…")
    found = items(m)
    assert found["state"].text() == "Starting SmolLM2 135M Instruct…"
    assert not found["start"].isEnabled()


def test_an_open_menu_updates_its_figures_in_place_and_rebuilds_for_a_new_state(qapp):
    m, ctl = built(running())
    memory = items(m)["memory"]
    status = replace(ctl.snapshot.status, ram_available_bytes=6 * GB, ram_used_percent=75.0)
    ctl.snapshot = replace(ctl.snapshot, status=status)
    menu.update(m, ctl)
    assert items(m)["memory"] is memory  # the same item: no flicker under the pointer
    assert memory.text() == "Memory: normal · server 218 MB · 18.0 GB of 24.0 GB used (75%)"
    ctl.snapshot = stopped()
    menu.update(m, ctl)
    assert items(m)["state"].text() == "Stopped" and "start" in items(m)


def test_workers_show_in_the_menu_with_the_one_that_stopped_answering(qapp):
    snap = running()
    workers = [
        {"worker": "me@studio", "free_bytes": 31 * GB, "answers": True},
        {"worker": "me@laptop", "free_bytes": 7 * GB, "answers": False},
    ]
    m, _ = built(replace(snap, status=replace(snap.status, workers=workers)))
    line = items(m)["workers"]
    assert line.text() == "Workers: me@studio (31.0 GB free) · me@laptop not answering"
    assert line.isEnabled() and not line.icon().isNull()  # a coloured dot: amber, one is in trouble
    assert menu.workers_colour(replace(snap, status=replace(snap.status, workers=workers[:1]))) == "#2da44e"
    assert "workers" not in items(built(snap)[0])  # none pooled: no line
