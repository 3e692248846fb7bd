"""`hf-token`: the Hugging Face token kept in the real Secret Service, read from stdin only, checked against
a local Hub."""

from __future__ import annotations

import os
import subprocess
import sys

import keyring

from aidevops_local.core.system import secrets
from tests.private_desktop import private_desktop  # noqa: F401 - the fixture, used by name below

TOKEN = "hf_test_token_0123456789abcdef"


def cli(*args: str, stdin: str = "", env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "aidevops_local", "hf-token", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=env or dict(os.environ),
    )


def test_set_check_forget_through_the_secret_service(private_desktop, fake_hub, monkeypatch):  # noqa: F811
    fake_hub.add_user(TOKEN, "alice")
    env = dict(os.environ, HF_ENDPOINT=fake_hub.endpoint)

    done = cli("--set", stdin=TOKEN + "\n", env=env)
    assert done.returncode == 0, done.stderr
    assert "alice" in done.stderr
    assert keyring.get_password(secrets.SERVICE, secrets.HF_TOKEN) == TOKEN
    assert TOKEN not in done.stdout + done.stderr

    done = cli(env=env)
    assert done.returncode == 0 and "set, from the keyring" in done.stdout

    done = cli("--forget", env=env)
    assert done.returncode == 0 and "Forgot" in done.stderr
    assert keyring.get_password(secrets.SERVICE, secrets.HF_TOKEN) is None


def test_a_token_the_hub_refuses_is_not_stored(private_desktop, fake_hub):  # noqa: F811
    env = dict(os.environ, HF_ENDPOINT=fake_hub.endpoint)
    done = cli("--set", stdin="hf_not_a_real_token\n", env=env)
    assert done.returncode != 0 and "did not accept" in done.stderr
    assert keyring.get_password(secrets.SERVICE, secrets.HF_TOKEN) is None


def test_without_a_keyring_the_token_is_refused_not_written_anywhere(isolated_home):
    env = {k: v for k, v in os.environ.items() if k != "DBUS_SESSION_BUS_ADDRESS"}
    env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
    done = cli("--set", "--no-check", stdin=TOKEN, env=env)
    assert done.returncode != 0 and "hint:" in done.stderr
    for path in isolated_home.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_the_token_is_never_taken_from_arguments():
    done = cli("--set", TOKEN)
    assert done.returncode == 2  # argparse: unrecognised argument, nothing stored
