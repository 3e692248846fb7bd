"""The GPUs of a Linux machine and what they hold: NVIDIA through NVML (the driver's library, loaded with
ctypes, no Python package) or nvidia-smi, AMD and Intel through sysfs, and the memory each process uses on
an NVIDIA card (NVML first, nvidia-smi where NVML is not there).

Kept apart from hardware.py because the backend registry (backends.py) detects and reads backends through
these functions, and hardware.py builds on the registry. Bandwidth is an estimate from the part's name.
"""

from __future__ import annotations

import ctypes
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .tools import read_text, run_tool

_PCI_VENDORS = {"0x10de": "nvidia", "0x1002": "amd", "0x8086": "intel"}
_NVML_SUCCESS = 0
_NVML_INSUFFICIENT_SIZE = 7
_NVML_NOT_AVAILABLE = (1 << 64) - 1  # usedGpuMemory when the driver cannot say (e.g. under WDDM)


@dataclass(frozen=True)
class Gpu:
    vendor: str  # "nvidia", "amd", "apple", "intel", "other"
    name: str
    vram_total: int = 0  # bytes; 0 when unknown (or unified memory)
    vram_free: int = 0
    backend: str = ""  # the llama.cpp backend that drives it
    bandwidth_gbs: float = 0.0  # memory bandwidth, GB/s (an estimate from the part's name; 0: unknown)


# ---- NVML ---------------------------------------------------------------------------------------------------


class _NvmlMemory(ctypes.Structure):
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]


class _NvmlProcess(ctypes.Structure):
    # nvmlProcessInfo_v2_t, what nvmlDeviceGetComputeRunningProcesses_v3 and _v2 fill in.
    _fields_ = [
        ("pid", ctypes.c_uint),
        ("usedGpuMemory", ctypes.c_ulonglong),
        ("gpuInstanceId", ctypes.c_uint),
        ("computeInstanceId", ctypes.c_uint),
    ]


def _nvml_library():
    for name in ("libnvidia-ml.so.1", "libnvidia-ml.so"):
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def _with_nvml(work):
    """``work(lib, handles)`` with NVML initialised and every device's handle; None when NVML is not there."""
    lib = _nvml_library()
    if lib is None:
        return None
    try:
        if lib.nvmlInit_v2() != _NVML_SUCCESS:
            return None
        try:
            count = ctypes.c_uint(0)
            if lib.nvmlDeviceGetCount_v2(ctypes.byref(count)) != _NVML_SUCCESS:
                return None
            handles = []
            for index in range(count.value):
                handle = ctypes.c_void_p()
                if lib.nvmlDeviceGetHandleByIndex_v2(index, ctypes.byref(handle)) == _NVML_SUCCESS:
                    handles.append(handle)
            return work(lib, handles)
        finally:
            lib.nvmlShutdown()
    except (AttributeError, OSError):
        return None


def nvml_gpus() -> list[Gpu] | None:
    """NVIDIA GPUs through the driver's own library; None when NVML is not there (then try nvidia-smi)."""

    def read(lib, handles) -> list[Gpu]:
        gpus = []
        for handle in handles:
            name = ctypes.create_string_buffer(96)
            lib.nvmlDeviceGetName(handle, name, 96)
            mem = _NvmlMemory()
            if lib.nvmlDeviceGetMemoryInfo(handle, ctypes.byref(mem)) != _NVML_SUCCESS:
                mem = _NvmlMemory(0, 0, 0)
            label = name.value.decode("utf-8", "replace")
            gpus.append(Gpu("nvidia", label, mem.total, mem.free, "cuda", gpu_bandwidth(label)))
        return gpus

    return _with_nvml(read)


def _nvml_device_processes(lib, handle) -> list[tuple[int, int]]:
    """(pid, used bytes) of one device's compute processes: _v3 where the driver has it, else _v2."""
    for symbol in ("nvmlDeviceGetComputeRunningProcesses_v3", "nvmlDeviceGetComputeRunningProcesses_v2"):
        call = getattr(lib, symbol, None)
        if call is None:
            continue
        count = ctypes.c_uint(0)
        status = call(handle, ctypes.byref(count), None)
        if status == _NVML_SUCCESS:
            return []
        if status != _NVML_INSUFFICIENT_SIZE:
            continue
        count = ctypes.c_uint(count.value + 8)  # room for processes that start in between
        infos = (_NvmlProcess * count.value)()
        if call(handle, ctypes.byref(count), infos) != _NVML_SUCCESS:
            continue
        return [(info.pid, info.usedGpuMemory) for info in infos[: count.value]]
    return []


def nvml_process_memory() -> list[tuple[int, int]] | None:
    """(pid, used bytes) of every compute process on every NVIDIA GPU; None when NVML is not there."""
    return _with_nvml(lambda lib, handles: [p for h in handles for p in _nvml_device_processes(lib, h)])


# ---- nvidia-smi ---------------------------------------------------------------------------------------------


def parse_smi_gpus(out: str) -> list[Gpu]:
    """nvidia-smi --query-gpu=name,memory.total,memory.free (csv, no header, no units: MiB)."""
    gpus = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            try:
                total, free = int(float(parts[1])) << 20, int(float(parts[2])) << 20
            except ValueError:
                continue
            gpus.append(Gpu("nvidia", parts[0], total, free, "cuda", gpu_bandwidth(parts[0])))
    return gpus


def parse_smi_processes(out: str) -> list[tuple[int, int]]:
    """nvidia-smi --query-compute-apps=pid,used_memory (csv, no header, no units: MiB) as (pid, bytes)."""
    found = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
            found.append((int(parts[0]), int(parts[1]) << 20))
    return found


def smi_process_memory() -> list[tuple[int, int]]:
    out = run_tool(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"], 0.5)
    return parse_smi_processes(out)


def nvidia_gpus() -> list[Gpu]:
    found = nvml_gpus()
    if found is not None:
        return found
    return parse_smi_gpus(
        run_tool(["nvidia-smi", "--query-gpu=name,memory.total,memory.free", "--format=csv,noheader,nounits"])
    )


def used_by(processes: Iterable[tuple[int, int]], pids: Iterable[int]) -> int | None:
    """What ``pids`` use together of the listed (pid, bytes); None when none of them is listed."""
    ours = set(pids)
    used = [size for pid, size in processes if pid in ours and size != _NVML_NOT_AVAILABLE]
    return sum(used) if used else None


def nvidia_memory_in_use(pids: Iterable[int]) -> int | None:
    """The VRAM ``pids`` use on NVIDIA GPUs: NVML where the driver's library loads, else nvidia-smi."""
    processes = nvml_process_memory()
    if processes is None:
        processes = smi_process_memory()
    return used_by(processes, pids)


# ---- sysfs (AMD, Intel) and the other runtimes -----------------------------------------------------------


def drm_gpus(drm: Path = Path("/sys/class/drm")) -> list[Gpu]:
    """AMD and Intel GPUs from sysfs (no tool needed). AMD cards report their VRAM there; NVIDIA cards are
    left to NVML."""
    gpus = []
    try:
        cards = sorted(p for p in drm.glob("card*") if re.fullmatch(r"card\d+", p.name))
    except OSError:
        return []
    for card in cards:
        device = card / "device"
        vendor = _PCI_VENDORS.get(read_text(device / "vendor").lower(), "other")
        if vendor == "nvidia":
            continue
        total = _int(read_text(device / "mem_info_vram_total"))
        used = _int(read_text(device / "mem_info_vram_used"))
        name = read_text(device / "product_name") or f"{vendor.upper()} GPU {read_text(device / 'device')}".strip()
        backend = "rocm" if vendor == "amd" and total else "vulkan"
        gpus.append(Gpu(vendor, name, total, max(0, total - used), backend, gpu_bandwidth(name)))
    return gpus


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 0


def rocm_present() -> bool:
    return Path("/dev/kfd").exists() and (Path("/opt/rocm").exists() or shutil.which("rocminfo") is not None)


def vulkan_present() -> bool:
    """A Vulkan loader and a render node: enough for llama.cpp's Vulkan build to find a device."""
    loaders = (
        "/usr/lib/x86_64-linux-gnu/libvulkan.so.1",
        "/usr/lib/aarch64-linux-gnu/libvulkan.so.1",
        "/usr/lib64/libvulkan.so.1",
        "/usr/lib/libvulkan.so.1",
    )
    return Path("/dev/dri").is_dir() and any(Path(p).exists() for p in loaders)


# ---- bandwidth estimates (GB/s), for tokens/s ---------------------------------------------------------------

_GPU_BANDWIDTH = (  # substring of the marketing name -> GB/s; first match wins, so longer names come first
    ("H200", 4800),
    ("H100", 3350),
    ("A100", 1935),
    ("L40S", 864),
    ("L40", 864),
    ("A6000", 768),
    ("L4", 300),
    ("T4", 320),
    ("A10", 600),
    ("5090", 1792),
    ("5080", 960),
    ("5070 Ti", 896),
    ("5070", 672),
    ("4090", 1008),
    ("4080", 717),
    ("4070 Ti", 504),
    ("4070", 504),
    ("4060 Ti", 288),
    ("4060", 272),
    ("3090", 936),
    ("3080", 760),
    ("3070", 448),
    ("3060", 360),
    ("2080", 448),
    ("2070", 448),
    ("2060", 336),
    ("7900 XTX", 960),
    ("7900 XT", 800),
    ("7800 XT", 624),
    ("7700 XT", 432),
    ("6900 XT", 512),
    ("6800", 512),
    ("MI300", 5300),
    ("MI250", 3277),
    ("MI210", 1638),
)


def gpu_bandwidth(name: str) -> float:
    for key, gbs in _GPU_BANDWIDTH:
        if key.lower() in name.lower():
            return float(gbs)
    return 0.0
