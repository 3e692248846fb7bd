"""The llama.cpp backends, one record each: what a backend is, in one place.

A record says whether the backend offloads layers to a GPU, what its runtime adds to the memory estimate
(models/fit.py; the figures below say where each comes from, and err high where nothing was measured),
which release assets are builds of it (llamacpp/releases.py), how to tell this machine can run it
(hardware.py), and how to read the GPU memory a server's processes use with it (serving/health.py).
Adding a backend, or another build of one, is one entry in ``REGISTRY``.

It sits in core/system because hardware detection, the lowest user, needs it; the asset patterns are plain
data, so the layers above read them without this module knowing about releases.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from . import gpus
from .gpus import Gpu

MIB = 1 << 20


@dataclass(frozen=True)
class AssetPattern:
    """A release asset that is a build of the backend: ``llama-bN-bin-<os>-[<token>[-<variant>]-]<arch>``.
    ``os`` is ours ("linux", "darwin"); ``arch`` "*" for any; ``token`` "" for a name without one."""

    os: str
    arch: str
    token: str

    def matches(self, os_: str, arch: str, token: str) -> bool:
        return self.os == os_ and self.arch in ("*", arch) and self.token == token


@dataclass(frozen=True)
class Backend:
    name: str
    offloads: bool  # layers can go to a GPU (-ngl)
    overhead_ram: int  # bytes its runtime adds to the host process when layers are offloaded
    overhead_vram: int  # and to each device it uses (context, kernels, BLAS workspace, memory pool)
    assets: tuple[AssetPattern, ...]  # the release builds of it
    detect: Callable[[str, str, Sequence[Gpu]], bool]  # (os, arch, gpus): can this machine run it?
    memory_in_use: Callable[[Iterable[int]], int | None] | None = None  # device bytes the pids use; None: unknown
    any_gpu: bool = False  # drives any GPU with memory (Vulkan), not only the ones detected for it
    versioned_by_driver: bool = False  # builds per runtime version (cuda-12.8): pick by the driver's major
    output_stage_vram: int = 0  # device buffers when the output layer is there too (at least; logits if more)


def _metal(os_: str, arch: str, found: Sequence[Gpu]) -> bool:
    return (os_, arch) == ("darwin", "arm64")


def _cuda(os_: str, arch: str, found: Sequence[Gpu]) -> bool:
    return os_ != "darwin" and any(g.vendor == "nvidia" for g in found)


def _rocm(os_: str, arch: str, found: Sequence[Gpu]) -> bool:
    return os_ != "darwin" and any(g.vendor == "amd" for g in found) and gpus.rocm_present()


def _vulkan(os_: str, arch: str, found: Sequence[Gpu]) -> bool:
    return os_ != "darwin" and bool(found) and gpus.vulkan_present()


def _cpu(os_: str, arch: str, found: Sequence[Gpu]) -> bool:
    return True


# Best first: detection lists the usable ones in this order, and an asset is the first backend it matches.
# The memory figures. CUDA was measured on an H200 (CUDA 13.0, llama.cpp b11434, a 0.75B F16 llama, nvidia-smi
# per process): beyond the weights, KV cache and compute buffer, a constant ~593 MiB per process with every
# layer offloaded at four contexts and slot counts, ~512 MiB with half the layers (the rest is the output
# stage), up to 701 MiB in one run: 600 + 128 MiB err high of all of them. Host side: RSS 1152 MiB for the CPU
# half of that partial offload, ~200 MiB over the CPU-only terms, so 450 MiB. ROCm's HIP runtime is documented
# as at least CUDA's, so its figures are CUDA's plus a margin; Vulkan's driver-side allocations are smaller
# but driver-dependent (300 MiB); Metal has no device context in unified memory, but its command buffers and
# residency sets take ~100 MiB of the shared pool. None of ROCm, Vulkan and Metal was measured here.
REGISTRY: tuple[Backend, ...] = (
    Backend(
        "metal", True, 20 * MIB, 100 * MIB, (AssetPattern("darwin", "arm64", ""),), _metal, output_stage_vram=64 * MIB
    ),
    Backend(
        "cuda",
        True,
        450 * MIB,
        600 * MIB,
        (AssetPattern("linux", "*", "cuda"),),
        _cuda,
        memory_in_use=gpus.nvidia_memory_in_use,
        versioned_by_driver=True,
        output_stage_vram=128 * MIB,
    ),
    Backend(
        "rocm",
        True,
        450 * MIB,
        700 * MIB,
        (AssetPattern("linux", "*", "rocm"), AssetPattern("linux", "*", "hip")),
        _rocm,
        output_stage_vram=128 * MIB,
    ),
    Backend(
        "vulkan",
        True,
        120 * MIB,
        300 * MIB,
        (AssetPattern("linux", "*", "vulkan"),),
        _vulkan,
        any_gpu=True,
        output_stage_vram=128 * MIB,
    ),
    # The CPU build; on a Mac the one build of each arch (Metal on Apple Silicon) also runs on the CPU.
    Backend("cpu", False, 0, 0, (AssetPattern("linux", "*", ""), AssetPattern("darwin", "*", "")), _cpu),
)
# Workers on other machines (core/rpc): not a build, never detected, but planned like GPUs, one per worker
# device. Each worker's RPC server holds its layers, their KV cache and a compute buffer; what its process and
# the main process's RPC client add beyond those is a guess that errs high.
RPC = Backend("rpc", True, 64 * MIB, 128 * MIB, (), lambda os_, arch, found: False, output_stage_vram=64 * MIB)
_BY_NAME = {b.name: b for b in (*REGISTRY, RPC)}

BACKENDS: tuple[str, ...] = ("cpu", *(b.name for b in REGISTRY if b.name != "cpu"))
GPU_BACKENDS: tuple[str, ...] = tuple(b.name for b in REGISTRY if b.offloads)


def get(name: str) -> Backend | None:
    return _BY_NAME.get(name)


def offloads(name: str) -> bool:
    backend = _BY_NAME.get(name)
    return bool(backend and backend.offloads)


def detect(os_: str, arch: str, found: Sequence[Gpu]) -> tuple[str, ...]:
    """The backends this machine can run, best first; always ending in cpu."""
    return tuple(b.name for b in REGISTRY if b.detect(os_, arch, found))


def for_asset(os_: str, arch: str, token: str) -> str:
    """The backend a release asset is a build of (its name's os, arch and backend token); an upstream
    backend not in the registry (sycl, openvino) keeps its own name."""
    for backend in REGISTRY:
        if any(p.matches(os_, arch, token) for p in backend.assets):
            return backend.name
    return token


def runs_build_of(wanted: str, os_: str, arch: str, token: str) -> bool:
    """Whether an asset (os, arch, token) is a build that runs ``wanted``."""
    backend = _BY_NAME.get(wanted)
    if backend is None:
        return token == wanted
    return any(p.matches(os_, arch, token) for p in backend.assets)


def memory_in_use(pids: Iterable[int], name: str | None = None) -> int | None:
    """Device memory ``pids`` use under backend ``name`` (None: the first backend whose reader finds them);
    None where no reader can say."""
    pids = list(pids)
    for backend in REGISTRY:
        if backend.memory_in_use is not None and name in (None, backend.name):
            used = backend.memory_in_use(pids)
            if used is not None:
                return used
    return None
