"""What this machine is: OS, CPU, memory, GPU backends. Fast, and never crashes on a missing tool:
absent means absent."""

from __future__ import annotations

import platform
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from . import config

BACKENDS = ("cpu", "metal", "cuda", "rocm", "vulkan")


@dataclass(frozen=True)
class Gpu:
    vendor: str  # "nvidia", "amd", "apple", "other"
    name: str
    vram_total: int = 0  # bytes; 0 when unknown (or unified memory)
    vram_free: int = 0
    backend: str = ""  # the llama.cpp backend that drives it


@dataclass(frozen=True)
class Memory:
    total: int
    available: int

    @property
    def used(self) -> int:
        return self.total - self.available

    @property
    def percent_used(self) -> float:
        return 100.0 * self.used / self.total if self.total else 0.0


@dataclass(frozen=True)
class Hardware:
    os: str  # "linux" or "darwin"
    arch: str  # "x64" or "arm64"
    physical_cores: int
    logical_cores: int
    memory: Memory
    gpus: tuple[Gpu, ...] = field(default_factory=tuple)
    backends: tuple[str, ...] = ("cpu",)  # usable llama.cpp backends, best first, always ending in cpu
    unified_memory: bool = False  # Apple Silicon: GPU and CPU share RAM

    @property
    def best_backend(self) -> str:
        return self.backends[0]


def normalized_arch(machine: str | None = None) -> str:
    machine = (machine or platform.machine()).lower()
    if machine in {"x86_64", "amd64"}:
        return "x64"
    if machine in {"arm64", "aarch64"}:
        return "arm64"
    return machine


def os_name() -> str:
    return {"Darwin": "darwin", "Linux": "linux"}.get(platform.system(), platform.system().lower())


def physical_cores() -> int:
    return psutil.cpu_count(logical=False) or psutil.cpu_count() or 1


def memory() -> Memory:
    vm = psutil.virtual_memory()
    return Memory(total=vm.total, available=vm.available)


def _run(argv: list[str], timeout: float = 2.0) -> str:
    """Output of a probing tool, or "" if it is absent, fails or hangs."""
    if shutil.which(argv[0]) is None:
        return ""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout if done.returncode == 0 else ""


def nvidia_gpus() -> list[Gpu]:
    out = _run(["nvidia-smi", "--query-gpu=name,memory.total,memory.free", "--format=csv,noheader,nounits"])
    gpus = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            try:
                total, free = int(float(parts[1])) << 20, int(float(parts[2])) << 20
            except ValueError:
                continue
            gpus.append(Gpu("nvidia", parts[0], total, free, "cuda"))
    return gpus


def rocm_present() -> bool:
    return Path("/dev/kfd").exists() and (Path("/opt/rocm").exists() or shutil.which("rocminfo") is not None)


def vulkan_present() -> bool:
    if shutil.which("vulkaninfo") and _run(["vulkaninfo", "--summary"]):
        return True
    return Path("/dev/dri").is_dir() and any(Path(p).exists() for p in (
        "/usr/lib/x86_64-linux-gnu/libvulkan.so.1", "/usr/lib/aarch64-linux-gnu/libvulkan.so.1",
        "/usr/lib64/libvulkan.so.1", "/usr/lib/libvulkan.so.1"))


def detect_backends(os_: str, arch: str, gpus: list[Gpu]) -> tuple[str, ...]:
    if os_ == "darwin":
        return ("metal", "cpu") if arch == "arm64" else ("cpu",)
    found = []
    if any(g.vendor == "nvidia" for g in gpus):
        found.append("cuda")
    if rocm_present():
        found.append("rocm")
    if vulkan_present():
        found.append("vulkan")
    return tuple(found) + ("cpu",)


def detect() -> Hardware:
    os_, arch = os_name(), normalized_arch()
    gpus = nvidia_gpus() if os_ == "linux" else []
    unified = os_ == "darwin" and arch == "arm64"
    if unified:
        gpus = [Gpu("apple", platform.processor() or "Apple Silicon", 0, 0, "metal")]
    forced = config.env_str("AIDEVOPS_BACKEND")  # lets a user (or a test) name the backend outright
    backends = detect_backends(os_, arch, gpus)
    if forced in BACKENDS:
        backends = tuple(dict.fromkeys((forced, "cpu")))
    return Hardware(os=os_, arch=arch, physical_cores=physical_cores(), logical_cores=psutil.cpu_count() or 1,
                    memory=memory(), gpus=tuple(gpus), backends=backends, unified_memory=unified)
