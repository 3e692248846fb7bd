"""The served endpoint and the tool's secrets, checked with real parts: the real llama-server, the real
Secret Service (gnome-keyring on a private D-Bus session, see tests/private_desktop.py), real CLI processes
and what /proc shows of them.

Covered elsewhere, not repeated here:
- binds 127.0.0.1 by default: test_server.py::test_server_listens_only_on_loopback
- `stop` never signals a pid that is not our llama-server: test_server.py::
  test_stale_state_whose_pid_is_another_process_is_never_signalled and ::test_state_with_a_recycled_pid_is_not_ours
- a release with a wrong or missing hash is never installed: test_runtime.py::
  test_checksum_mismatch_is_refused_and_the_previous_build_stays, ::test_asset_without_digest_is_refused_unless_allowed
- archive members and Hub file names that escape their folder: test_runtime.py::
  test_hostile_release_archive_is_refused_and_the_previous_build_stays, test_archives.py,
  test_pull.py::test_names_that_escape_the_models_folder_are_refused
- a model with a wrong hash is never recorded, so never served by name: test_pull.py::test_checksum_mismatch_is_refused
- the GitHub token goes to the API only: test_runtime.py::test_github_token_goes_to_the_api_only_and_is_never_printed
- the Hugging Face token lives in the keyring only: tests/tray/test_secrets.py
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import keyring
import psutil
import pytest
from keyring.backends import fail

from aidevops_local.cli.main import main as cli
from aidevops_local.core.llamacpp import build_features
from aidevops_local.core.models import downloads
from aidevops_local.core.serving import api_key, launch, server
from aidevops_local.core.serving import state as server_state
from aidevops_local.core.system import config, secrets
from aidevops_local.core.system.errors import CorruptModel, ExitCode, Refused
from tests.private_desktop import private_desktop  # noqa: F401 - the fixture, used by name below
from tests.serving import serving_settings, with_model

CLI = [sys.executable, "-m", "aidevops_local"]
HF_SECRET = "hf_securitytestAbCdEf0123456789"
GH_SECRET = "ghp_securitytestAbCdEf0123456789"


@pytest.fixture
def running(system_runtime, tiny_gguf, port):
    status = server.serve(str(tiny_gguf), port=port)
    yield status
    server.stop(grace=2)


@pytest.fixture
def only_backend():
    """Make keyring's only backend the given one, as on a machine without a usable keyring."""
    saved = keyring.get_keyring()
    yield keyring.set_keyring
    keyring.set_keyring(saved)


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        env=env or dict(os.environ),
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def chat(base_url: str, headers: dict | None = None) -> httpx.Response:
    body = with_model({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}, base_url, headers)
    return httpx.post(f"{base_url}/v1/chat/completions", headers=headers or {}, timeout=60, json=body)


def our_llama_servers() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if p.name() == "llama-server"]


def files_holding(root: Path, needles: dict[str, str]) -> list[str]:
    """Every file under root that contains one of the secrets, as "<label> in <path>"."""
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            hits += [f"{label} in {path}" for label, secret in needles.items() if secret.encode() in data]
    return hits


# ---- where it listens -----------------------------------------------------------------------------------


def test_listens_on_the_host_it_is_given_and_nowhere_else(system_runtime, tiny_gguf, port):
    status = server.serve(str(tiny_gguf), port=port, host="127.0.0.2")  # loopback too: nothing leaves the box
    try:

        def listening(pid: int) -> list[str]:
            return [
                c.laddr.ip for c in psutil.Process(pid).net_connections(kind="inet") if c.status == psutil.CONN_LISTEN
            ]

        # The Host-checking front holds the public address; llama-server only its private UNIX socket.
        assert listening(server_state.read().guard_pid) == ["127.0.0.2"]
        assert listening(status.pid) == []
        assert status.endpoint == f"http://127.0.0.2:{port}/v1"
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0  # not on the default address as well
    finally:
        server.stop(grace=2)


def test_cli_warns_before_binding_beyond_loopback(tiny_gguf, capsys):
    # No runtime is installed, so serve stops right after the warning: nothing is ever bound to 0.0.0.0.
    assert cli(["serve", str(tiny_gguf), "--host", "0.0.0.0"]) == ExitCode.NOT_INSTALLED
    err = " ".join(capsys.readouterr().err.split())
    assert "Binding to 0.0.0.0" in err and "require_api_key = true" in err


# ---- CORS -----------------------------------------------------------------------------------------------


def test_cors_reflects_only_localhost_origins(running):
    base = f"http://127.0.0.1:{running.port}"
    argv = psutil.Process(running.pid).cmdline()
    assert argv[argv.index("--cors-origins") + 1] == "localhost"

    def allowed(origin: str, method: str = "GET", path: str = "/health") -> str | None:
        headers = {"Origin": origin}
        if method == "OPTIONS":
            headers["Access-Control-Request-Method"] = "POST"
        response = httpx.request(method, f"{base}{path}", headers=headers, timeout=10)
        return response.headers.get("access-control-allow-origin")

    for evil in ("http://evil.example", "http://localhost.evil.example", "null"):
        assert allowed(evil) is None, evil
        assert allowed(evil, "OPTIONS", "/v1/chat/completions") is None, evil  # the preflight too
    for local in (f"http://localhost:{running.port}", f"http://127.0.0.1:{running.port}", "http://localhost:3000"):
        assert allowed(local) == local, local


def test_a_cors_choice_of_the_user_is_kept(system_runtime, tiny_gguf, port):
    serving_settings(extra_server_args=["--cors-origins", "https://app.example"])
    argv = launch.plan_launch(str(tiny_gguf), port=port).argv
    assert argv.count("--cors-origins") == 1 and argv[argv.index("--cors-origins") + 1] == "https://app.example"


def test_no_cors_flag_for_a_build_that_lacks_it(system_runtime, tiny_gguf, port, monkeypatch):
    without_cors = build_features.BuildFeatures(help_ran=True, unix_socket=True)
    monkeypatch.setattr(build_features, "features", lambda binary: without_cors)
    assert "--cors-origins" not in launch.plan_launch(str(tiny_gguf), port=port).argv


# ---- the API key ----------------------------------------------------------------------------------------


def test_api_key_off_leaves_no_key_and_no_tool_secret_in_the_server(system_runtime, tiny_gguf, port, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", HF_SECRET)
    monkeypatch.setenv("GITHUB_TOKEN", GH_SECRET)
    status = server.serve(str(tiny_gguf), port=port)
    try:
        env = psutil.Process(status.pid).environ()
        assert not {"HF_TOKEN", "GITHUB_TOKEN"} & set(env)
        # No key of the user's: a router holds only the key of this run, which its front adds (test_host_guard).
        assert ("LLAMA_API_KEY" in env) == server_state.read().router
        assert chat(f"http://127.0.0.1:{port}").status_code == 200
        assert status.api_key_required is False
    finally:
        server.stop(grace=2)


def test_api_key_is_generated_kept_in_the_keyring_and_enforced(
    private_desktop,  # noqa: F811
    system_runtime,
    tiny_gguf,
    port,  # noqa: F811
    isolated_home,
):
    secrets.forget(secrets.API_KEY)
    serving_settings(require_api_key=True)
    env = dict(os.environ, HF_TOKEN=HF_SECRET, GITHUB_TOKEN=GH_SECRET)
    base = f"http://127.0.0.1:{port}"

    done = run_cli("serve", str(tiny_gguf), "--port", str(port), env=env)
    assert done.returncode == 0, done.stderr
    key = secrets.read(secrets.API_KEY)
    assert key and len(key) >= 40, "serve generates the key and keeps it in the Secret Service"
    pid = json.loads(config.paths().state_file.read_text())["pid"]
    try:
        assert key not in done.stdout + done.stderr
        assert chat(base).status_code == 401
        assert chat(base, {"Authorization": "Bearer not-the-key"}).status_code == 401
        assert chat(base, {"Authorization": f"Bearer {key}"}).status_code == 200
        assert chat(base, api_key.headers(required=True)).status_code == 200
        assert httpx.get(f"{base}/health", timeout=10).status_code == 200  # health stays open, for status

        done = run_cli("status", "--json", env=env)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["api_key_required"] is True and key not in done.stdout + done.stderr
        done = run_cli("api-key", env=env)
        assert done.returncode == 0 and key not in done.stdout + done.stderr
        assert "keyring" in done.stdout and "required" in done.stdout
        done = run_cli("api-key", "--show", env=env)
        assert done.returncode == 0 and done.stdout.strip() == key

        # The key reaches llama-server through its environment only; the tool's own secrets do not reach it.
        llama = psutil.Process(pid)
        assert llama.environ().get("LLAMA_API_KEY") == key
        assert not {"HF_TOKEN", "GITHUB_TOKEN"} & set(llama.environ())
        assert HF_SECRET not in str(llama.environ()) and GH_SECRET not in str(llama.environ())
        assert key not in " ".join(llama.cmdline())
        # No other process of the tool (this test's own included) carries the key, in argv or environment.
        # (A router's model instances are the server too: they answer on a port of their own, with the key.)
        server_tree = {pid} | {child.pid for child in llama.children(recursive=True)}
        assert all(psutil.Process(p).environ().get("LLAMA_API_KEY") == key for p in server_tree)
        for proc in psutil.process_iter(["pid", "cmdline"]):
            if proc.pid in server_tree:
                continue
            try:
                assert key not in " ".join(proc.info["cmdline"] or []), proc
                if proc.pid == os.getpid() or "aidevops" in " ".join(proc.info["cmdline"] or []):
                    assert key not in str(proc.environ()), proc
            except (psutil.AccessDenied, psutil.NoSuchProcess):
                continue
        assert "LLAMA_API_KEY" not in os.environ
        # Nor any file the tool wrote: config, state, server log, database, caches.
        assert files_holding(isolated_home, {"API key": key, "HF token": HF_SECRET, "GitHub token": GH_SECRET}) == []
    finally:
        assert run_cli("stop", env=env).returncode == 0

    done = run_cli("api-key", "--rotate", env=env)
    assert done.returncode == 0 and key not in done.stdout + done.stderr
    new = secrets.read(secrets.API_KEY)
    assert new and new != key
    assert run_cli("serve", str(tiny_gguf), "--port", str(port), env=env).returncode == 0
    try:
        assert chat(base, {"Authorization": f"Bearer {key}"}).status_code == 401
        assert chat(base, {"Authorization": f"Bearer {new}"}).status_code == 200
    finally:
        assert run_cli("stop", env=env).returncode == 0
        secrets.forget(secrets.API_KEY)


def test_serve_refuses_when_no_keyring_can_keep_the_key(system_runtime, tiny_gguf, port, only_backend, capsys):
    only_backend(fail.Keyring())
    serving_settings(require_api_key=True)
    with pytest.raises(Refused) as err:
        server.serve(str(tiny_gguf), port=port)
    assert "require_api_key = false" in err.value.hint and str(config.paths().config_file) in err.value.hint
    assert server_state.read() is None and our_llama_servers() == []
    assert cli(["serve", str(tiny_gguf), "--port", str(port)]) == ExitCode.REFUSED
    assert "require_api_key = false" in " ".join(capsys.readouterr().err.split())


def test_a_keyring_that_raises_is_refused_with_the_way_out(only_backend):
    from keyring.errors import KeyringLocked

    class LockedKeyring(keyring.backend.KeyringBackend):
        """A keyring that is there but locked (the user dismissed the unlock prompt). Negative priority: keyring
        never picks it by itself for a later test."""

        priority = -1

        def get_password(self, service, username):
            raise KeyringLocked("locked")

        def set_password(self, service, username, password):
            raise KeyringLocked("locked")

        def delete_password(self, service, username):
            raise KeyringLocked("locked")

    only_backend(LockedKeyring())
    with pytest.raises(Refused) as err:
        api_key.ensure()  # `api-key --show` with the setting off: no setting to turn off is offered
    assert "KeyringLocked" in err.value.message and "require_api_key" not in err.value.hint
    serving_settings(require_api_key=True)
    with pytest.raises(Refused) as err:
        api_key.ensure()
    assert "KeyringLocked" in err.value.message and "require_api_key = false" in err.value.hint
    assert api_key.headers(required=True) == {}


def test_a_build_that_cannot_take_the_key_from_its_environment_is_refused(system_runtime, tiny_gguf, port, monkeypatch):
    monkeypatch.setattr(
        build_features,
        "features",
        lambda binary: build_features.BuildFeatures(help_ran=True, api_key=True, unix_socket=True),
    )
    serving_settings(require_api_key=True)
    with pytest.raises(Refused, match="LLAMA_API_KEY") as err:
        launch.plan_launch(str(tiny_gguf), port=port)
    assert "require_api_key = false" in err.value.hint


# ---- only verified files are served ---------------------------------------------------------------------


def test_an_unfinished_download_is_never_served(system_runtime, tiny_gguf, port):
    partial = config.paths().partial_dir
    partial.mkdir(parents=True)
    part = partial / ("ab" * 32 + ".part")
    part.write_bytes(tiny_gguf.read_bytes())  # complete bytes, but never verified
    with pytest.raises(Refused, match="unfinished download"):
        server.serve(str(part), port=port)
    assert server_state.read() is None and our_llama_servers() == []


def test_a_pulled_model_changed_on_disk_is_not_served(system_runtime, fake_hub, tiny_gguf, port, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    fake_hub.add_repo("org/tiny-GGUF", {"tiny-Q8_0.gguf": tiny_gguf})
    pulled = downloads.pull("org/tiny-GGUF").model
    with open(pulled.path, "ab") as f:
        f.write(b"\0" * 4096)  # still loads as a GGUF: only the recorded size tells
    with pytest.raises(CorruptModel, match="changed on disk") as err:
        server.serve(pulled.name, port=port)
    assert "pull org/tiny-GGUF" in err.value.hint and "doctor --hashes" in err.value.hint
    assert server_state.read() is None and our_llama_servers() == []
