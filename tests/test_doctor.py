"""`doctor` against real breakage: a runtime whose libraries are gone, model files deleted, resized and
altered, a damaged database file, a port held by another process, and a desktop with and without a tray
host (Xvfb with trayer, a StatusNotifierWatcher on a private bus)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import keyring
import psutil
import pytest
from keyring.backends import fail

from aidevops_local.cli.main import main as cli
from aidevops_local.core.database import store
from aidevops_local.core.llamacpp import runtime
from aidevops_local.core.maintenance import doctor
from aidevops_local.core.models import downloads
from aidevops_local.core.serving import server
from aidevops_local.core.serving import state as server_state
from aidevops_local.core.system import config, hardware
from aidevops_local.tray.notification_check import check_notifications
from tests.private_desktop import private_desktop  # noqa: F401 - the fixture, used by name below
from tests.serving import serving_settings


@pytest.fixture
def only_backend():
    saved = keyring.get_keyring()
    yield keyring.set_keyring
    keyring.set_keyring(saved)


def check(name: str, *, hashes: bool = False) -> doctor.Check:
    found = [c for c in doctor.run(hashes=hashes).checks if c.name == name]
    assert found, f"no {name!r} check"
    return found[0]


def doctor_json(capsys, *args: str) -> tuple[int, dict[str, dict]]:
    capsys.readouterr()
    code = cli(["doctor", "--json", *args])
    report = json.loads(capsys.readouterr().out)
    return code, {c["name"]: c for c in report["checks"]}


def test_a_working_setup_passes(private_desktop, system_runtime, monkeypatch, capsys):  # noqa: F811
    monkeypatch.setenv("DISPLAY", private_desktop.display)
    code, checks = doctor_json(capsys)
    assert code == 0, [c for c in checks.values() if c["status"] != "ok"]
    assert {name: c["status"] for name, c in checks.items()} == {
        "settings": "ok",
        "app": "ok",
        "runtime": "ok",
        "previous runtime": "ok",
        "server security": "ok",
        "database": "ok",
        "models": "ok",
        "keyring": "ok",
        "port": "ok",
        "tray host": "ok",
        "disk": "ok",
    }
    assert "version: 1 (571d0d5)" in checks["runtime"]["summary"]
    assert "--cors-origins localhost" in checks["server security"]["summary"]
    assert "SecretService" in checks["keyring"]["summary"]
    assert "XEmbed" in checks["tray host"]["summary"]
    assert cli(["doctor"]) == 0
    assert "no problems" in capsys.readouterr().out


def test_nothing_installed_fails_and_says_to_install(capsys):
    code, checks = doctor_json(capsys)
    assert code == 1
    assert checks["runtime"]["status"] == "fail" and "aidevops-local install" in checks["runtime"]["fix"]
    assert "server security" not in checks  # nothing to ask without a build


def test_a_runtime_that_no_longer_runs(system_runtime, llama_server_dir, tmp_path, capsys):
    broken = tmp_path / "build"
    shutil.copytree(llama_server_dir, broken, symlinks=True)
    runtime.use_system(path=broken / "llama-server")  # works now; the one on PATH becomes the previous build
    for lib in broken.glob("lib*.so*"):
        lib.unlink()  # what a half-deleted install or a distribution upgrade leaves
    code, checks = doctor_json(capsys)
    assert code == 1
    failed = checks["runtime"]
    assert failed["status"] == "fail" and "does not run" in failed["summary"]
    assert any("shared libraries" in line for line in failed["details"]), failed["details"]
    assert "install --force" in failed["fix"] and "update --rollback" in failed["fix"]
    assert checks["previous runtime"]["status"] == "ok" and "rollback" in checks["previous runtime"]["summary"]
    capsys.readouterr()
    assert cli(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "fail  runtime" in out and "fix:" in out


def test_model_files_missing_resized_and_altered(fake_hub, tiny_gguf, monkeypatch, capsys):
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    names = ["gone-Q8_0.gguf", "grown-Q8_0.gguf", "flipped-Q8_0.gguf", "fine-Q8_0.gguf"]
    fake_hub.add_repo("org/tiny-GGUF", dict.fromkeys(names, tiny_gguf))
    paths = {name: downloads.pull("org/tiny-GGUF", name).model.path for name in names}
    assert check("models", hashes=True).status == "ok"

    paths["gone-Q8_0.gguf"].unlink()
    with open(paths["grown-Q8_0.gguf"], "ab") as f:
        f.write(b"\0" * 100)
    with open(paths["flipped-Q8_0.gguf"], "r+b") as f:  # same size: only a hash tells
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))

    quick = check("models")
    assert quick.status == "fail" and "hashes not checked" not in quick.summary
    assert any(d.startswith("gone-Q8_0: file missing") for d in quick.details)
    assert any(d.startswith("grown-Q8_0:") and "recorded" in d for d in quick.details)
    assert not any("flipped" in d for d in quick.details) and len(quick.details) == 2

    code, checks = doctor_json(capsys, "--hashes")
    assert code == 1
    details = checks["models"]["details"]
    assert "flipped-Q8_0: flipped-Q8_0.gguf does not match its recorded hash" in details and len(details) == 3
    assert not any("fine" in d for d in details)
    assert "pull" in checks["models"]["fix"]


def test_a_damaged_database(capsys):
    db = config.paths().database
    db.parent.mkdir(parents=True)
    db.write_bytes(os.urandom(8192))
    code, checks = doctor_json(capsys)
    assert code == 1
    assert checks["database"]["status"] == "fail" and "--reset-db" in checks["database"]["fix"]
    assert checks["models"]["status"] == "warn" and "not checked" in checks["models"]["summary"]


def test_a_database_with_migrations_pending():
    db = config.paths().database
    db.parent.mkdir(parents=True)
    with sqlite3.connect(db) as conn:  # the seed's schema, as the framework's earlier helper left it
        conn.execute("CREATE TABLE model_usage (id INTEGER PRIMARY KEY, model TEXT, tokens_in INTEGER)")
    found = check("database")
    assert found.status == "warn" and "m001_seed_tables" in found.summary
    store.close()


def test_the_port_held_by_another_program_then_by_our_server(system_runtime, tiny_gguf, free_port):
    port = free_port()
    serving_settings(port=port)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"""
import socket, time
s = socket.socket(); s.bind(("127.0.0.1", {port})); s.listen(); print("ready", flush=True); time.sleep(60)
""",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        taken = check("port")
        assert taken.status == "fail" and "another program" in taken.summary
        assert f"pid {holder.pid}" in taken.summary  # we started it, so we may see it
        assert f"port = {port + 1}" in taken.fix
    finally:
        holder.kill()
        holder.wait()
    status = server.serve(str(tiny_gguf))
    try:
        ours = check("port")
        assert ours.status == "ok" and f"our server (pid {status.pid})" in ours.summary
    finally:
        server.stop(grace=2)


def test_the_default_port_held_by_another_program_is_no_problem_when_ours_is_another(system_runtime):
    settings = config.load_settings()
    assert settings.port != 8080  # the tests' settings take a free port
    default_holder = socket.socket()
    try:
        default_holder.bind(("127.0.0.1", 8080))
        default_holder.listen()
    except OSError:
        pass  # another program holds it already: just as good for this test
    try:
        found = check("port")
    finally:
        default_holder.close()
    assert found.status == "ok" and f"127.0.0.1:{settings.port} is free" in found.summary


def test_tray_host_absent_then_a_status_notifier_watcher(private_desktop, monkeypatch):  # noqa: F811
    monkeypatch.delenv("DISPLAY", raising=False)
    missing = check("tray host")
    assert missing.status == "warn" and "gnome-shell-extension-appindicator" in missing.fix
    watcher = subprocess.Popen(
        [sys.executable, "-m", "tests.tray.sni_watcher"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        env=dict(os.environ),
    )
    try:
        assert watcher.stdout.readline().strip() == "ready"
        found = check("tray host")
        assert found.status == "ok" and "StatusNotifierWatcher" in found.summary
    finally:
        watcher.kill()
        watcher.wait()


def test_keyring_unusable_warns_and_fails_when_the_api_key_needs_it(only_backend):
    only_backend(fail.Keyring())
    assert check("keyring").status == "warn"
    serving_settings(require_api_key=True)
    refused = check("keyring")
    assert refused.status == "fail" and "API key" in refused.summary and refused.fix


def test_a_public_host_is_flagged(system_runtime):
    serving_settings(host="0.0.0.0")  # nothing is started
    found = check("server security")
    assert found.status == "fail" and "0.0.0.0" in found.summary and "require_api_key = true" in found.fix


def test_a_key_on_the_command_line_fails_the_settings_check_and_is_never_shown(system_runtime, capsys):
    path = config.paths().config_file
    text = path.read_text()
    assert "extra_server_args = []" in text
    path.write_text(text.replace("extra_server_args = []", 'extra_server_args = ["--api-key", "visible-to-everyone"]'))
    code, checks = doctor_json(capsys)
    assert code == 1
    found = checks["settings"]
    assert found["status"] == "fail" and "--api-key" in found["summary"] and "process list" in found["summary"]
    assert "require_api_key = true" in found["summary"] + found["fix"]
    assert "visible-to-everyone" not in found["summary"] + found["fix"]
    assert checks["runtime"]["status"] == "ok"  # the other checks still run


def test_security_reports_where_the_running_server_really_listens(
    system_runtime, llama_server_dir, tiny_gguf, free_port
):
    port = free_port()
    status = server.serve(str(tiny_gguf), port=port)
    try:
        found = check("server security")
        assert found.status == "ok"
        assert f"the running server (pid {status.pid}) listens on 127.0.0.1:{port}" in found.summary
    finally:
        server.stop(grace=2)

    # A server bound to every interface while its state says 127.0.0.1, as an overriding flag once made it.
    from tests.fixtures.prepare import llama_server

    port = free_port()
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
        exposed = check("server security")
        server_state.clear()
    assert exposed.status == "fail"
    assert f"listens on 0.0.0.0:{port}: other machines can reach it" in exposed.summary
    assert "aidevops-local stop" in exposed.fix


@pytest.fixture
def notification_backend(monkeypatch):
    """desktop-notifier's backend as macOS would give it, authorised or not; the platform faked as macOS."""
    from desktop_notifier import main as dn_main
    from desktop_notifier.backends.dummy import DummyNotificationCenter

    monkeypatch.setattr(hardware, "os_name", lambda: "darwin")
    allowed = {"value": False}

    class CocoaNotificationCenter(DummyNotificationCenter):
        async def has_authorisation(self) -> bool:
            return allowed["value"]

    monkeypatch.setattr(dn_main, "get_backend_class", lambda: CocoaNotificationCenter)
    return allowed


def test_notification_permission_denied_on_macos_says_where_to_allow_it(notification_backend):
    found = check_notifications()
    assert found.name == "notifications" and found.status == doctor.WARN
    assert "not allowed" in found.summary
    assert "System Settings" in found.fix and "Notifications" in found.fix
    notification_backend["value"] = True
    assert check_notifications().status == doctor.OK


def test_notifications_outside_the_app_bundle_on_macos(notification_backend, monkeypatch):
    from desktop_notifier import main as dn_main
    from desktop_notifier.backends.dummy import DummyNotificationCenter

    monkeypatch.setattr(dn_main, "get_backend_class", lambda: DummyNotificationCenter)
    found = check_notifications()
    assert found.status == doctor.WARN and "app bundle" in found.summary


def test_notifications_are_not_a_check_off_macos(monkeypatch):
    monkeypatch.setattr(hardware, "os_name", lambda: "linux")
    assert check_notifications() is None
    assert "notifications" not in [c.name for c in doctor.run(notifications=check_notifications).checks]


def test_the_cli_doctor_asks_the_notification_centre_between_the_tray_host_and_the_disk(notification_backend, capsys):
    notification_backend["value"] = True
    _, checks = doctor_json(capsys)
    names = list(checks)
    assert names[names.index("tray host") + 1 :] == ["notifications", "disk"]
    assert checks["notifications"]["summary"] == "allowed in the notification centre"
