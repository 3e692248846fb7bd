"""The Host-checking front: the server's defence against DNS rebinding.

A web page whose name an attacker re-points at 127.0.0.1 (DNS rebinding) makes the browser send requests to
the local server under the attacker's name, and read the answers: CORS does not help, the page is "same
origin" with itself. llama-server checks no Host header, so it never sees the difference. Here llama-server
listens on a UNIX socket in a private folder (0700: no browser and no other user can reach it), and this front
listens on the public host:port. It reads each request's head, answers 403 to a Host that is not a loopback
name or address (or a name in the allowed_hosts setting), and otherwise passes the bytes through untouched
both ways: no buffering, TCP_NODELAY, so a streamed answer reaches the client as llama-server writes it.

Each request on a keep-alive connection is checked, not only the first; its body is framed by Content-Length
or chunked encoding and passed on as it comes. What cannot be framed safely is refused with a 4xx and the
connection closed. The front exits when the llama-server it fronts exits.

server.serve binds the public socket itself (so a taken port is reported at once) and hands it to this
module run as its own small process: ``python -m aidevops_local.core.serving.host_guard`` (or the frozen app with
``--host-guard``). Nothing here imports more than the standard library and config.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import hashlib
import ipaddress
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SETTING = "allowed_hosts"
MAX_HEAD_BYTES = 64 * 1024  # llama-server's own limit on a request head is of this order
CHUNK = 64 * 1024
SOCKET_NAME = "llama-server.sock"
_SUN_PATH_MAX = 100  # sockaddr_un's path is 104 bytes on macOS, 108 on Linux; keep a margin
_MARKER = "aidevops_local.core.serving.host_guard"  # in the front's argv: how stop recognises it
# The router's key for this run, handed to the front in its environment (never argv): see Front.
KEY_ENV = "AIDEVOPS_FRONT_KEY"
_CLIENT_KEY_HEADERS = (b"authorization", b"x-api-key")


# ---- the policy: which Host values reach the model -------------------------------------------------------


@dataclass(frozen=True)
class HostPolicy:
    names: frozenset[str]  # lower-case names and addresses allowed besides the loopback ones
    any_address: bool = False  # bound to 0.0.0.0 or ::, so reached by any of the machine's addresses

    @classmethod
    def for_listening(cls, host: str, allowed_hosts: list[str]) -> HostPolicy:
        """Loopback names and addresses always; the address the server was told to bind, and the names the
        user allowed. A bind to every address allows every IP literal: an address cannot be rebound, only a
        name can."""
        names = {normalise(n) for n in allowed_hosts}
        bound = normalise(host)
        names.add(bound)
        try:
            any_address = ipaddress.ip_address(bound).is_unspecified
        except ValueError:
            any_address = False
        return cls(names=frozenset(n for n in names if n), any_address=any_address)

    def allows(self, name: str) -> bool:
        if name == "localhost" or name in self.names:
            return True
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            return False
        return address.is_loopback or self.any_address


def normalise(name: str) -> str:
    """A host name or address as compared: lower case, no brackets, no trailing dot."""
    name = name.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    return name.rstrip(".")


def host_of(value: str) -> str | None:
    """The name in a Host header (``name``, ``name:port``, ``[v6]``, ``[v6]:port``); None when malformed."""
    value = value.strip()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[1:end], value[end + 1 :]
        if rest and not (rest.startswith(":") and rest[1:].isascii() and rest[1:].isdigit()):
            return None
        try:
            ipaddress.IPv6Address(name.split("%")[0])
        except ValueError:
            return None
        return name.lower()
    name, _, port = value.partition(":")
    if (port or value.endswith(":")) and not (port.isascii() and port.isdigit()):
        return None
    if not name or any(c in name for c in " \t/\\@?#[]%"):
        return None
    return normalise(name)


def refusal_message(host: str) -> str:
    from ..system import config

    shown = host if len(host) <= 100 else host[:100] + "..."
    return (
        f"Host {shown!r} is not allowed: this server answers only requests addressed to localhost or a "
        f"loopback address (protection against DNS rebinding). To allow this name, add it to "
        f"{SETTING} in {config.paths().config_file} and restart the server."
    )


# ---- the request head -------------------------------------------------------------------------------------


class Refusal(Exception):
    def __init__(self, status: int, reason: str, message: str):
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message

    def response(self) -> bytes:
        kind = "forbidden" if self.status == 403 else "invalid_request_error"
        body = json.dumps({"error": {"code": self.status, "message": self.message, "type": kind}}).encode()
        return (
            f"HTTP/1.1 {self.status} {self.reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode() + body


def _bad(message: str) -> Refusal:
    return Refusal(400, "Bad Request", message)


@dataclass(frozen=True)
class RequestHead:
    host: str | None  # the Host header's value, None when absent
    content_length: int
    chunked: bool


def parse_head(head: bytes) -> RequestHead:
    """Checks what the front relies on: one request line, well-formed header lines, one Host, one way to
    find the body's end. Anything ambiguous (which a smuggled request would hide in) is refused."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes any byte
        raise _bad("The request head is not readable.") from None
    lines = text[:-4].split("\r\n")
    if any("\r" in line or "\n" in line or "\0" in line for line in lines):
        raise _bad("The request head has a bare CR or LF; lines must end with CRLF.")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[0].isalpha():
        raise _bad("The request line is not 'METHOD /path HTTP/1.x'.")
    if not (parts[1].startswith("/") or (parts[1] == "*" and parts[0] == "OPTIONS")):
        raise _bad("Only origin-form request targets (a path starting with /) are accepted.")
    hosts, lengths, encodings = [], [], []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip() or " " in name or "\t" in name:
            raise _bad("A header line is malformed (no name, or space before its colon, or folded).")
        key = name.lower()
        if key == "host":
            hosts.append(value.strip())
        elif key == "content-length":
            lengths.append(value.strip())
        elif key == "transfer-encoding":
            encodings.append(value.strip().lower())
    if len(hosts) > 1:
        raise _bad("The request has more than one Host header.")
    if encodings:
        if lengths:
            raise _bad("The request has both Transfer-Encoding and Content-Length.")
        if encodings != ["chunked"]:
            raise Refusal(501, "Not Implemented", "Only the chunked transfer coding is accepted.")
        return RequestHead(host=hosts[0] if hosts else None, content_length=0, chunked=True)
    if len(set(lengths)) > 1 or any(not (v.isascii() and v.isdigit()) for v in lengths):
        raise _bad("The request's Content-Length is not one number.")
    return RequestHead(
        host=hosts[0] if hosts else None, content_length=int(lengths[0]) if lengths else 0, chunked=False
    )


def with_key(head_bytes: bytes, key_line: bytes) -> bytes:
    """The request head with the client's own key headers replaced by ``key_line`` (a parsed head: CRLF lines)."""
    lines = head_bytes[:-4].split(b"\r\n")
    kept = [lines[0], *(ln for ln in lines[1:] if ln.split(b":", 1)[0].lower() not in _CLIENT_KEY_HEADERS)]
    return b"\r\n".join(kept) + b"\r\n" + key_line + b"\r\n"


def check_host(head: RequestHead, policy: HostPolicy) -> None:
    if not head.host:  # HTTP/1.0 clients, and an empty Host (allowed by HTTP/1.1): not a browser's request
        return
    name = host_of(head.host)
    if name is None:
        raise _bad("The Host header is malformed.")
    if not policy.allows(name):
        raise Refusal(403, "Forbidden", refusal_message(name))


# ---- the front ----------------------------------------------------------------------------------------------


class Front:
    """``key``: in router mode llama-server starts each model on a 127.0.0.1 port of its own, which this front
    does not cover; the server then requires a key made for this run (the children inherit it), and the front
    puts it on every request it passes, in place of whatever key the client sent. So a page that rebinds its
    name to a child's port gets 401, and clients still need no key."""

    def __init__(self, upstream: str, policy: HostPolicy, key: str = ""):
        self.upstream, self.policy = upstream, policy
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
    listen: socket.socket, upstream: str, policy: HostPolicy, watch_pid: int, key: str = ""
) -> None:
    front = Front(upstream, policy, key)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="host_guard", description="The Host-checking front of llama-server.")
    parser.add_argument("--fd", type=int, required=True, help="the listening socket, bound by the parent")
    parser.add_argument("--upstream", required=True, help="llama-server's UNIX socket")
    parser.add_argument("--host", required=True, help="the address the public socket is bound to")
    parser.add_argument("--allow", action="append", default=[], help="a name allowed besides loopback ones")
    parser.add_argument("--watch-pid", type=int, default=0, help="exit when this process (llama-server) exits")
    args = parser.parse_args(argv)
    listen = socket.socket(fileno=args.fd)
    policy = HostPolicy.for_listening(args.host, args.allow)
    asyncio.run(serve_forever(listen, args.upstream, policy, args.watch_pid, os.environ.pop(KEY_ENV, "")))
    return 0


# ---- used by server.py: start, recognise and stop the front ---------------------------------------------


def socket_path(app_dir: Path) -> Path:
    """Where llama-server listens: a private folder under the tool's own, or, where that path is too long
    for a socket address, a folder of this user's in the temporary folder."""
    path = app_dir / "run" / SOCKET_NAME
    if len(str(path).encode()) <= _SUN_PATH_MAX:
        return path
    tag = hashlib.sha256(str(app_dir).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"aidevops-llama-{os.getuid()}-{tag}" / SOCKET_NAME


def prepare_socket(path: Path) -> None:
    """The socket's folder exists, is ours and is 0700 (no other user reaches the socket); no socket is
    left from an earlier run (llama-server leaves it behind, and would not bind over it)."""
    from ..system.errors import Refused

    folder = path.parent
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise Refused(
            f"{folder} is not a folder of this user's; llama-server's socket cannot be put there.",
            hint=f"Remove {folder}, or set AIDEVOPS_HOME to a shorter path.",
        )
    if info.st_mode & 0o077:
        folder.chmod(0o700)
    path.unlink(missing_ok=True)


def remove_socket(path: str) -> None:
    if path:
        Path(path).unlink(missing_ok=True)


def bind(host: str, port: int) -> socket.socket:
    """The public socket, bound and listening, so that a taken port is said at once (PortInUse)."""
    from ..system.errors import PortInUse, ServerStartFailed

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(512)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(
                f"Port {port} on {host} is already in use by another program.",
                hint=f"Stop that program, or serve on another port: serve --port {port + 1}",
                details=f"couldn't bind {host}:{port}: {exc.strerror}",
            ) from exc
        raise ServerStartFailed(
            f"Cannot listen on {host}:{port}: {exc.strerror}", hint="Check the host address in your settings."
        ) from exc
    return sock


def command() -> list[str]:
    """How to run this module as a process: the frozen app runs itself with --host-guard."""
    if getattr(sys, "frozen", False):
        # In an AppImage, sys.executable lives on the image's temporary mount, which goes once `serve` exits:
        # the front runs the image itself, which mounts it again for as long as the front lives.
        appimage = os.environ.get("APPIMAGE")
        return [appimage or sys.executable, "--host-guard", _MARKER]
    return [sys.executable, "-P", "-m", _MARKER]  # -P: never import from the folder serve was run in


def start(
    listen: socket.socket,
    *,
    upstream: str,
    host: str,
    allowed_hosts: list[str],
    watch_pid: int,
    log,
    env: dict[str, str],
) -> subprocess.Popen:
    """The front as its own process (own session, like llama-server): it inherits the bound socket."""
    argv = [
        *command(),
        "--fd",
        str(listen.fileno()),
        "--upstream",
        upstream,
        "--host",
        host,
        "--watch-pid",
        str(watch_pid),
    ]
    for name in allowed_hosts:
        argv += ["--allow", name]
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        env=env,
        pass_fds=(listen.fileno(),),
        start_new_session=True,
    )


def owned(pid: int, create_time: float):
    """The live front process with this pid and start time, or None (gone, or the pid is another's now)."""
    import psutil

    if not pid:
        return None
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - create_time) > 0.05 or proc.status() == psutil.STATUS_ZOMBIE:
            return None
        argv = proc.cmdline()
        for _ in range(20):  # just after a spawn the kernel may not have filled the new argv in yet
            if argv:
                break
            time.sleep(0.005)
            argv = proc.cmdline()
        return proc if _MARKER in argv else None
    except psutil.Error:
        return None


def stop(pid: int, create_time: float, *, grace: float = 2.0) -> None:
    """SIGTERM our front (only if it is ours), SIGKILL after the grace period."""
    import psutil

    proc = owned(pid, create_time)
    if proc is None:
        return
    with contextlib.suppress(psutil.Error):
        proc.terminate()
        try:
            proc.wait(grace)
        except psutil.TimeoutExpired:
            proc.kill()
            proc.wait(5)


if __name__ == "__main__":
    raise SystemExit(main())
