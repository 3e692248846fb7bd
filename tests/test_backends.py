"""The backend registry: every record complete, release assets mapped to the right backend, detection in
the registry's order, and the GPU memory a server uses read through NVML first, nvidia-smi after."""

from __future__ import annotations

import ctypes
import os

import pytest

from aidevops_local.core.llamacpp import releases
from aidevops_local.core.system import backends, gpus, hardware
from aidevops_local.core.system.gpus import Gpu

MIB = 1 << 20
TAG = "b11101"


def test_every_backend_record_is_complete():
    names = [b.name for b in backends.REGISTRY]
    assert sorted(names) == sorted(backends.BACKENDS) and len(set(names)) == len(names)
    assert names[-1] == "cpu"  # the one every machine has comes last
    for record in backends.REGISTRY:
        assert record.name and record.assets and callable(record.detect)
        assert record.overhead_ram >= 0 and record.overhead_vram >= 0
        assert all(p.os in ("linux", "darwin") and p.arch in ("*", "x64", "arm64") for p in record.assets)
        assert record.offloads == (record.name in backends.GPU_BACKENDS)
    cpu = backends.get("cpu")
    assert not cpu.offloads and (cpu.overhead_ram, cpu.overhead_vram) == (0, 0)
    assert backends.get("cuda").memory_in_use is gpus.nvidia_memory_in_use
    assert hardware.BACKENDS == backends.BACKENDS and hardware.GPU_BACKENDS == backends.GPU_BACKENDS


def _release(*names: str) -> releases.Release:
    assets = tuple(
        releases.Asset(name, f"https://example.invalid/{name}", 1000, "sha256:" + "0" * 64) for name in names
    )
    return releases.Release(tag=TAG, assets=assets)


UPSTREAM = (  # one release's asset names, as llama.cpp publishes them
    f"llama-{TAG}-bin-macos-arm64.tar.gz",
    f"llama-{TAG}-bin-macos-x64.tar.gz",
    f"llama-{TAG}-bin-ubuntu-x64.tar.gz",
    f"llama-{TAG}-bin-ubuntu-arm64.tar.gz",
    f"llama-{TAG}-bin-ubuntu-vulkan-x64.tar.gz",
    f"llama-{TAG}-bin-ubuntu-rocm-7.2-x64.tar.gz",
    f"llama-{TAG}-bin-ubuntu-cuda-12.8-x64.tar.gz",
    f"llama-{TAG}-bin-ubuntu-cuda-13.1-x64.tar.gz",
    f"cudart-llama-{TAG}-bin-ubuntu-cuda-12.8-x64.tar.gz",
    f"cudart-llama-{TAG}-bin-ubuntu-cuda-13.1-x64.tar.gz",
    f"llama-{TAG}-bin-ubuntu-sycl-x64.tar.gz",
)


def test_asset_names_map_to_their_backend():
    kinds = {name: releases.classify(name) for name in UPSTREAM}
    assert kinds[f"llama-{TAG}-bin-macos-arm64.tar.gz"].backend == "metal"
    assert kinds[f"llama-{TAG}-bin-macos-x64.tar.gz"].backend == "cpu"
    assert kinds[f"llama-{TAG}-bin-ubuntu-x64.tar.gz"].backend == "cpu"
    assert kinds[f"llama-{TAG}-bin-ubuntu-vulkan-x64.tar.gz"].backend == "vulkan"
    assert kinds[f"llama-{TAG}-bin-ubuntu-rocm-7.2-x64.tar.gz"].backend == "rocm"
    assert releases.classify(f"llama-{TAG}-bin-ubuntu-hip-x64.zip").backend == "rocm"  # the older name
    assert kinds[f"llama-{TAG}-bin-ubuntu-cuda-12.8-x64.tar.gz"].backend == "cuda"
    assert kinds[f"llama-{TAG}-bin-ubuntu-sycl-x64.tar.gz"].backend == "sycl"  # upstream's, not ours


def test_the_registry_chooses_the_release_asset():
    release = _release(*UPSTREAM)
    cuda = releases.choose_asset(release, os="linux", arch="x64", backends=("cuda", "cpu"), cuda_major=12)
    assert cuda.asset.name == f"llama-{TAG}-bin-ubuntu-cuda-12.8-x64.tar.gz" and cuda.backend == "cuda"
    assert [a.name for a in cuda.companions] == [f"cudart-llama-{TAG}-bin-ubuntu-cuda-12.8-x64.tar.gz"]
    newest = releases.choose_asset(release, os="linux", arch="x64", backends=("cuda",), cuda_major=13)
    assert newest.asset.name == f"llama-{TAG}-bin-ubuntu-cuda-13.1-x64.tar.gz"
    rocm = releases.choose_asset(release, os="linux", arch="x64", backends=("rocm", "vulkan"))
    assert rocm.asset.name == f"llama-{TAG}-bin-ubuntu-rocm-7.2-x64.tar.gz"
    arm = releases.choose_asset(release, os="linux", arch="arm64", backends=("vulkan", "cpu"))
    assert arm.asset.name == f"llama-{TAG}-bin-ubuntu-arm64.tar.gz" and arm.backend == "cpu"
    for wanted in ("metal", "cpu"):  # the Mac's one build runs both
        mac = releases.choose_asset(release, os="darwin", arch="arm64", backends=(wanted,))
        assert mac.asset.name == f"llama-{TAG}-bin-macos-arm64.tar.gz" and mac.backend == "metal"


def test_detection_picks_the_backend_in_registry_order(monkeypatch):
    nvidia = Gpu("nvidia", "NVIDIA H200", 141 * 1024 * MIB, 140 * 1024 * MIB, "cuda")
    amd = Gpu("amd", "AMD Radeon RX 7900 XTX", 24 * 1024 * MIB, 24 * 1024 * MIB, "rocm")
    assert backends.detect("darwin", "arm64", []) == ("metal", "cpu")
    assert backends.detect("darwin", "x64", []) == ("cpu",)
    assert backends.detect("linux", "x64", []) == ("cpu",)
    assert backends.detect("linux", "x64", [nvidia])[0] == "cuda"
    monkeypatch.setattr(gpus, "rocm_present", lambda: True)
    monkeypatch.setattr(gpus, "vulkan_present", lambda: True)
    assert backends.detect("linux", "x64", [nvidia, amd]) == ("cuda", "rocm", "vulkan", "cpu")
    assert backends.detect("linux", "x64", [amd]) == ("rocm", "vulkan", "cpu")


def _fake_nvidia_smi(folder, gpu_line: str, apps: str) -> None:
    """A real nvidia-smi stand-in on PATH that prints recorded output for the two queries used."""
    tool = folder / "nvidia-smi"
    tool.write_text(
        "#!/bin/sh\n"
        'case "$1" in\n'
        f"  --query-gpu=*) printf '%s\\n' '{gpu_line}' ;;\n"
        f"  --query-compute-apps=*) printf '{apps}' ;;\n"
        "  *) exit 2 ;;\n"
        "esac\n"
    )
    tool.chmod(0o755)


def test_without_nvml_the_gpu_and_its_memory_come_from_nvidia_smi(tmp_path, monkeypatch):
    _fake_nvidia_smi(tmp_path, "NVIDIA H200, 143771, 140000", "4242, 1536\\n4243, 512\\n999, 70000\\n")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.delenv("AIDEVOPS_HARDWARE_PROFILE", raising=False)
    monkeypatch.delenv("AIDEVOPS_BACKEND", raising=False)
    monkeypatch.setattr(gpus, "_nvml_library", lambda: None)  # a machine without the driver's library
    assert gpus.nvml_process_memory() is None
    hardware._static_probe.cache_clear()
    try:
        hw = hardware.detect()
    finally:
        hardware._static_probe.cache_clear()
    assert hw.best_backend == "cuda" and hw.gpus[0].name == "NVIDIA H200"
    assert backends.memory_in_use([4242, 4243]) == 2048 * MIB
    assert backends.memory_in_use([1]) is None


def test_process_memory_parsing_and_selection():
    assert gpus.parse_smi_processes("12, 100\n13, [N/A]\ngarbage\n 14 , 3 \n") == [(12, 100 * MIB), (14, 3 * MIB)]
    listed = [(1, 10), (2, 20), (3, (1 << 64) - 1)]  # NVML's "not available" is left out
    assert gpus.used_by(listed, [1, 2, 3]) == 30
    assert gpus.used_by(listed, [3]) is None and gpus.used_by([], [1]) is None


class _Nvml:
    """NVML's calling convention for the compute-process query, without a driver: a v2 call only (an older
    driver), answering "insufficient size" with the count first, as the real one does."""

    def __init__(self, processes):
        self.processes = processes

    def nvmlDeviceGetComputeRunningProcesses_v2(self, handle, count_ref, infos):
        count = count_ref._obj
        if infos is None or count.value < len(self.processes):
            count.value = len(self.processes)
            return 7
        for slot, (pid, used) in zip(infos, self.processes, strict=False):
            slot.pid, slot.usedGpuMemory = pid, used
        count.value = len(self.processes)
        return 0


def test_nvml_v3_missing_falls_back_to_v2():
    lib = _Nvml([(4242, 1536 * MIB), (7, 64 * MIB)])
    assert not hasattr(lib, "nvmlDeviceGetComputeRunningProcesses_v3")
    assert gpus._nvml_device_processes(lib, ctypes.c_void_p()) == [(4242, 1536 * MIB), (7, 64 * MIB)]
    assert gpus._nvml_device_processes(_Nvml([]), ctypes.c_void_p()) == []


@pytest.mark.parametrize("name", backends.BACKENDS)
def test_fit_reads_the_overheads_from_the_registry(name):
    from aidevops_local.core.models import fit
    from aidevops_local.core.models.model_shape import guess_shape

    shape = guess_shape(size_bytes=4 << 30)
    record = backends.get(name)
    on_gpu = fit.estimate_memory(shape, ctx=4096, gpu_layers=shape.n_layer + 1, backend=name)
    on_cpu = fit.estimate_memory(shape, ctx=4096, backend="cpu")
    assert on_gpu.overhead_vram == (record.overhead_vram if record.offloads else 0)
    assert on_gpu.overhead_ram - on_cpu.overhead_ram == (record.overhead_ram if record.offloads else 0)
