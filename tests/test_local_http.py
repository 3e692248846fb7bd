"""Requests to our own loopback server (core/system/local_http.py): whole answers however they are framed, and
None, never an exception, for an answer cut short, a server that is not there or a header that is not one.

The server here is a socket that answers with fixed bytes, so each way an HTTP answer can be framed, or broken,
is exact; the real llama-server's answers go through the same code in the serve and router tests.
"""

from __future__ import annotations

import json
import socket
import threading

import pytest

from aidevops_local.core.system import local_http


class CannedServer:
    """Accepts one connection, keeps the request it read, answers with ``answer`` and closes."""

    def __init__(self, answer: bytes):
        self.answer = answer
        self.request = b""
        self.accepted = False
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        self.accepted = True
        with conn:
            while b"\r\n\r\n" not in self.request:
                data = conn.recv(65536)
                if not data:
                    return
                self.request += data
            head, _, body = self.request.partition(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                ),
                0,
            )
            while len(body) < length:
                body += conn.recv(65536)
                self.request = head + b"\r\n\r\n" + body
            conn.sendall(self.answer)

    def close(self) -> None:
        if not self.accepted:  # a test that expected no request: the connection it waits for, empty
            socket.create_connection(self.listener.getsockname()).close()
        self.thread.join(5)
        self.listener.close()


@pytest.fixture
def canned():
    servers = []

    def start(answer: bytes) -> CannedServer:
        servers.append(CannedServer(answer))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_an_answer_with_a_length_is_read_whole(canned):
    server = canned(b'HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{"status":"ok"}')
    assert local_http.get_json(server.base_url, "/health") == {"status": "ok"}
    assert server.request.startswith(b"GET /health HTTP/1.1\r\n")
    assert f"host: {server.base_url.removeprefix('http://')}".encode() in server.request.lower()


def test_a_chunked_answer_is_put_together(canned):
    server = canned(b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"a":\r\n2\r\n1}\r\n0\r\n\r\n')
    assert local_http.get(server.base_url, "/models") == (200, b'{"a":1}')


def test_an_answer_that_ends_when_the_server_closes_is_read_to_the_end(canned):
    server = canned(b"HTTP/1.0 503 Service Unavailable\r\n\r\nloading model")
    assert local_http.get(server.base_url, "/health") == (503, b"loading model")


def test_an_answer_cut_short_is_no_answer(canned):
    server = canned(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"status"')
    assert local_http.get(server.base_url, "/health") is None


def test_a_reply_that_is_not_http_is_no_answer(canned):
    server = canned(b"SSH-2.0-OpenSSH_9.2\r\n")
    assert local_http.get(server.base_url, "/health") is None


def test_a_post_sends_its_json_with_its_length_and_headers(canned):
    server = canned(b'HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\n{"success":true}')
    answer = local_http.post_json(
        server.base_url, "/models/load", {"model": "tiny"}, headers={"Authorization": "Bearer k"}
    )
    assert answer == (200, b'{"success":true}')
    head, _, body = server.request.partition(b"\r\n\r\n")
    assert json.loads(body) == {"model": "tiny"}
    assert f"content-length: {len(body)}".encode() in head.lower()
    assert b"authorization: bearer k" in head.lower()


def test_nobody_listening_is_no_answer():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
    assert local_http.get(f"http://127.0.0.1:{port}", "/health") is None


def test_a_header_value_with_a_line_break_is_never_sent(canned):
    server = canned(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
    assert local_http.get(server.base_url, "/health", headers={"Authorization": "Bearer k\r\nX-Evil: 1"}) is None
    assert not server.accepted  # refused before connecting: nothing of it reached the server
