"""Settings for tests that run a real server."""

from __future__ import annotations

from aidevops_local.core.system import config
from tests.fixtures.prepare import free_port


def serving_settings(**changes) -> None:
    """Settings for a real server on these 2-core machines: one thread, a small context, one slot, and a
    port the kernel says is free (the default 8080 may be anyone's: a start or a doctor run that falls back
    on the settings' port must not depend on it)."""
    base = {"threads": 1, "ctx_size": 2048, "parallel": 1, "stop_grace_s": 5.0, "port": free_port()}
    config.save_settings(config.Settings(**{**base, **changes}))


def served_model(base_url: str, headers: dict | None = None) -> str | None:
    """The model name a request to our server sends, found the way a client finds it (GET /v1/models): the
    one a router has loaded, or a single-model server's alias. None when the server does not say."""
    import httpx

    try:
        response = httpx.get(f"{base_url.removesuffix('/v1')}/v1/models", headers=headers or {}, timeout=10)
        entries = response.json()["data"] if response.status_code == 200 else []
    except (httpx.HTTPError, ValueError, KeyError):
        return None
    loaded = [m["id"] for m in entries if (m.get("status") or {}).get("value", "loaded") == "loaded"]
    return loaded[0] if loaded else None


def with_model(body: dict, base_url: str, headers: dict | None = None) -> dict:
    """A chat body that names the served model unless it names one already (a router needs it)."""
    if "model" in body:
        return body
    model = served_model(base_url, headers)
    return {**body, "model": model} if model else body


def chat(endpoint: str, model: str, max_tokens: int = 8):
    """One short chat request to a server's /v1 endpoint, naming its model."""
    import httpx

    body = {"model": model, "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": max_tokens}
    return httpx.post(f"{endpoint}/chat/completions", json=body, timeout=120)
