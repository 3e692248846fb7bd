"""The optional API key of the local server (the setting ``require_api_key``).

Generated once (``secrets.token_urlsafe``), kept in the OS keyring through core/system/secrets.py and nowhere
else, and handed to llama-server in its environment (``LLAMA_API_KEY``): never in argv, where every user
of the machine can read it, never in a file, never in a log. Clients send it as ``Authorization: Bearer``.

The tray probes the server every few seconds with the key. On macOS each Keychain read of an item another
program wrote (the pip CLI vs the app, an update of an ad-hoc-signed build) can be a prompt, so the key is
read once and kept in memory while it can still be the running server's: until this process stores another,
the keyring in use changes, or a server start (by any process) rewrites the server's state file.
"""

from __future__ import annotations

import secrets as _random
import threading
from dataclasses import dataclass

from ..system import config, secrets
from ..system.errors import LocalModelsError, Refused

KEY_BYTES = 32  # 43 URL-safe characters
ENV_VAR = "LLAMA_API_KEY"
_KEYRING_HINT = {
    "darwin": "The macOS Keychain should be there: check `python -m keyring diagnose`.",
    "linux": "Install and unlock a Secret Service keyring (GNOME Keyring or KWallet) in your desktop session.",
}


_cache_lock = threading.Lock()
_cache: tuple[tuple, str | None] | None = None  # (what the read was good for, the key)


@dataclass(frozen=True)
class ApiKeyInfo:
    required: bool  # the require_api_key setting
    stored: bool  # a key is in the keyring
    keyring_usable: bool
    backend: str  # the keyring backend keyring chose, e.g. "SecretService Keyring"
    where: str  # where the key lives, for the user
    reason: str = ""  # why the keyring cannot be used
    hint: str = ""


def turn_off_hint() -> str:
    return (
        f"Or serve without an API key: set `require_api_key = false` in {config.paths().config_file} "
        "(the server then answers anyone who can reach 127.0.0.1 on this machine)."
    )


def where() -> str:
    return f'the OS keyring, service "{secrets.SERVICE}", entry "{secrets.API_KEY}"'


def info(settings: config.Settings | None = None) -> ApiKeyInfo:
    """Whether a key is required and stored; never the key itself."""
    required = (settings or config.load_settings()).require_api_key
    status = secrets.keyring_status()
    stored = False
    if status.usable:
        try:
            stored = bool(secrets.read(secrets.API_KEY))
        except LocalModelsError:
            stored = False
    return ApiKeyInfo(
        required=required,
        stored=stored,
        keyring_usable=status.usable,
        backend=status.backend,
        where=where(),
        reason=status.reason,
        hint=status.hint,
    )


def current() -> str | None:
    """The stored key, or None (none stored, or no usable keyring); read from the keyring once per server."""
    global _cache
    valid_for = _cache_scope()
    with _cache_lock:
        if _cache is not None and _cache[0] == valid_for:
            return _cache[1]
    try:
        key = secrets.read(secrets.API_KEY)
    except LocalModelsError:
        return None  # not kept: a locked keyring may be unlocked by the next probe
    _remember(key, valid_for)
    return key


def _cache_scope() -> tuple:
    """What a read stays good for: this keyring, and the server start recorded in the state file (a key
    rotated elsewhere reaches a server only when one starts, and every start rewrites that file)."""
    import keyring

    state = config.paths().state_file
    try:
        stat = state.stat()
        started = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
    except OSError:
        started = None
    return (keyring.get_keyring(), str(state), started)


def _remember(key: str | None, valid_for: tuple | None = None) -> None:
    global _cache
    valid_for = valid_for or _cache_scope()
    with _cache_lock:
        _cache = (valid_for, key)


def ensure() -> str:
    """The stored key, generated and stored the first time. Refused, saying how to turn the setting off,
    when the keyring cannot keep it: a key that is not stored could not be shown to clients again."""
    _require_usable_keyring()
    try:
        key = secrets.read(secrets.API_KEY)  # read afresh: a server is about to start with it
        if not key:
            key = _random.token_urlsafe(KEY_BYTES)
            secrets.store(secrets.API_KEY, key)
    except LocalModelsError as exc:
        raise Refused(
            f"The API key could not be read from or stored in the keyring: {exc.message}", hint=_with_way_out(exc.hint)
        ) from None
    _remember(key)
    return key


def rotate() -> str:
    """A new key replaces the stored one. A running server keeps the old one until it is restarted."""
    _require_usable_keyring()
    key = _random.token_urlsafe(KEY_BYTES)
    try:
        secrets.store(secrets.API_KEY, key)
    except LocalModelsError as exc:
        raise Refused(
            f"The new API key could not be stored in the keyring: {exc.message}", hint=_with_way_out(exc.hint)
        ) from None
    _remember(key)
    return key


def headers(*, required: bool) -> dict[str, str]:
    """What a client of our server (the tray, the router) sends: the bearer key when the server wants one."""
    key = current() if required else None
    return {"Authorization": f"Bearer {key}"} if key else {}


def _require_usable_keyring() -> None:
    status = secrets.keyring_status()
    if not status.usable:
        from ..system.hardware import os_name

        raise Refused(
            f"The API key cannot be kept: {status.reason}",
            hint=_with_way_out(_KEYRING_HINT.get(os_name(), _KEYRING_HINT["linux"])),
        )


def _with_way_out(hint: str) -> str:
    """A keyring problem's hint, plus how to serve without a key when the setting asks for one."""
    required = config.load_settings().require_api_key
    return f"{hint} {turn_off_hint()}".strip() if required else hint
