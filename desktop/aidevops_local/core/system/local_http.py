"""Requests to our own loopback server: /health, a router's /models, and its load and unload requests.

http.client rather than httpx: no TLS context to build (about 70 ms per httpx call), so the tray can poll
every few seconds nearly for free, and no proxy taken from the environment (HTTP_PROXY, ALL_PROXY), so a
request to our own server, and the API key it may carry, never reach a proxy. Every request to our own server
goes through here.
"""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit


def get(
    base_url: str, path: str, *, timeout: float = 0.5, headers: dict[str, str] | None = None
) -> tuple[int, bytes] | None:
    """(status, body), or None when the server does not answer."""
    return _request("GET", base_url, path, timeout=timeout, headers=headers)


def post_json(
    base_url: str, path: str, body, *, timeout: float = 10.0, headers: dict[str, str] | None = None
) -> tuple[int, bytes] | None:
    """POST ``body`` as JSON: (status, body), or None when the server does not answer."""
    return _request(
        "POST",
        base_url,
        path,
        body=json.dumps(body).encode(),
        timeout=timeout,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def _request(
    method: str,
    base_url: str,
    path: str,
    *,
    timeout: float,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes] | None:
    url = urlsplit(base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def get_json(base_url: str, path: str, *, timeout: float = 0.5, headers: dict[str, str] | None = None):
    """The decoded body of a 200 answer, or None (no answer, another status, or not JSON)."""
    answer = get(base_url, path, timeout=timeout, headers=headers)
    if answer is None or answer[0] != 200:
        return None
    try:
        return json.loads(answer[1])
    except ValueError:
        return None
