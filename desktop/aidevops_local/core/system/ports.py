"""A free TCP port near a taken one: what "Use port N" offers when another program holds the configured port."""

from __future__ import annotations

import socket

NEAR = 20  # the ports tried after the taken one before the kernel is asked for any


def is_free(host: str, port: int) -> bool:
    """Whether a server could listen on ``host:port`` now (bound as the server binds: SO_REUSEADDR, so a
    closed connection's TIME_WAIT does not count as taken)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port_near(host: str, port: int) -> int:
    """The first free port after ``port`` (a number people recognise: 8081 for 8080), else one the kernel
    picks. Free when asked: another program may still take it before the server binds it."""
    for candidate in range(port + 1, min(port + 1 + NEAR, 65536)):
        if is_free(host, candidate):
            return candidate
    return kernel_port(host)


def kernel_port(host: str) -> int:
    """A port the kernel says is free on ``host`` now (another program may still take it before it is bound)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]
