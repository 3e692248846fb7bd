"""Local stand-ins for GitHub's releases API and the Hugging Face Hub, served on 127.0.0.1.

The public classes live in :mod:`tests.fakes.github_releases` (``FakeReleases``) and :mod:`tests.fakes.hf_hub`
(``FakeHub``). This module holds the plumbing they share: a threaded HTTP/1.1 server on an ephemeral port, a
log of every request, and a body writer that honours ``Range`` and injects faults (throttling, a dropped
connection after N bytes, tampered bytes, an error status) so download, resume and verification code is
tested against real sockets.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

__all__ = ["Blob", "Fault", "FakeHTTPServer", "RequestRecord", "Request"]

CHUNK = 64 * 1024


@dataclass
class RequestRecord:
    """One request as the server saw it. ``target`` is the raw request target, query string included."""

    method: str
    target: str
    headers: dict[str, str]
    status: int = 0
    body_bytes: int = 0  # response body bytes actually written (short when a fault dropped the connection)

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> str:
        return urlsplit(self.target).query

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == name), None)


@dataclass
class Fault:
    """What to do to the next responses for one file.

    drop_after: write this many body bytes (after a full Content-Length), then close the connection.
    throttle_bps: send the body at most this fast.
    tamper: flip one byte in the middle of the file (size and advertised hashes stay the original's).
    status: answer with this HTTP status (and a small JSON error) instead of the file.
    times: how many responses it applies to; None means every one.
    """

    drop_after: int | None = None
    throttle_bps: int | None = None
    tamper: bool = False
    status: int | None = None
    times: int | None = None


@dataclass
class Blob:
    """File content to serve: a path on disk (read on demand, never loaded whole) or bytes."""

    source: Path | bytes

    @property
    def size(self) -> int:
        return len(self.source) if isinstance(self.source, bytes) else self.source.stat().st_size

    def read(self, start: int, length: int) -> bytes:
        if isinstance(self.source, bytes):
            return self.source[start : start + length]
        with open(self.source, "rb") as fh:
            fh.seek(start)
            return fh.read(length)

    def iter_range(self, start: int, end: int):
        """Yield the bytes [start, end) in chunks."""
        if isinstance(self.source, bytes):
            for pos in range(start, end, CHUNK):
                yield self.source[pos : min(pos + CHUNK, end)]
            return
        with open(self.source, "rb") as fh:
            fh.seek(start)
            pos = start
            while pos < end:
                chunk = fh.read(min(CHUNK, end - pos))
                if not chunk:
                    raise OSError(f"{self.source} shrank while being served")
                pos += len(chunk)
                yield chunk


class Request:
    """The handler's view of one request, passed to a fake's ``handle``."""

    def __init__(self, handler: _Handler, record: RequestRecord, body: bytes):
        self.h = handler
        self.record = record
        self.method = record.method
        split = urlsplit(record.target)
        self.path = split.path
        self.query = parse_qsl(split.query, keep_blank_values=True)
        self.body = body
        self.headers = handler.headers

    def param(self, name: str, default: str | None = None) -> str | None:
        return next((v for k, v in self.query if k == name), default)

    def params(self, name: str) -> list[str]:
        return [v for k, v in self.query if k == name]

    @property
    def bearer_token(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        return auth[7:].strip() if auth.lower().startswith("bearer ") else None

    # --- responses ---

    def send(
        self,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        content_type: str = "application/json; charset=utf-8",
    ) -> None:
        h = self.h
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        self.record.status = status
        if self.method != "HEAD" and body:
            h.wfile.write(body)
            self.record.body_bytes = len(body)

    def send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self.send(status, json.dumps(obj).encode(), headers)

    def send_blob(
        self,
        blob: Blob,
        *,
        headers: dict[str, str],
        fault: Fault | None,
        count: Callable[[int], None],
        stopping: threading.Event,
        content_type: str = "application/octet-stream",
    ) -> None:
        """Serve a file with Range support (one range: a-b, a-, -n) and the given fault."""
        size = blob.size
        start, end, status = 0, size, 200
        rng = self.headers.get("Range")
        if rng:
            parsed = parse_range(rng, size)
            if parsed is None:
                self.send(416, b"", {**headers, "Content-Range": f"bytes */{size}"})
                return
            start, end = parsed
            status = 206  # even for "bytes=0-", like the Hub's and GitHub's CDNs
        h = self.h
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(end - start))
        h.send_header("Accept-Ranges", "bytes")
        if status == 206:
            h.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        self.record.status = status
        if self.method == "HEAD":
            return
        drop_after = fault.drop_after if fault else None
        bps = fault.throttle_bps if fault else None
        flip_at = size // 2 if fault and fault.tamper else None
        sent = 0
        t0 = time.monotonic()
        try:
            for chunk in blob.iter_range(start, end):
                pos = start + sent
                if flip_at is not None and pos <= flip_at < pos + len(chunk):
                    i = flip_at - pos
                    chunk = chunk[:i] + bytes([chunk[i] ^ 0xFF]) + chunk[i + 1 :]
                if bps:
                    # Small slices so the rate is smooth and stop() is noticed quickly.
                    step = max(1, min(len(chunk), bps // 20))
                    pieces = [chunk[i : i + step] for i in range(0, len(chunk), step)]
                else:
                    pieces = [chunk]
                for piece in pieces:
                    if stopping.is_set():
                        raise ConnectionAbortedError("server stopping")
                    if drop_after is not None and sent + len(piece) >= drop_after:
                        piece = piece[: max(0, drop_after - sent)]
                        h.wfile.write(piece)
                        sent += len(piece)
                        count(len(piece))
                        self.record.body_bytes = sent
                        h.drop_connection()
                        return
                    h.wfile.write(piece)
                    sent += len(piece)
                    count(len(piece))
                    self.record.body_bytes = sent
                    if bps:
                        delay = t0 + sent / bps - time.monotonic()
                        if delay > 0:
                            stopping.wait(delay)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            h.close_connection = True


def parse_range(value: str, size: int) -> tuple[int, int] | None:
    """Parse a single ``bytes=`` range into [start, end); None when unsatisfiable or malformed."""
    value = value.strip()
    if not value.startswith("bytes=") or "," in value:
        return None
    first, _, last = value[6:].partition("-")
    try:
        if first == "":
            n = int(last)
            if n <= 0:
                return None
            return max(0, size - n), size
        start = int(first)
        end = int(last) + 1 if last else size
    except ValueError:
        return None
    if start >= size or end <= start:
        return None
    return start, min(end, size)


def timestamp(value: str | datetime | float | None) -> float | None:
    """A test's way of giving a time (ISO string, datetime or epoch seconds) as epoch seconds."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def http_date(ts: float | None = None) -> str:
    return formatdate(ts, usegmt=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real services; every response sets Content-Length
    server_version = "fake"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence the per-request stderr log
        pass

    def drop_connection(self) -> None:
        """Cut the TCP connection mid-body, as a flaky network or CDN would."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _dispatch(self) -> None:
        owner: FakeHTTPServer = self.server.owner  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        record = RequestRecord(self.command, self.path, dict(self.headers.items()))
        with owner._lock:
            owner.requests.append(record)
        req = Request(self, record, body)
        try:
            owner.handle(req)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:  # a bug in the fake: answer 500 and keep the traceback for the test to see
            owner.errors.append(traceback.format_exc())
            try:
                req.send_json(500, {"error": "fake server error"})
            except OSError:
                self.close_connection = True

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, owner: FakeHTTPServer):
        self.owner = owner
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request, client_address):
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def close_all_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class FakeHTTPServer:
    """Base: start()/stop() or ``with``; subclasses implement ``handle(req)``."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.requests: list[RequestRecord] = []
        self.errors: list[str] = []  # tracebacks of bugs in the fake itself; tests may assert it stays empty
        self.bytes_served: Counter[str] = Counter()  # body bytes written per file key

    # --- lifecycle ---

    def start(self):
        if self._server is None:
            self._stopping.clear()
            self._server = _Server(self)
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"{type(self).__name__}:{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()  # throttled bodies notice this and stop writing
        self._server.shutdown()
        self._server.close_all_connections()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._server.server_address[1]

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- inspection ---

    def hits(self, path: str, method: str | None = None) -> int:
        """How many requests were made for exactly this path (query string ignored)."""
        with self._lock:
            return sum(1 for r in self.requests if r.path == path and (method is None or r.method == method))

    def count_bytes(self, key: str) -> Callable[[int], None]:
        """A callback that adds served body bytes to ``bytes_served[key]`` (threads serve concurrently)."""

        def add(n: int) -> None:
            with self._lock:
                self.bytes_served[key] += n

        return add

    def clear_log(self) -> None:
        with self._lock:
            self.requests.clear()
            self.bytes_served.clear()

    def handle(self, req: Request) -> None:  # pragma: no cover - each fake server defines its routes here
        raise NotImplementedError(f"{type(self).__name__} must define handle()")


class FaultTable:
    """Faults keyed by a file key; ``take`` hands out the fault for one response and counts down ``times``."""

    def __init__(self) -> None:
        self._faults: dict[str, list[Fault]] = {}
        self._lock = threading.Lock()

    def add(self, key: str, fault: Fault) -> None:
        with self._lock:
            self._faults.setdefault(key, []).append(fault)

    def clear(self, key: str | None = None) -> None:
        with self._lock:
            if key is None:
                self._faults.clear()
            else:
                self._faults.pop(key, None)

    def take(self, key: str, global_throttle: int | None = None, *, head: bool = False) -> Fault | None:
        """Merge the active faults for key into one, spending one use of each counted fault.

        A HEAD carries no body, so it only takes (and spends) status faults: a "drop once" stays armed for
        the GET that follows the metadata request.
        """
        with self._lock:
            active = self._faults.get(key, [])
            merged = Fault(throttle_bps=None if head else global_throttle)
            found = merged.throttle_bps is not None
            keep: list[Fault] = []
            for f in active:
                if head and not f.status:
                    keep.append(f)
                    continue
                found = True
                merged.drop_after = f.drop_after if f.drop_after is not None else merged.drop_after
                merged.throttle_bps = f.throttle_bps or merged.throttle_bps
                merged.tamper = merged.tamper or f.tamper
                merged.status = f.status or merged.status
                if f.times is None:
                    keep.append(f)
                elif f.times > 1:
                    f.times -= 1
                    keep.append(f)
            if active:
                self._faults[key] = keep
            return merged if found else None


def iso8601(ts: float) -> str:
    """GitHub/Hub style UTC timestamp: 2025-01-02T03:04:05.000Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ts))


def link_header(url_without_cursor: str, next_cursor: int) -> str:
    sep = "&" if "?" in url_without_cursor else "?"
    return f'<{url_without_cursor}{sep}cursor={next_cursor}>; rel="next"'


@dataclass
class Page:
    items: list
    next_cursor: int | None = None
    extra: dict = field(default_factory=dict)


def paginate(items: list, cursor: int, page_size: int) -> Page:
    page = items[cursor : cursor + page_size]
    nxt = cursor + page_size if cursor + page_size < len(items) else None
    return Page(page, nxt)
