"""Secrets (the Hugging Face token, an API key) live in the OS keyring and nowhere else.

Only through `keyring`: the macOS Keychain, the Secret Service on Linux (GNOME Keyring, KWallet). A backend
that would keep the secret in plain text (keyrings.alt's files) or not at all (the fail and null backends) is
refused with an explanation rather than used silently. ``HF_TOKEN`` in the environment still works and wins.
No function here logs, prints or puts a secret in an exception message.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import config
from .errors import AuthRequired, LocalModelsError, NetworkError, Refused

SERVICE = "aidevops-local"
HF_TOKEN = "huggingface-token"
API_KEY = "api-key"

# Module prefixes of backends that do not protect a secret; keyrings.alt's "encrypted" file asks for its
# password on a terminal, which a tray app does not have.
_REFUSED_MODULES = ("keyrings.alt", "keyring.backends.fail", "keyring.backends.null")

NO_KEYRING_HINT = {
    "linux": "Install and unlock a Secret Service keyring (GNOME Keyring or KWallet), or set HF_TOKEN in "
    "the environment instead.",
    "darwin": "The macOS Keychain should always be there; check `python -m keyring diagnose`, or set "
    "HF_TOKEN in the environment instead.",
}


@dataclass(frozen=True)
class KeyringStatus:
    usable: bool
    backend: str  # what keyring chose, for the Settings window: "SecretService Keyring"
    reason: str = ""  # why it is refused, for the user
    hint: str = ""


@dataclass(frozen=True)
class TokenInfo:
    source: str  # "environment", "keyring" or "" (none)
    present: bool


@dataclass(frozen=True)
class HubAccount:
    name: str
    orgs: tuple[str, ...] = ()


def _backends(ring) -> list:
    from keyring.backends.chainer import ChainerBackend

    return list(ring.backends) if isinstance(ring, ChainerBackend) else [ring]


def keyring_status() -> KeyringStatus:
    import keyring

    ring = keyring.get_keyring()
    chosen = _backends(ring)
    label = ", ".join(getattr(b, "name", type(b).__name__) for b in chosen) or type(ring).__name__
    good = [b for b in chosen if not type(b).__module__.startswith(_REFUSED_MODULES)]
    if not good:
        from .hardware import os_name

        return KeyringStatus(
            False,
            label,
            f"There is no secure keyring on this system (only {label}), so secrets are not stored.",
            NO_KEYRING_HINT.get(os_name(), NO_KEYRING_HINT["linux"]),
        )
    return KeyringStatus(True, label)


def _require_keyring() -> None:
    status = keyring_status()
    if not status.usable:
        raise Refused(status.reason, hint=status.hint)


def _keyring_call(fn, *args):
    """keyring's own errors (locked, no D-Bus, dismissed prompt) become ours, without the secret."""
    from keyring.errors import KeyringError, PasswordDeleteError

    try:
        return fn(*args)
    except PasswordDeleteError:
        raise  # "nothing to delete" is an answer, not a failure
    except KeyringError as exc:
        raise LocalModelsError(
            f"The keyring refused the request: {type(exc).__name__}",
            hint="Unlock your keyring (log in to the desktop session) and try again.",
        ) from None


def store(name: str, secret: str) -> None:
    import keyring

    if not secret or not secret.strip():
        raise LocalModelsError("An empty secret was not stored.", hint="Paste the whole token.")
    _require_keyring()
    _keyring_call(keyring.set_password, SERVICE, name, secret.strip())


def read(name: str) -> str | None:
    import keyring

    if not keyring_status().usable:
        return None
    return _keyring_call(keyring.get_password, SERVICE, name)


def forget(name: str) -> bool:
    """True when something was deleted."""
    import keyring
    from keyring.errors import PasswordDeleteError

    if not keyring_status().usable:
        return False
    try:
        _keyring_call(keyring.delete_password, SERVICE, name)
    except PasswordDeleteError:
        return False
    return True


def hf_token() -> str | None:
    """The token to send to the Hub: the environment's, else the keyring's, else None."""
    return config.hf_token_from_env() or read(HF_TOKEN)


def hf_token_info() -> TokenInfo:
    if config.hf_token_from_env():
        return TokenInfo("environment", True)
    if read(HF_TOKEN):
        return TokenInfo("keyring", True)
    return TokenInfo("", False)


def check_hf_token(token: str | None = None, *, timeout: float = 10.0) -> HubAccount:
    """Ask the Hub (``HF_ENDPOINT``) who the token belongs to. Raises with a message that never quotes it."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    token = token or hf_token()
    if not token:
        raise LocalModelsError("No Hugging Face token is set.", hint="Paste one from huggingface.co/settings/tokens.")
    api = HfApi(endpoint=config.hf_endpoint(), token=False)
    try:
        info = api.whoami(token=token)
    except HfHubHTTPError as exc:
        code = exc.response.status_code if exc.response is not None else None
        if code in (401, 403):
            raise AuthRequired(
                "The Hugging Face Hub did not accept this token.",
                hint="Copy it again from huggingface.co/settings/tokens; it may have been revoked.",
            ) from None
        raise NetworkError(
            f"The Hugging Face Hub answered {code} when checking the token.", hint="Try again later."
        ) from None
    except (OSError, *_transport_errors()) as exc:
        raise NetworkError(
            f"Could not reach {config.hf_endpoint()}: {type(exc).__name__}",
            hint="Check your connection (or HF_ENDPOINT) and try again.",
        ) from None
    orgs = tuple(o.get("name", "") for o in info.get("orgs", []) if isinstance(o, dict))
    return HubAccount(name=str(info.get("name", "")), orgs=orgs)


def _transport_errors() -> tuple[type[BaseException], ...]:
    """huggingface_hub 2.x talks through httpx2, 1.x through httpx: either's errors mean "unreachable"."""
    found = []
    for name in ("httpx2", "httpx"):
        try:
            found.append(__import__(name).HTTPError)
        except (ImportError, AttributeError):
            continue
    return tuple(found)
