"""A start that pools other machines' memory (core/rpc): the workers are reached before the plan (their
devices and free memory join it as offload devices, and every model gets ``--rpc``), recorded in the state
file with the SSH tunnels opened to them, and those tunnels are closed when the run ends."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

from ..system import config
from ..system.errors import Refused
from ..system.progress import ProgressCallback, report

if TYPE_CHECKING:
    from ..rpc.pool import Pool
    from .state import ServerState


def reach(settings: config.Settings, progress: ProgressCallback | None) -> Pool | None:
    """The settings' workers, reached (rpc/pool.py: SSH workers started and tunnelled, devices asked)."""
    if not settings.workers:
        return None
    from ..llamacpp import runtime
    from ..rpc import pool as rpc_pool

    report(progress, f"Reaching {len(settings.workers)} worker(s)", 0, None, unit="step")
    return rpc_pool.connect(settings.workers, binary=runtime.find_llama_server())


def devices(hw, backend: str, pool: Pool | None):
    """(hardware, backend, --rpc, whether to give --tensor-split) for the planner: the workers' devices as
    the offload devices. A main machine with GPUs of its own keeps them, but the plan counts only the workers'
    memory (it errs low) and leaves the split to llama.cpp, whose order of local and RPC devices it would
    otherwise have to guess."""
    if pool is None or not pool.members:
        return hw, backend, "", True
    from ..rpc import pool as rpc_pool

    return rpc_pool.hardware_with(hw, pool), rpc_pool.BACKEND, pool.rpc_arg, not any(g.vram_total for g in hw.gpus)


def check_fits(pool: Pool | None, fits: bool, model: str) -> None:
    """With workers, a model that fits nowhere is refused (alone, the machine swaps, as before)."""
    if pool is not None and not fits:
        raise Refused(
            f"{model} does not fit in this machine's memory and its workers' ({pool.line()}).",
            hint="Add a worker, bring back the one left out, or pick a smaller model or quant.",
        )


def record(pool: Pool | None) -> list[dict] | None:
    """The state file's view of the workers: each one's devices, endpoint and tunnel; who was left out."""
    if pool is None:
        return None
    members = [{**m.as_json(), "tunnel": asdict(m.tunnel) if m.tunnel else None} for m in pool.members]
    return members + [{"worker": why.split(": ", 1)[0], "left_out": True, "why": why} for why in pool.left_out]


def close_tunnels(state: ServerState) -> None:
    """The SSH tunnels the run opened (each closed only if it is still the ssh we started)."""
    if not state.workers:
        return
    from ..rpc import tunnels

    for worker in state.workers:
        if isinstance(worker, dict) and isinstance(worker.get("tunnel"), dict):
            try:
                tunnels.close(tunnels.Tunnel(**worker["tunnel"]))
            except TypeError:
                continue
