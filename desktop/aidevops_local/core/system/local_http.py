"""Requests to our own loopback server: /health, a router's /models, and its load and unload requests.

h11 over a plain socket rather than httpx or http.client: no TLS context to build (about 70 ms per httpx call),
and no ssl module loaded at all (http.client imports it: about 2 MiB the idle tray would hold all day), so the
tray can poll every few seconds nearly for free; no proxy taken from the environment (HTTP_PROXY, ALL_PROXY), so
a request to our own server, and the API key it may carry, never reach a proxy. h11 (httpx's own HTTP/1.1 parser)
reads the answer, chunked or not. Every request to our own server goes through here.
"""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

import h11


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
    conn = h11.Connection(our_role=h11.CLIENT)
    fields = [("Host", url.netloc), ("Connection", "close"), *(headers or {}).items()]
    if body is not None:
        fields.append(("Content-Length", str(len(body))))
    try:  # the whole request first: a header h11 refuses (a line break in a value) never opens a connection
        request = conn.send(h11.Request(method=method, target=path, headers=fields))
        request += (conn.send(h11.Data(data=body)) if body else b"") + conn.send(h11.EndOfMessage())
        with socket.create_connection((url.hostname, url.port), timeout=timeout) as sock:
            sock.sendall(request)
            return _answer(conn, sock)
    except (OSError, h11.ProtocolError):
        return None


def _answer(conn: h11.Connection, sock: socket.socket) -> tuple[int, bytes] | None:
    status, parts = 0, []
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(sock.recv(65536))  # b"" when the server closes: h11 then says where that left us
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            parts.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            return status, b"".join(parts)
        elif isinstance(event, h11.ConnectionClosed):
            return None  # closed before the answer was whole


def get_json(base_url: str, path: str, *, timeout: float = 0.5, headers: dict[str, str] | None = None):
    """The decoded body of a 200 answer, or None (no answer, another status, or not JSON)."""
    answer = get(base_url, path, timeout=timeout, headers=headers)
    if answer is None or answer[0] != 200:
        return None
    try:
        return json.loads(answer[1])
    except ValueError:
        return None
