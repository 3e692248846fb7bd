"""What this machine is: OS, CPU and its instruction sets, memory, GPUs and their memory, free disk.

Fast (well under a second) and never crashes on a missing tool: absent means absent. The GPUs come from
gpus.py (NVML or nvidia-smi for NVIDIA, sysfs for AMD and Intel cards on Linux), and the usable llama.cpp
backends from the registry in backends.py; on macOS, sysctl. Memory bandwidth is an estimate from known parts;
it is what the tokens/s predictions scale with.

`detect()` can be replaced by a profile (a JSON file named by AIDEVOPS_HARDWARE_PROFILE, or `from_profile`),
so `recommend` can be previewed for, and tested on, other machines.
"""

from __future__ import annotations

import json
import math
import platform
import shutil
from dataclasses import asdict, dataclass, field, fields, replace
from functools import lru_cache
from pathlib import Path

import psutil

from . import backends, config, mac_memory, macos
from .backends import BACKENDS, GPU_BACKENDS
from .errors import ConfigError
from .gpus import Gpu, drm_gpus, gpu_bandwidth, nvidia_gpus, rocm_present, vulkan_present
from .tools import read_text, run_tool

__all__ = [
    "BACKENDS",
    "GPU_BACKENDS",
    "Gpu",
    "Hardware",
    "Memory",
    "detect",
    "detect_backends",
    "drm_gpus",
    "from_profile",
    "gpu_bandwidth",
    "nvidia_gpus",
    "rocm_present",
    "run_tool",
    "to_profile",
    "vulkan_present",
]
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
        best = backends.get(self.best_backend)
        return sum(g.vram_total for g in self.gpus if g.backend == self.best_backend or (best and best.any_gpu))

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


# ---- CPU --------------------------------------------------------------------------------------------------


def cpu_info(os_: str | None = None) -> tuple[str, tuple[str, ...]]:
    """The CPU's name and the llama.cpp-relevant instruction sets it has."""
    os_ = os_ or os_name()
    if os_ == "darwin":
        return _darwin_cpu()
    text = read_text(Path("/proc/cpuinfo"))
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
    return _parse_darwin_sysctl(run_tool(["sysctl", "machdep.cpu", "hw.optional"], timeout=1.0), normalized_arch())


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


# ---- system memory bandwidth (GB/s), for tokens/s ------------------------------------------------------------

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


def detect_backends(os_: str, arch: str, gpus: list[Gpu]) -> tuple[str, ...]:
    """The llama.cpp backends this machine can run, best first, always ending in cpu (see backends.py)."""
    return backends.detect(os_, arch, gpus)


@lru_cache(maxsize=4)
def _static_probe(server: Path | None = None) -> tuple[str, str, str, tuple[str, ...], tuple[Gpu, ...], int, int]:
    """What does not change while the app runs: probed once per process (and per llama-server given, which
    on Apple Silicon can tell Metal's working set)."""
    os_, arch = os_name(), normalized_arch()
    name, features = cpu_info(os_)
    working_set = 0
    if os_ == "darwin":
        gpus = [Gpu("apple", name or "Apple Silicon", 0, 0, "metal")] if arch == "arm64" else []
        if arch == "arm64":
            working_set = mac_memory.gpu_working_set(psutil.virtual_memory().total, server=server).bytes
    else:
        gpus = nvidia_gpus() + drm_gpus()
    return os_, arch, name, features, tuple(gpus), macos.performance_cores(), working_set


def free_disk(path: Path) -> int | None:
    """Free bytes on the filesystem that holds ``path`` (or its nearest existing parent)."""
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free
    except OSError:
        return None


def detect(*, refresh: bool = False, server: Path | None = None) -> Hardware:
    """This machine, or the profile AIDEVOPS_HARDWARE_PROFILE names. CPU and GPUs are probed once per
    process (``refresh`` probes again, e.g. for free VRAM); memory and disk are read every call. ``server``:
    the installed llama-server, where the caller knows it (a layer above this one): on Apple Silicon its
    device list is the last source of Metal's working set before the usual share."""
    profile = config.hardware_profile()
    if profile is not None:
        return load_profile(profile)
    if refresh:
        _static_probe.cache_clear()
    os_, arch, name, features, gpus, performance, working_set = _static_probe(server)
    unified = os_ == "darwin" and arch == "arm64"
    cores = physical_cores()
    forced = config.env_str("AIDEVOPS_BACKEND")  # lets a user (or a test) name the backend outright
    usable = detect_backends(os_, arch, list(gpus))
    if forced in BACKENDS:
        usable = tuple(dict.fromkeys((forced, "cpu")))
    return Hardware(
        os=os_,
        arch=arch,
        physical_cores=cores,
        logical_cores=psutil.cpu_count() or 1,
        memory=memory(),
        gpus=gpus,
        backends=usable,
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
        for part in (hw, mem, *gpus):
            _check_profile_values(part)
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
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


_PROFILE_TYPES = {"int": int, "float": (int, float), "str": str, "bool": bool, "int | None": (int, type(None))}


def _check_profile_values(part) -> None:
    """A hand-written profile's numbers are numbers (not text, not true/false), finite and not negative."""
    for f in fields(part):
        value, expected = getattr(part, f.name), _PROFILE_TYPES.get(str(f.type))
        if expected is None:
            continue
        if not isinstance(value, expected) or (isinstance(value, bool) and f.type != "bool"):
            raise TypeError(f"{f.name} is {value!r}, not {f.type}")
        if isinstance(value, int | float) and not isinstance(value, bool) and not 0 <= value < math.inf:
            raise ValueError(f"{f.name} is {value!r}")


def load_profile(path: Path) -> Hardware:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"Cannot read the hardware profile {path}: {exc}", hint="Fix the file or unset AIDEVOPS_HARDWARE_PROFILE."
        ) from exc
    return from_profile(data, source=str(path))
