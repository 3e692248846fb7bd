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

This module is that process's entry point and the serving side's handle on it (its socket, start, stop); the
front itself is host_guard_front.py, the Host policy and the request head host_guard_http.py.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import os
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .host_guard_http import HostPolicy, host_of, parse_head, with_key

__all__ = [
    "KEY_ENV",
    "HostPolicy",
    "bind",
    "command",
    "host_of",
    "main",
    "owned",
    "parse_head",
    "prepare_socket",
    "remove_socket",
    "socket_path",
    "start",
    "stop",
    "with_key",
]

SOCKET_NAME = "llama-server.sock"
_SUN_PATH_MAX = 100  # sockaddr_un's path is 104 bytes on macOS, 108 on Linux; keep a margin
_MARKER = "aidevops_local.core.serving.host_guard"  # in the front's argv: how stop recognises it
# The router's key for this run, handed to the front in its environment (never argv): see host_guard_front.Front.
KEY_ENV = "AIDEVOPS_FRONT_KEY"


def main(argv: list[str] | None = None) -> int:
    # The front is asyncio code, imported here: the processes that only start, find and stop it (the CLI, the
    # idle tray) do not load asyncio.
    import asyncio

    from .host_guard_front import serve_forever
    from .host_guard_models import RequestModels

    parser = argparse.ArgumentParser(prog="host_guard", description="The Host-checking front of llama-server.")
    parser.add_argument("--fd", type=int, required=True, help="the listening socket, bound by the parent")
    parser.add_argument("--upstream", required=True, help="llama-server's UNIX socket")
    parser.add_argument("--host", required=True, help="the address the public socket is bound to")
    parser.add_argument("--allow", action="append", default=[], help="a name allowed besides loopback ones")
    parser.add_argument("--watch-pid", type=int, default=0, help="exit when this process (llama-server) exits")
    parser.add_argument("--fill-model", action="store_true", help="a router: name the loaded model where none is")
    parser.add_argument("--alias-of", action="append", default=[], help="ALIAS=MODEL, for a router that lacks aliases")
    args = parser.parse_args(argv)
    listen = socket.socket(fileno=args.fd)
    policy = HostPolicy.for_listening(args.host, args.allow)
    key = os.environ.pop(KEY_ENV, "")
    naming = None
    if args.fill_model or args.alias_of:
        naming = RequestModels(args.upstream, key, dict(pair.split("=", 1) for pair in args.alias_of))
    asyncio.run(serve_forever(listen, args.upstream, policy, args.watch_pid, key, naming))
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
    fill_model: bool = False,
    aliases: dict[str, str] | None = None,
) -> subprocess.Popen:
    """The front as its own process (own session, like llama-server): it inherits the bound socket.
    ``fill_model``: a router, whose requests must name a model (RequestModels); ``aliases``: alias -> model,
    where the router cannot resolve them itself."""
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
    argv += ["--fill-model"] if fill_model else []
    for alias, model in (aliases or {}).items():
        argv += ["--alias-of", f"{alias}={model}"]
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
