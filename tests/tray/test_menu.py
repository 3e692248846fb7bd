"""The menu for each state, built from a snapshot: what it says and what it offers."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from PySide6.QtWidgets import QMenu

from aidevops_local.core.serving.router import RouterSupport
from aidevops_local.core.serving.server import ServerStatus
from aidevops_local.core.serving.state import ServerPhase
from aidevops_local.tray import menu
from aidevops_local.tray.snapshot import ModelEntry, Snapshot, StaleSummary

GB = 1 << 30
MODELS = (
    ModelEntry("qwen2.5-coder-7b", "/m/q.gguf", "Q4_K_M", 4 * GB, fits=True, needs_bytes=5 * GB),
    ModelEntry("smollm2-135m", "/m/s.gguf", "Q4_1", 98 << 20, fits=True, needs_bytes=218 << 20),
    ModelEntry("llama-70b", "/m/l.gguf", "Q4_K_M", 40 * GB, fits=False, needs_bytes=44 * GB),
)
RAM = dict(ram_total_bytes=24 * GB, ram_available_bytes=12 * GB, ram_used_percent=50.0)


@dataclass
class FakeController:
    snapshot: Snapshot
    busy: str = ""
    last_error: str = ""
    calls: list = field(default_factory=list)

    def __getattr__(self, name):
        if name.startswith(("start_", "stop_", "restart_", "open_", "copy_", "show_", "quit", "switch_")):
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
    return Snapshot(status=status, models=MODELS, runtime_installed=True, served=(model,), **kw)


def stopped(**kw) -> Snapshot:
    return Snapshot(
        status=ServerStatus(state=ServerPhase.STOPPED, running=False, **RAM),
        models=MODELS,
        runtime_installed=True,
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
    return Snapshot(status=status, models=MODELS, runtime_installed=True)


def built(snap: Snapshot, **kw) -> tuple[QMenu, FakeController]:
    ctl = FakeController(snap, **kw)
    m = QMenu()
    menu.build(m, ctl)
    return m, ctl


def items(m: QMenu) -> dict:
    return {a.objectName(): a for a in m.actions() if a.objectName()}


def texts(m: QMenu) -> list[str]:
    return [a.text() for a in m.actions() if not a.isSeparator()]


def test_running_shows_model_quant_port_and_memory(qapp):
    m, _ = built(running())
    found = items(m)
    assert found["state"].text() == "Running: smollm2-135m (Q4_1) on port 8080"
    assert not found["state"].isEnabled()  # an information line, not a command
    memory = [a.text() for a in m.actions() if a.objectName() == "memory"]
    assert memory == ["RAM: 12.0 GB of 24.0 GB (50%)", "Server: 218 MB"]
    assert found["stop"].isEnabled() and "start" not in found
    assert found["chat"].isEnabled() and found["copy"].isEnabled()


def test_gpu_memory_and_pressure_lines(qapp):
    snap = running()
    snap = Snapshot(
        **{
            **snap.__dict__,
            "status": ServerStatus(**{**snap.status.__dict__, "gpu_memory_bytes": 3 * GB}),
            "pressure": "warning",
        }
    )
    m, _ = built(snap)
    memory = [a.text() for a in m.actions() if a.objectName() == "memory"]
    assert "GPU: 3.0 GB" in memory and "Memory pressure: warning" in memory


def test_stopped_offers_start_and_no_endpoint(qapp):
    m, ctl = built(stopped())
    found = items(m)
    assert found["state"].text() == "Stopped"
    assert found["start"].isEnabled() and "stop" not in found
    assert not found["chat"].isEnabled() and not found["copy"].isEnabled()
    found["start"].trigger()
    assert ctl.calls == [("start_server",)]


def test_nothing_to_serve_without_a_runtime(qapp):
    snap = Snapshot(status=ServerStatus(state=ServerPhase.STOPPED, running=False, **RAM), full_at=1.0)
    m, _ = built(snap)
    found = items(m)
    assert found["state"].text() == "Stopped: llama.cpp is not installed"
    assert not found["start"].isEnabled() and not found["switch"].isEnabled()


def test_crash_shows_the_error_with_log_and_restart(qapp):
    m, ctl = built(crashed())
    found = items(m)
    assert found["state"].text() == "Error: smollm2-135m stopped unexpectedly"
    assert found["start"].text() == "Restart server"
    found["show_log"].trigger()
    assert ctl.calls == [("show_log",)]


def test_last_start_failure_is_the_state_line(qapp):
    m, _ = built(stopped(), last_error="Port 8080 on 127.0.0.1 is already in use by another program.")
    assert items(m)["state"].text().startswith("Error: Port 8080")
    assert "show_log" in items(m)


def test_switch_submenu_checks_the_served_model_and_marks_what_does_not_fit(qapp):
    m, ctl = built(running())
    switch = items(m)["switch"].menu()
    switch.aboutToShow.emit()  # filled when opened
    models = [a for a in switch.actions() if a.isCheckable()]
    assert [a.data() for a in models] == [e.name for e in MODELS]
    assert [a.isChecked() for a in models] == [False, True, False]
    assert "does not fit" in models[2].text() and "44.0 GB" in models[2].text()
    assert "does not fit" not in models[0].text() and "Q4_K_M" in models[0].text()
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
    assert items(m)["state"].text() == "Running: smollm2-135m (Q4_1) on port 8080"
    m, _ = built(replace(snap, status=replace(snap.status, asleep=True)))
    assert items(m)["state"].text() == "Running: smollm2-135m (Q4_1) on port 8080, asleep"


def test_cleanup_line_only_when_there_are_stale_models(qapp):
    m, _ = built(stopped())
    assert "cleanup" not in items(m)
    m, _ = built(stopped(stale=StaleSummary(3, 12 * GB)))
    assert items(m)["cleanup"].text() == "Clean up 3 stale models (12.0 GB)…"


def test_always_there(qapp):
    for snap in (running(), stopped(), crashed()):
        m, _ = built(snap)
        found = items(m)
        for name in ("download", "usage", "settings", "wizard", "quit"):
            assert found[name].isEnabled(), name


def test_busy_job_shows_and_blocks_a_second_start(qapp):
    m, _ = built(stopped(), busy="Starting smollm2-135m…")
    found = items(m)
    assert found["state"].text() == "Starting smollm2-135m…"
    assert not found["start"].isEnabled()
