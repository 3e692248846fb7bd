"""The workers a start uses: the ``workers`` setting (or ``serve --worker``) turned into endpoints llama-server
can reach, with each one's devices and free memory, and the machine as the fit sees it with them.

A worker is written ``user@host`` (reached through an SSH tunnel: tunnels.py) or ``host:port`` (reached
directly: for a network the user trusts, since the RPC server has no authentication; said once). A worker
that does not answer is left out, and the plan says so.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ..system import config, settings_checks
from ..system.errors import ConfigError, LocalModelsError
from ..system.gpus import Gpu
from ..system.hardware import Hardware
from . import devices, tunnels

BACKEND = "rpc"  # how the fit knows a worker's memory (system/backends.py)
WARNED_MARKER = "direct-workers-warned"


@dataclass(frozen=True)
class WorkerSpec:
    text: str
    ssh_target: str = ""  # user@host
    endpoint: str = ""  # host:port, for a direct worker


def parse(text: str) -> WorkerSpec:
    """A worker as written in the settings or on the command line; ConfigError when it is neither form."""
    text = text.strip()
    if problem := settings_checks.worker_problem(text):
        raise ConfigError(f"The worker {text!r} is {problem}.", hint=settings_checks.WORKER_HINT)
    return WorkerSpec(text, ssh_target=text) if "@" in text else WorkerSpec(text, endpoint=text)


@dataclass
class Member:
    spec: str
    endpoint: str  # what llama-server's --rpc names: the tunnel's local end, or the worker itself
    devices: list[devices.Device] = field(default_factory=list)
    tunnel: tunnels.Tunnel | None = None

    @property
    def free_bytes(self) -> int:
        return sum(d.free_bytes for d in self.devices)

    def as_json(self) -> dict:
        out = {"worker": self.spec, "endpoint": self.endpoint, "via": "ssh" if self.tunnel else "direct"}
        out["devices"] = [asdict(d) for d in self.devices]
        out["free_bytes"] = self.free_bytes
        return out


@dataclass
class Pool:
    members: list[Member]  # the workers that answered
    left_out: list[str] = field(default_factory=list)  # "user@host: why"

    @property
    def rpc_arg(self) -> str:
        return ",".join(m.endpoint for m in self.members)

    def close(self) -> None:
        for member in self.members:
            if member.tunnel is not None:
                tunnels.close(member.tunnel)

    def line(self) -> str:
        parts = [f"{m.spec} ({m.free_bytes / (1 << 30):.1f} GiB free)" for m in self.members]
        out = "workers: " + (", ".join(parts) if parts else "none answering")
        return out + "".join(f"; left out {why}" for why in self.left_out)


def connect(specs: list[str], *, binary: Path | None = None) -> Pool:
    """Reach every worker (starting it and opening its tunnel where it is an SSH one) and ask its devices.
    A worker that cannot be reached is left out; on any other failure nothing stays open."""
    parsed = [parse(s) for s in specs]  # a malformed setting refuses before anything runs
    pool = Pool(members=[])
    try:
        for spec in parsed:
            if spec.ssh_target:
                try:
                    port = tunnels.start_remote_worker(spec.ssh_target)
                    tunnel = tunnels.open_tunnel(spec.ssh_target, port)
                except LocalModelsError as exc:
                    pool.left_out.append(f"{spec.text}: {exc.message}")
                    continue
                pool.members.append(Member(spec.text, tunnel.endpoint, tunnel=tunnel))
            else:
                _warn_direct_once(spec)
                pool.members.append(Member(spec.text, spec.endpoint))
        found = devices.list_devices([m.endpoint for m in pool.members], binary=binary)
        for member in list(pool.members):
            member.devices = found.get(member.endpoint, [])
            if not member.devices:
                pool.left_out.append(f"{member.spec}: its RPC server does not answer")
                if member.tunnel is not None:
                    tunnels.close(member.tunnel)
                pool.members.remove(member)
    except BaseException:
        pool.close()
        raise
    return pool


def _warn_direct_once(spec: WorkerSpec) -> None:
    marker = config.paths().app_dir / WARNED_MARKER
    if marker.exists():
        return
    print(
        f"Note: the worker {spec.text} is reached directly. Its RPC server has no authentication: anyone on that "
        "network can use it and read what is sent to it. Use user@host (an SSH tunnel) unless you trust the "
        "network.",
        file=sys.stderr,
    )
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except OSError:
        pass


def hardware_with(hw: Hardware, pool: Pool) -> Hardware:
    """The machine as the fit sees it with workers: their devices are where offloaded layers go (the main
    machine's CPU keeps the rest), in the order llama-server lists them."""
    gpus = tuple(
        Gpu(vendor="rpc", name=f"{m.spec} {d.name}", vram_total=d.free_bytes, vram_free=d.free_bytes, backend=BACKEND)
        for m in pool.members
        for d in m.devices
    )
    return replace(hw, gpus=gpus, backends=(BACKEND, "cpu"), unified_memory=False)
