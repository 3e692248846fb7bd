"""What a setting may hold: the type, the bounds of every number, the text, the host names, and the flags
extra_server_args may not set. Loading and saving both check, so a saved file always loads again.

Apart from config.py (which reads and writes the file) so that the rules stay one readable page; it knows
Settings only through its dataclass fields, so it needs no import of config.
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

from .errors import ConfigError

# The bounds of every number in the settings and on the command line, checked before anything starts.
# A value outside them would fail late and badly: port 0 makes llama-server pick a random port that
# the health check never finds, more threads than ggml's GGML_MAX_N_THREADS (512) crash it.
PORT_RANGE = (1, 65535)
CTX_RANGE = (256, 4 * 1024 * 1024)  # llama.cpp pads a context to 256 cells; 4M tokens is beyond any model
THREADS_RANGE = (1, 512)
PARALLEL_RANGE = (1, 256)
GPU_LAYERS_RANGE = (0, 100_000)
DAYS_RANGE = (1, 36_500)  # a day to a hundred years
GRACE_RANGE_S = (0.0, 3600.0)
# Per setting: (lowest, highest) and the value that means "automatic" or "never", allowed besides.
_SETTING_RANGES: dict[str, tuple[tuple[float, float], float | None]] = {
    "port": (PORT_RANGE, None),
    "ctx_size": (CTX_RANGE, 0),
    "threads": (THREADS_RANGE, 0),
    "parallel": (PARALLEL_RANGE, 0),
    "gpu_layers": (GPU_LAYERS_RANGE, -1),
    "health_timeout_s": ((1.0, 86_400.0), None),
    "stop_grace_s": (GRACE_RANGE_S, None),
    "stale_days": (DAYS_RANGE, None),
    "stale_nudge_gb": ((0.0, 1_000_000.0), None),
    "idle_unload_s": ((1, 31_536_000), 0),
}
# Flags of extra_server_args that have their own setting: given there, they would silently override it
# (the last --host wins, so the server would listen elsewhere than status and doctor say).
_OWN_SETTING_FLAGS = {
    "--host": "the address has its own setting: `host` (or `serve --host`)",
    "--port": "the port has its own setting: `port` (or `serve --port`)",
    "--api-key": (
        "an API key there is readable by every user in the process list: set `require_api_key = true`, "
        "which keeps it in the keyring"
    ),
    "--rpc": "workers have their own setting: `workers` (or `serve --worker`), which plans the split and tunnels",
}
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


def check_settings(settings: Any, where: Path | str) -> None:
    """Raise ConfigError, naming the setting and ``where`` it came from, for any value the tool cannot use.
    Loading and saving both check, so a saved file always loads again."""
    defaults = type(settings)()
    for f in fields(settings):
        value, expected = getattr(settings, f.name), type(getattr(defaults, f.name))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
            setattr(settings, f.name, value)
        if not isinstance(value, expected) or isinstance(value, bool) != (expected is bool):
            raise ConfigError(
                f"Setting {f.name!r} in {where} should be {_type_name(expected)}, not {value!r}",
                hint="Fix or delete that line.",
            )
        if f.name in _SETTING_RANGES:
            _check_range(f.name, value, where, getattr(defaults, f.name))
        texts = value if isinstance(value, list) else [value] if isinstance(value, str) else []
        for text in texts:
            _check_text(f.name, text, where)
    if not is_valid_host(settings.host):
        raise ConfigError(
            f"Setting 'host' in {where} is not an IP address or a host name: {settings.host!r}",
            hint='Use `host = "127.0.0.1"` unless you mean to share the server.',
        )
    _check_allowed_hosts(settings.allowed_hosts, where)
    for text in settings.workers:
        if problem := worker_problem(text):
            raise ConfigError(f"workers in {where} has {text!r}: {problem}", hint=WORKER_HINT)
    for arg in settings.extra_server_args:
        flag = arg.split("=", 1)[0]
        own = next(
            (
                why
                for name, why in _OWN_SETTING_FLAGS.items()
                if flag == name or (name == "--api-key" and flag.startswith(name))
            ),
            None,
        )
        if own:
            raise ConfigError(
                f"extra_server_args in {where} sets {flag}, which it may not: {own}.",
                hint=f"Remove {flag} and its value from extra_server_args.",
            )


def _type_name(expected: type) -> str:
    return "a list of strings" if expected is list else expected.__name__


def _check_range(name: str, value: float, where: Path | str, default: float) -> None:
    (low, high), special = _SETTING_RANGES[name]
    if value == special or (math.isfinite(value) and low <= value <= high):
        return
    besides = f", or {special} ({'never' if name == 'idle_unload_s' else 'automatic'})" if special is not None else ""
    raise ConfigError(
        f"Setting {name!r} in {where} is {value!r}; it must be from {low} to {high}{besides}.",
        hint=f"Fix or delete that line (its default is {default!r}).",
    )


_LIST_EXAMPLES = {
    "extra_server_args": '["--flag", "value"]',
    "allowed_hosts": '["my-laptop.local"]',
    "workers": '["192.168.1.20:50052"]',
}


def _check_text(name: str, text, where: Path | str) -> None:
    if not isinstance(text, str):
        example = _LIST_EXAMPLES.get(name, '["first", "second"]')
        raise ConfigError(
            f"Setting {name!r} in {where} should be a list of strings, but holds {text!r}",
            hint=f"Quote each item: {name} = {example}.",
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(
            f"Setting {name!r} for {where} holds text that is not valid Unicode.", hint="Type it again."
        ) from None
    if "\0" in text:  # no file name or program argument can hold a NUL
        raise ConfigError(f"Setting {name!r} in {where} holds a NUL character.", hint="Remove it.")


def is_valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(_HOSTNAME.match(host))


# A worker: user@host (reached through SSH: nothing option-like or shell-special can reach ssh's argv) or
# host:port (its RPC server, on a network the user trusts).
_SSH_TARGET = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}@[A-Za-z0-9][A-Za-z0-9.-]{0,252}$")
WORKER_HINT = (
    "Write an SSH worker as user@host (the safe way), or a worker on a network you trust as host:port "
    "(its RPC server's address)."
)


def worker_problem(text: str) -> str:
    """What is wrong with a worker's spelling, or ""."""
    if "@" in text:
        return "" if _SSH_TARGET.match(text) else "not of the form user@host (letters, digits, dots and dashes)"
    host, sep, port = text.rpartition(":")
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        return "neither user@host nor host:port"
    return "" if is_valid_host(bare) else "not a host name or IP address before the port"


_HOST_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")  # a Host header's name may hold "_" (LAN names)


def _check_allowed_hosts(names: list[str], where: Path | str) -> None:
    """Bare host names or IP addresses, as a Host header names them: no scheme, port, path or wildcard."""
    for name in names:
        bare = name.strip().lower().rstrip(".") if isinstance(name, str) else ""
        if bare.startswith("[") and bare.endswith("]"):
            bare = bare[1:-1]
        with contextlib.suppress(ValueError):
            ipaddress.ip_address(bare)
            continue
        if not (bare and len(bare) <= 253 and all(_HOST_LABEL.fullmatch(part) for part in bare.split("."))):
            raise ConfigError(
                f"allowed_hosts in {where} has {name!r}, which is not a host name or IP address.",
                hint='Write bare names such as "mybox.local" or "192.168.1.20": no scheme, port, path or wildcard.',
            )
