"""What this machine is: OS, CPU and its instruction sets, memory, GPUs and their memory, free disk.

Fast (well under a second) and never crashes on a missing tool: absent means absent. GPUs come from the
platform's own sources: NVML (loaded with ctypes, no Python package) or nvidia-smi for NVIDIA, sysfs for AMD
and Intel cards on Linux, sysctl on macOS. Memory bandwidth is an estimate from known parts; it is what the
tokens/s predictions scale with.

`detect()` can be replaced by a profile (a JSON file named by AIDEVOPS_HARDWARE_PROFILE, or `from_profile`),
so `recommend` can be previewed for, and tested on, other machines.
"""

from __future__ import annotations

import ctypes
import json
import platform
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import psutil

from . import config, mac_memory, macos
from .errors import ConfigError

BACKENDS = ("cpu", "metal", "cuda", "rocm", "vulkan")
GPU_BACKENDS = ("metal", "cuda", "rocm", "vulkan")
# The instruction sets llama.cpp's CPU backend picks kernels by (x86 and Arm).
CPU_FEATURES = (
    "sse3",
    "ssse3",
    "avx",
    "avx2",
    "f16c",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512vbmi",
    "avx512_vnni",
    "avx512_bf16",
    "avx_vnni",
    "amx_int8",
    "neon",
    "dotprod",
    "i8mm",
    "sve",
    "sve2",
    "fp16",
    "bf16",
)
_PCI_VENDORS = {"0x10de": "nvidia", "0x1002": "amd", "0x8086": "intel"}


@dataclass(frozen=True)
class Gpu:
    vendor: str  # "nvidia", "amd", "apple", "intel", "other"
    name: str
    vram_total: int = 0  # bytes; 0 when unknown (or unified memory)
    vram_free: int = 0
    backend: str = ""  # the llama.cpp backend that drives it
    bandwidth_gbs: float = 0.0  # memory bandwidth, GB/s (an estimate from the part's name; 0: unknown)


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
    cpu_name: str = ""
    cpu_features: tuple[str, ...] = ()
    ram_bandwidth_gbs: float = 0.0  # system memory bandwidth estimate, GB/s
    disk_free: int | None = None  # bytes free where models are stored; None when unknown
    source: str = "detected"  # "detected", or the profile it came from
    performance_cores: int = 0  # Apple Silicon's performance cores (hw.perflevel0); 0 where macOS does not say
    metal_working_set: int = 0  # bytes Metal lets one process use, as read; 0: unknown (the default share)

    @property
    def best_backend(self) -> str:
        return self.backends[0]

    @property
    def vram_total(self) -> int:
        """Dedicated GPU memory of the GPUs the best backend drives (0 for unified memory or none)."""
        return sum(
            g.vram_total
            for g in self.gpus
            if g.backend == self.best_backend or (self.best_backend == "vulkan" and g.vram_total)
        )

    @property
    def gpu_working_set(self) -> int:
        """Apple Silicon: how much of the unified memory Metal lets one process use: the figure read from
        the Mac, else macOS's usual default share (see core/system/mac_memory.py)."""
        if not self.unified_memory:
            return 0
        return self.metal_working_set or mac_memory.default_share(self.memory.total)

    @property
    def threads(self) -> int:
        """What llama.cpp's threads should number: the performance cores where a Mac has two kinds (the
        efficiency cores only slow a decode loop down), else the physical cores."""
        return self.performance_cores or self.physical_cores


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
    if macos.on_macos():  # psutil leaves out the file cache and purgeable memory macOS frees at once
        return Memory(total=vm.total, available=mac_memory.available(vm.total, vm.available))
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


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""


# ---- CPU --------------------------------------------------------------------------------------------------


def cpu_info(os_: str | None = None) -> tuple[str, tuple[str, ...]]:
    """The CPU's name and the llama.cpp-relevant instruction sets it has."""
    os_ = os_ or os_name()
    if os_ == "darwin":
        return _darwin_cpu()
    text = _read(Path("/proc/cpuinfo"))
    return _parse_cpuinfo(text, normalized_arch())


def _parse_cpuinfo(text: str, arch: str) -> tuple[str, tuple[str, ...]]:
    name, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model", "hardware") and not name:
            name = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    aliases = {
        "pni": "sse3",
        "asimd": "neon",
        "asimddp": "dotprod",
        "asimdhp": "fp16",
        "avx512vnni": "avx512_vnni",
        "avxvnni": "avx_vnni",
        "amx_int8": "amx_int8",
        "svei8mm": "i8mm",
        "bf16": "bf16",
    }
    found = {aliases.get(f, f) for f in flags}
    if arch == "arm64":
        found.add("neon")  # AdvSIMD is mandatory on AArch64
    return name, tuple(f for f in CPU_FEATURES if f in found)


def _darwin_cpu() -> tuple[str, tuple[str, ...]]:
    return _parse_darwin_sysctl(_run(["sysctl", "machdep.cpu", "hw.optional"], timeout=1.0), normalized_arch())


# macOS's names for the flags (machdep.cpu.features / leaf7_features), lower-cased, that differ from ours.
_DARWIN_FLAG_NAMES = {"avx1.0": "avx", "avx512vnni": "avx512_vnni", "avx512bf16": "avx512_bf16", "avxvnni": "avx_vnni"}


def _parse_darwin_sysctl(out: str, arch: str) -> tuple[str, tuple[str, ...]]:
    values = {}
    for line in out.splitlines():
        key, _, value = line.partition(":")
        values[key.strip()] = value.strip()
    name = values.get("machdep.cpu.brand_string", "")
    found = set()
    if arch == "arm64":
        found.add("neon")
        for key, feature in (
            ("hw.optional.arm.FEAT_DotProd", "dotprod"),
            ("hw.optional.arm.FEAT_I8MM", "i8mm"),
            ("hw.optional.arm.FEAT_BF16", "bf16"),
            ("hw.optional.arm.FEAT_FP16", "fp16"),
        ):
            if values.get(key) == "1":
                found.add(feature)
    else:
        words = (values.get("machdep.cpu.features", "") + " " + values.get("machdep.cpu.leaf7_features", "")).lower()
        found = {_DARWIN_FLAG_NAMES.get(w, w.replace(".", "_")) for w in words.split()}
    return name, tuple(f for f in CPU_FEATURES if f in found)


# ---- GPUs -------------------------------------------------------------------------------------------------


class _NvmlMemory(ctypes.Structure):
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]


def _nvml_gpus() -> list[Gpu] | None:
    """NVIDIA GPUs through the driver's own library; None when NVML is not there (then try nvidia-smi)."""
    lib = None
    for name in ("libnvidia-ml.so.1", "libnvidia-ml.so"):
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError:
            continue
    if lib is None:
        return None
    try:
        if lib.nvmlInit_v2() != 0:
            return None
        try:
            count = ctypes.c_uint(0)
            if lib.nvmlDeviceGetCount_v2(ctypes.byref(count)) != 0:
                return None
            gpus = []
            for index in range(count.value):
                handle = ctypes.c_void_p()
                if lib.nvmlDeviceGetHandleByIndex_v2(index, ctypes.byref(handle)) != 0:
                    continue
                name = ctypes.create_string_buffer(96)
                lib.nvmlDeviceGetName(handle, name, 96)
                mem = _NvmlMemory()
                if lib.nvmlDeviceGetMemoryInfo(handle, ctypes.byref(mem)) != 0:
                    mem = _NvmlMemory(0, 0, 0)
                label = name.value.decode("utf-8", "replace")
                gpus.append(Gpu("nvidia", label, mem.total, mem.free, "cuda", gpu_bandwidth(label)))
            return gpus
        finally:
            lib.nvmlShutdown()
    except (AttributeError, OSError):
        return None


def nvidia_gpus() -> list[Gpu]:
    found = _nvml_gpus()
    if found is not None:
        return found
    out = _run(["nvidia-smi", "--query-gpu=name,memory.total,memory.free", "--format=csv,noheader,nounits"])
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
        vendor = _PCI_VENDORS.get(_read(device / "vendor").lower(), "other")
        if vendor == "nvidia":
            continue
        total = _int(_read(device / "mem_info_vram_total"))
        used = _int(_read(device / "mem_info_vram_used"))
        name = _read(device / "product_name") or f"{vendor.upper()} GPU {_read(device / 'device')}".strip()
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


def detect_backends(os_: str, arch: str, gpus: list[Gpu]) -> tuple[str, ...]:
    if os_ == "darwin":
        return ("metal", "cpu") if arch == "arm64" else ("cpu",)
    found = []
    if any(g.vendor == "nvidia" for g in gpus):
        found.append("cuda")
    if any(g.vendor == "amd" for g in gpus) and rocm_present():
        found.append("rocm")
    if gpus and vulkan_present():
        found.append("vulkan")
    return tuple(found) + ("cpu",)


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
_APPLE_BANDWIDTH = (  # chip name -> unified memory GB/s
    ("M4 Max", 546),
    ("M4 Pro", 273),
    ("M4", 120),
    ("M3 Ultra", 819),
    ("M3 Max", 400),
    ("M3 Pro", 150),
    ("M3", 100),
    ("M2 Ultra", 800),
    ("M2 Max", 400),
    ("M2 Pro", 200),
    ("M2", 100),
    ("M1 Ultra", 800),
    ("M1 Max", 400),
    ("M1 Pro", 200),
    ("M1", 68),
)


def gpu_bandwidth(name: str) -> float:
    for key, gbs in _GPU_BANDWIDTH:
        if key.lower() in name.lower():
            return float(gbs)
    return 0.0


def ram_bandwidth(*, cpu_name: str, unified: bool, physical: int) -> float:
    """System memory bandwidth a decode loop actually gets. Apple chips are known; elsewhere a dual-channel
    desktop gives ~60 GB/s, and few cores cannot pull that much (~10 GB/s each)."""
    if unified:
        for key, gbs in _APPLE_BANDWIDTH:
            if key in cpu_name:
                return float(gbs)
        return 100.0
    return float(min(60, 10 * max(1, physical)))


# ---- the whole machine ------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _static_probe() -> tuple[str, str, str, tuple[str, ...], tuple[Gpu, ...], int, int]:
    """What does not change while the app runs: probed once per process."""
    os_, arch = os_name(), normalized_arch()
    name, features = cpu_info(os_)
    working_set = 0
    if os_ == "darwin":
        gpus = [Gpu("apple", name or "Apple Silicon", 0, 0, "metal")] if arch == "arm64" else []
        if arch == "arm64":
            working_set = mac_memory.gpu_working_set(psutil.virtual_memory().total, server=_server_or_none()).bytes
    else:
        gpus = nvidia_gpus() + drm_gpus()
    return os_, arch, name, features, tuple(gpus), macos.performance_cores(), working_set


def _server_or_none() -> Path | None:
    """The installed llama-server, for what it can tell of the GPU; None when there is none."""
    from ..llamacpp import runtime  # runtime builds on this module: imported only when asked
    from .errors import LocalModelsError

    try:
        return runtime.find_llama_server()
    except (LocalModelsError, OSError):
        return None


def free_disk(path: Path) -> int | None:
    """Free bytes on the filesystem that holds ``path`` (or its nearest existing parent)."""
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free
    except OSError:
        return None


def detect(*, refresh: bool = False) -> Hardware:
    """This machine, or the profile AIDEVOPS_HARDWARE_PROFILE names. CPU and GPUs are probed once per
    process (``refresh`` probes again, e.g. for free VRAM); memory and disk are read every call."""
    profile = config.hardware_profile()
    if profile is not None:
        return load_profile(profile)
    if refresh:
        _static_probe.cache_clear()
    os_, arch, name, features, gpus, performance, working_set = _static_probe()
    unified = os_ == "darwin" and arch == "arm64"
    cores = physical_cores()
    forced = config.env_str("AIDEVOPS_BACKEND")  # lets a user (or a test) name the backend outright
    backends = detect_backends(os_, arch, list(gpus))
    if forced in BACKENDS:
        backends = tuple(dict.fromkeys((forced, "cpu")))
    return Hardware(
        os=os_,
        arch=arch,
        physical_cores=cores,
        logical_cores=psutil.cpu_count() or 1,
        memory=memory(),
        gpus=gpus,
        backends=backends,
        unified_memory=unified,
        cpu_name=name,
        cpu_features=features,
        ram_bandwidth_gbs=ram_bandwidth(cpu_name=name, unified=unified, physical=cores),
        disk_free=free_disk(config.paths().models_dir),
        performance_cores=performance,
        metal_working_set=working_set,
    )


def to_profile(hw: Hardware) -> dict:
    """A JSON-able description that `from_profile` turns back into the same Hardware."""
    return asdict(hw)


def from_profile(data: dict, *, source: str = "profile") -> Hardware:
    """A Hardware from a profile dict. Sizes may be given in GB for hand-written profiles: "ram_gb",
    "available_gb", and per GPU "vram_gb"."""
    try:
        data = dict(data)
        if "memory" in data:
            mem = Memory(**data.pop("memory"))
        else:
            total = int(float(data.pop("ram_gb")) * 2**30)
            mem = Memory(total, int(float(data.pop("available_gb", data.get("ram_gb", 0) or 0)) * 2**30) or total)
        gpus = []
        for g in data.pop("gpus", []):
            g = dict(g)
            if "vram_gb" in g:
                g["vram_total"] = int(float(g.pop("vram_gb")) * 2**30)
                g.setdefault("vram_free", g["vram_total"])
            g.setdefault("bandwidth_gbs", gpu_bandwidth(g.get("name", "")))
            gpus.append(Gpu(**g))
        data["gpus"] = tuple(gpus)
        for key in ("backends", "cpu_features"):
            if key in data:
                data[key] = tuple(data[key])
        data.setdefault("logical_cores", data.get("physical_cores", 1))
        data["source"] = source
        hw = Hardware(memory=mem, **data)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"The hardware profile is not valid: {exc}", hint="See core/system/hardware.py from_profile for the fields."
        ) from exc
    if not hw.ram_bandwidth_gbs:
        hw = replace(
            hw,
            ram_bandwidth_gbs=ram_bandwidth(
                cpu_name=hw.cpu_name, unified=hw.unified_memory, physical=hw.physical_cores
            ),
        )
    return hw


def load_profile(path: Path) -> Hardware:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"Cannot read the hardware profile {path}: {exc}", hint="Fix the file or unset AIDEVOPS_HARDWARE_PROFILE."
        ) from exc
    return from_profile(data, source=str(path))
