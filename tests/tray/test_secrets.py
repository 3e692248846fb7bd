"""The Hugging Face token through the real Secret Service (gnome-keyring on the test bus): set, read, forget;
refused, with a reason, where the only keyring is a fail or null backend; tested against a local Hub."""

from __future__ import annotations

import subprocess

import keyring
import pytest
from keyring.backends import fail, null

from aidevops_local.core.system import config, secrets
from aidevops_local.core.system.errors import LocalModelsError, NetworkError, Refused

TOKEN = "hf_testtoken1234567890abcdef"


@pytest.fixture
def secret_service():
    ring = keyring.get_keyring()
    assert "SecretService" in type(ring).__module__, f"expected the Secret Service backend, got {ring!r}"
    yield ring
    secrets.forget(secrets.HF_TOKEN)


@pytest.fixture
def only_backend():
    """Make keyring's only backend the given one, as on a machine without a keyring."""
    saved = keyring.get_keyring()

    def use(backend):
        keyring.set_keyring(backend)

    yield use
    keyring.set_keyring(saved)


def test_token_set_read_forget_through_the_secret_service(secret_service):
    assert secrets.keyring_status().usable
    secrets.store(secrets.HF_TOKEN, TOKEN)
    assert secrets.read(secrets.HF_TOKEN) == TOKEN
    # Stored where any Secret Service client finds it, not in a private file.
    assert secret_service.get_password(secrets.SERVICE, secrets.HF_TOKEN) == TOKEN
    assert secrets.hf_token() == TOKEN
    assert secrets.hf_token_info() == secrets.TokenInfo("keyring", True)
    assert secrets.forget(secrets.HF_TOKEN) is True
    assert secrets.read(secrets.HF_TOKEN) is None
    assert secrets.forget(secrets.HF_TOKEN) is False


def test_token_never_lands_in_config_logs_or_argv(secret_service, isolated_home):
    secrets.store(secrets.HF_TOKEN, TOKEN)
    config.save_settings(config.load_settings())
    for path in isolated_home.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), f"the token is in {path}"
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert TOKEN not in ps


@pytest.mark.parametrize("backend", [fail.Keyring(), null.Keyring()], ids=["fail", "null"])
def test_no_secure_backend_refuses_with_a_reason(only_backend, backend):
    only_backend(backend)
    status = secrets.keyring_status()
    assert not status.usable
    assert "no secure keyring" in status.reason and "HF_TOKEN" in status.hint
    with pytest.raises(Refused) as err:
        secrets.store(secrets.HF_TOKEN, TOKEN)
    assert "HF_TOKEN" in err.value.hint
    assert secrets.read(secrets.HF_TOKEN) is None


def test_plaintext_backend_is_refused(only_backend):
    class PlaintextKeyring(keyring.backend.KeyringBackend):
        """Stands for keyrings.alt's file backends: the module name is what is checked."""

        priority = 1

        def get_password(self, service, username):
            return None

        def set_password(self, service, username, password):
            raise AssertionError("a plaintext backend must never receive the token")

        def delete_password(self, service, username):
            pass

    PlaintextKeyring.__module__ = "keyrings.alt.file"
    only_backend(PlaintextKeyring())
    with pytest.raises(Refused):
        secrets.store(secrets.HF_TOKEN, TOKEN)


def test_hf_token_in_the_environment_still_works_without_a_keyring(only_backend, monkeypatch):
    only_backend(fail.Keyring())
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert secrets.hf_token() == TOKEN
    assert secrets.hf_token_info() == secrets.TokenInfo("environment", True)


def test_token_checked_against_the_hub(fake_hub, monkeypatch):
    fake_hub.add_user(TOKEN, name="alice")
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    assert secrets.check_hf_token(TOKEN).name == "alice"
    with pytest.raises(LocalModelsError, match="did not accept") as err:
        secrets.check_hf_token("hf_wrong")
    assert "hf_wrong" not in str(err.value) + err.value.hint


def test_unreachable_hub_is_a_network_error(monkeypatch, free_port):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(NetworkError) as err:
        secrets.check_hf_token(TOKEN)
    assert TOKEN not in str(err.value)


def test_the_api_key_is_read_from_the_keyring_once_per_server(secret_service, monkeypatch):
    """Each read can be a Keychain prompt on macOS (an item written by another program): the status probes
    must not ask again. A key rotated elsewhere only takes effect when a server starts, which rewrites the
    state file; then it is read once more."""
    from aidevops_local.core.serving import api_key

    secrets.store(secrets.API_KEY, "key-written-by-the-cli")
    reads: list[str] = []
    real_read = secrets.read
    monkeypatch.setattr(secrets, "read", lambda name: reads.append(name) or real_read(name))
    try:
        for _ in range(5):
            assert api_key.headers(required=True) == {"Authorization": "Bearer key-written-by-the-cli"}
        assert reads == [secrets.API_KEY]

        rotated = api_key.rotate()
        assert api_key.headers(required=True) == {"Authorization": f"Bearer {rotated}"}
        assert reads == [secrets.API_KEY]  # this process wrote it: nothing to read

        real_store = secrets.store
        real_store(secrets.API_KEY, "rotated-by-another-process")
        assert api_key.current() == rotated  # the running server still has the key it started with
        state = config.paths().state_file
        state.parent.mkdir(parents=True, exist_ok=True)
        state.write_text("{}")  # a server started (by anyone): it runs with the keyring's key
        assert api_key.current() == "rotated-by-another-process"
        assert reads == [secrets.API_KEY] * 2
    finally:
        secrets.forget(secrets.API_KEY)
