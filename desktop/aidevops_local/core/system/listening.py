"""Where processes actually listen: the TCP addresses the kernel says they hold, whatever their command lines
or our state file claim. `status` and `doctor` report these, so a server that binds more than it was told
is seen (and anything else that owns a public port, given its pids, is checked the same way)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

import psutil


@dataclass(frozen=True, order=True)
class ListenAddress:
    ip: str
    port: int
    pid: int

    @property
    def loopback(self) -> bool:
        """Reachable from this machine only. 0.0.0.0 and :: are every interface, so not loopback."""
        try:
            address = ipaddress.ip_address(self.ip.split("%", 1)[0])
        except ValueError:
            return False
        mapped = getattr(address, "ipv4_mapped", None)
        return (mapped or address).is_loopback

    def __str__(self) -> str:
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


def tcp_listen_addresses(pids: Iterable[int]) -> list[ListenAddress]:
    """The TCP sockets in LISTEN state that these processes hold, sorted. A process that is gone, or whose
    sockets the system will not show us, contributes nothing."""
    found: set[ListenAddress] = set()
    for pid in pids:
        try:
            connections = psutil.Process(pid).net_connections(kind="tcp")
        except (psutil.Error, OSError):
            continue
        found.update(
            ListenAddress(c.laddr.ip, c.laddr.port, pid)
            for c in connections
            if c.status == psutil.CONN_LISTEN and c.laddr
        )
    return sorted(found)


ANY_ADDRESS = "0.0.0.0"  # the host setting that shares the server on every network this machine is on


def lan_address() -> str | None:
    """This machine's address on its local network, for the URL another machine would use; None when it has
    none. Connecting a UDP socket only picks the route (no packet is sent); the TEST-NET address is never
    a real destination."""
    import socket

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))
            address = s.getsockname()[0]
    except OSError:
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    return None if ip.is_loopback or ip.is_unspecified else address
