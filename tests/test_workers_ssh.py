"""The safe transport, for real: a worker reached through OpenSSH. A real sshd on a loopback port with a
throwaway host key and user key plays the other machine (its own AIDEVOPS_HOME, the same runtime); the tool
starts the worker there over SSH, opens the tunnel, serves across it, and closes the tunnel on stop."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from aidevops_local.core.rpc import tunnels, worker
from aidevops_local.core.serving import server
from aidevops_local.core.system import config
from aidevops_local.core.system.errors import Refused
from tests.serving import chat, serving_settings
from tests.waiting import wait_for

SSHD = Path("/usr/sbin/sshd")


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


@pytest.fixture
def other_machine(tmp_path, free_port, llama_server_dir, monkeypatch):
    """An sshd on 127.0.0.1 that logs this user in with a throwaway key, into an environment of its own: its
    AIDEVOPS_HOME (with the test runtime adopted) and this checkout's aidevops-local first on PATH. The client
    side reaches it as ``<user>@worker1`` through an ssh config of its own (AIDEVOPS_LOCAL_SSH)."""
    d = tmp_path / "ssh"
    d.mkdir()
    remote_home = tmp_path / "other-machine"
    remote_home.mkdir()
    env = {**os.environ, "AIDEVOPS_HOME": str(remote_home)}
    adopt = "from aidevops_local.core.llamacpp import runtime; import sys; runtime.use_system(path=sys.argv[1])"
    subprocess.run([sys.executable, "-c", adopt, str(llama_server_dir / "llama-server")], env=env, check=True)
    host_pub = _keygen(d / "host_key")
    (d / "authorized_keys").write_text(_keygen(d / "user_key") + "\n")
    port = free_port()
    bin_dir = Path(sys.executable).parent
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\nPidFile {d / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nAllowTcpForwarding local\n"
        f"SetEnv AIDEVOPS_HOME={remote_home} PATH={bin_dir}:/usr/local/bin:/usr/bin:/bin\n"
    )
    (d / "known_hosts").write_text(f"worker1 {host_pub}\n")
    (d / "ssh_config").write_text(
        f"Host worker1\n  HostName 127.0.0.1\n  Port {port}\n  IdentityFile {d / 'user_key'}\n  IdentitiesOnly yes\n"
        f"  HostKeyAlias worker1\n  UserKnownHostsFile {d / 'known_hosts'}\n  StrictHostKeyChecking yes\n"
        f"Host nowhere\n  HostName 127.0.0.1\n  Port {free_port()}\n"  # no sshd there
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
    sshd = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(d / "sshd_config")], stderr=open(d / "sshd.log", "wb"))
    wait_for(lambda: worker.answers("127.0.0.1", port), what="sshd")
    monkeypatch.setenv(tunnels.SSH_ENV, f"ssh -F {d / 'ssh_config'}")
    yield f"{getpass.getuser()}@worker1", env
    subprocess.run(["aidevops-local", "worker", "stop"], env={**env, "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    sshd.terminate()
    sshd.wait(timeout=10)


def test_serving_across_a_worker_reached_through_ssh(system_runtime, small_machine, other_machine, smollm2_gguf):
    target, remote_env = other_machine
    serving_settings(workers=[target])
    status = server.serve(str(smollm2_gguf))
    try:
        (shown,) = status.workers
        assert (shown["worker"], shown["via"], shown["answers"]) == (target, "ssh", True)
        assert shown["endpoint"].startswith("127.0.0.1:")  # llama-server talks to the tunnel's local end
        tunnel = tunnels.Tunnel(**json.loads(config.paths().state_file.read_text())["workers"][0]["tunnel"])
        assert tunnels.alive(tunnel) and "ssh" in psutil.Process(tunnel.pid).name()
        # The worker on the other machine listens on its loopback only: SSH is the only way in.
        remote = json.loads(
            subprocess.run(
                [sys.executable, "-m", "aidevops_local", "worker", "status", "--json"],
                env=remote_env,
                capture_output=True,
                text=True,
            ).stdout
        )
        assert remote["running"] and remote["loopback"] and remote["endpoint"].endswith(f":{tunnel.remote_port}")
        assert f"rpc = {shown['endpoint']}" in config.paths().router_presets.read_text()
        assert chat(status.endpoint, status.model).status_code == 200
    finally:
        server.stop(grace=5)
    wait_for(lambda: not tunnels.alive(tunnel), what="the tunnel to close with the server")


def test_a_worker_ssh_cannot_reach_is_left_out_with_the_reason(
    system_runtime, small_machine, other_machine, smollm2_gguf
):
    serving_settings(workers=[f"{getpass.getuser()}@nowhere"])
    with pytest.raises(Refused) as refused:
        server.serve(str(smollm2_gguf))
    assert "Could not start the worker on" in refused.value.message and "@nowhere" in refused.value.message
