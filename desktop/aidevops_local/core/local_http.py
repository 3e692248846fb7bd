"""GET requests to our own loopback server, for polling it: /health, and a router's /models.

http.client rather than httpx: no TLS context to build (about 70 ms per httpx call) and no proxy taken from
the environment, so the tray can poll every few seconds nearly for free.
"""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit


def get(base_url: str, path: str, *, timeout: float = 0.5,
        headers: dict[str, str] | None = None) -> tuple[int, bytes] | None:
    """(status, body), or None when the server does not answer."""
    url = urlsplit(base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
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
