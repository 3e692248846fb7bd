"""The Host-checking front's relay: each connection's requests checked (host_guard_http.py) and passed to
llama-server's UNIX socket, its answers passed back as they come, until llama-server exits. What runs in the
front's process; host_guard.py starts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket

from .host_guard_http import (
    MAX_HEAD_BYTES,
    HostPolicy,
    Refusal,
    RequestHead,
    _bad,
    check_host,
    parse_head,
    with_body_length,
    with_key,
)
from .host_guard_models import RequestModels, read_body

CHUNK = 64 * 1024


# ---- the front ----------------------------------------------------------------------------------------------


class Front:
    """``key``: in router mode llama-server starts each model on a 127.0.0.1 port of its own, which this front
    does not cover; the server then requires a key made for this run (the children inherit it), and the front
    puts it on every request it passes, in place of whatever key the client sent. So a page that rebinds its
    name to a child's port gets 401, and clients still need no key.

    ``naming``: a router's, which fills in the model a request does not name (host_guard_models)."""

    def __init__(self, upstream: str, policy: HostPolicy, key: str = "", naming: RequestModels | None = None):
        self.upstream, self.policy, self.naming = upstream, policy, naming
        self.key_line = f"Authorization: Bearer {key}\r\n".encode() if key else b""

    async def handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        _no_delay(client_w)
        upstream_w: _Upstream | None = None
        pump: asyncio.Future | None = None
        refusing = asyncio.Event()  # set: llama-server's end of the answers is not the connection's end
        try:
            while True:
                try:
                    head_bytes = await client_r.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    break  # the client is done (or left mid-head: nothing to answer)
                except asyncio.LimitOverrunError:
                    raise Refusal(431, "Request Header Fields Too Large", "The request head is too large.") from None
                head = parse_head(head_bytes)
                check_host(head, self.policy)
                if upstream_w is None:
                    try:
                        _, answers = await asyncio.get_running_loop().create_unix_connection(
                            lambda: _Answers(client_w, refusing), self.upstream
                        )
                    except OSError:
                        raise Refusal(
                            502, "Bad Gateway", "llama-server is not answering (it may be starting or have stopped)."
                        ) from None
                    upstream_w, pump = _Upstream(answers), answers.done
                if self.naming is not None and self.naming.wants(head):
                    await self._pass_named(head, head_bytes, client_r, client_w, upstream_w)
                    continue
                upstream_w.write(with_key(head_bytes, self.key_line) if self.key_line else head_bytes)
                if head.chunked:
                    await _copy_chunked(client_r, upstream_w)
                else:
                    await _copy_exactly(client_r, upstream_w, head.content_length)
                await upstream_w.drain()
        except Refusal as refused:
            refusing.set()
            await _finish_then(pump, upstream_w)  # answers to earlier requests on this connection go first
            pump = None
            with contextlib.suppress(OSError):
                client_w.write(refused.response())
                await client_w.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass  # either side went away mid-request
        finally:
            await _finish_then(pump, upstream_w)
            client_w.close()

    async def _pass_named(
        self, head: RequestHead, head_bytes: bytes, client_r, client_w, upstream_w: _Upstream
    ) -> None:
        """A request whose body may need a model's name: read whole, named, then passed on."""
        body = await read_body(head, client_r, client_w)
        named = await self.naming.named(body)
        if named is not body or head.expect_continue:
            head_bytes = with_body_length(head_bytes, len(named))
        upstream_w.write(with_key(head_bytes, self.key_line) if self.key_line else head_bytes)
        upstream_w.write(named)
        await upstream_w.drain()


def _no_delay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def _finish_then(pump: asyncio.Future | None, upstream_w: _Upstream | None) -> None:
    """No more requests go upstream: half-close it, so llama-server finishes what it is answering and closes."""
    if upstream_w is not None and not upstream_w.is_closing():
        with contextlib.suppress(OSError):
            upstream_w.write_eof()
    if pump is not None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            await pump
    if upstream_w is not None:
        upstream_w.close()


class _Answers(asyncio.Protocol):
    """llama-server's side of one connection. Its bytes go to the client as they arrive, straight from the
    event loop's callback (no task wakes per chunk: a streamed token costs one read and one write); reading
    pauses while the client is slow to take them. When llama-server closes the connection, so does the
    front, unless a refusal is still to be written after those answers."""

    def __init__(self, client_w: asyncio.StreamWriter, refusing: asyncio.Event):
        self.client_w, self.refusing = client_w, refusing
        self.done = asyncio.get_running_loop().create_future()
        self.writable = asyncio.Event()
        self.writable.set()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        client = self.client_w.transport
        if client.is_closing():
            return
        client.write(data)
        if client.get_write_buffer_size() > 4 * CHUNK:
            self.transport.pause_reading()
            self._resuming = asyncio.ensure_future(self._resume_when_drained())  # held: tasks are weakly kept

    async def _resume_when_drained(self) -> None:
        with contextlib.suppress(OSError):
            await self.client_w.drain()
        if not self.transport.is_closing():
            self.transport.resume_reading()

    def connection_lost(self, exc) -> None:
        if not self.refusing.is_set():
            self.client_w.close()
        self.writable.set()
        if not self.done.done():
            self.done.set_result(None)

    def pause_writing(self) -> None:  # llama-server is slow to take a request body
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()


class _Upstream:
    """Requests to llama-server: the writer half of the _Answers connection."""

    def __init__(self, answers: _Answers):
        self.answers, self.transport = answers, answers.transport

    def write(self, data: bytes) -> None:
        if self.transport.is_closing():
            raise ConnectionResetError("llama-server closed the connection")
        self.transport.write(data)

    async def drain(self) -> None:
        await self.answers.writable.wait()
        if self.transport.is_closing():
            raise ConnectionResetError("llama-server closed the connection")

    def write_eof(self) -> None:
        self.transport.write_eof()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def close(self) -> None:
        self.transport.close()


async def _copy_exactly(src: asyncio.StreamReader, dst: _Upstream, n: int) -> None:
    while n > 0:
        data = await src.read(min(n, CHUNK))
        if not data:
            raise asyncio.IncompleteReadError(b"", n)
        dst.write(data)
        n -= len(data)
        await dst.drain()


async def _copy_chunked(src: asyncio.StreamReader, dst: _Upstream) -> None:
    """A chunked body, passed on as is while finding its end: size lines, data, the last chunk, trailers."""
    try:
        await _copy_chunks(src, dst)
    except asyncio.LimitOverrunError:
        raise Refusal(431, "Request Header Fields Too Large", "A chunk size line or trailer is too long.") from None


async def _copy_chunks(src: asyncio.StreamReader, dst: _Upstream) -> None:
    while True:
        line = await src.readuntil(b"\r\n")
        size_text = line[:-2].split(b";", 1)[0].strip()
        if not size_text or any(c not in b"0123456789abcdefABCDEF" for c in size_text) or len(size_text) > 16:
            raise _bad("A chunk size line is malformed.")
        dst.write(line)
        size = int(size_text, 16)
        if size == 0:
            break
        await _copy_exactly(src, dst, size)
        if await src.readexactly(2) != b"\r\n":
            raise _bad("A chunk does not end with CRLF.")
        dst.write(b"\r\n")
        await dst.drain()
    while (trailer := await src.readuntil(b"\r\n")) != b"\r\n":  # trailers, then the empty line
        dst.write(trailer)
    dst.write(b"\r\n")


async def _watch(pid: int, stop: asyncio.Event) -> None:
    """Return when llama-server exits: a front with nothing behind it must not hold the port."""
    loop = asyncio.get_running_loop()
    fd = None
    if hasattr(os, "pidfd_open"):  # Linux: readable when the process exits
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            fd = None  # poll instead
    if fd is not None:
        loop.add_reader(fd, stop.set)
        try:
            await stop.wait()
        finally:
            loop.remove_reader(fd)
            os.close(fd)
        return
    while not stop.is_set():  # elsewhere, poll; the pid is llama-server's until someone reaps it
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            stop.set()
        except PermissionError:
            stop.set()
        await asyncio.sleep(0.5)


async def serve_forever(
    listen: socket.socket,
    upstream: str,
    policy: HostPolicy,
    watch_pid: int,
    key: str = "",
    naming: RequestModels | None = None,
) -> None:
    front = Front(upstream, policy, key, naming)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    server = await asyncio.start_server(front.handle, sock=listen, limit=MAX_HEAD_BYTES)
    watcher = asyncio.create_task(_watch(watch_pid, stop)) if watch_pid else None
    await stop.wait()
    server.close()  # and no waiting for open connections: asyncio.run cancels their tasks as it returns
    if watcher:
        watcher.cancel()
