"""Hardware detection: fast, never crashing on missing tools, reading the platform's own sources, and
replaceable by a profile."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from aidevops_local.core.models import fit
from aidevops_local.core.system import gpus, hardware
from aidevops_local.core.system.errors import ConfigError

GIB = 1 << 30

X86_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD Ryzen 9 7950X 16-Core Processor
flags\t\t: fpu pni ssse3 fma avx f16c avx2 avx512f avx512bw avx512vbmi avx512_vnni avx512_bf16
"""
ARM_CPUINFO = """processor\t: 0
BogoMIPS\t: 48.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp asimddp i8mm sve sve2
CPU implementer\t: 0x41
"""


def test_detect_is_sane_and_probes_once():
    hardware._static_probe.cache_clear()
    hw = hardware.detect()
    assert hw.physical_cores >= 1 and hw.logical_cores >= hw.physical_cores
    assert 0 < hw.memory.available <= hw.memory.total
    assert hw.backends[-1] == "cpu"
    assert hw.ram_bandwidth_gbs > 0
    assert hw.disk_free and hw.disk_free > 0
    hardware.detect()
    probes = hardware._static_probe.cache_info()
    assert (probes.misses, probes.hits) == (1, 1)  # CPU and GPU probes are remembered


def test_cpu_features_x86():
    name, features = hardware._parse_cpuinfo(X86_CPUINFO, "x64")
    assert name.startswith("AMD Ryzen 9 7950X")
    assert {"sse3", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16"} <= set(features)
    assert "neon" not in features


def test_cpu_features_arm():
    _, features = hardware._parse_cpuinfo(ARM_CPUINFO, "arm64")
    assert {"neon", "dotprod", "i8mm", "sve", "sve2", "fp16"} <= set(features)
    assert "avx2" not in features


def test_this_cpu_reports_its_instruction_sets():
    _, features = hardware.cpu_info()
    if hardware.normalized_arch() == "x64":
        assert "sse3" in features  # every x86-64 CPU llama.cpp runs on has it


def _card(root, name, vendor, vram_total=None, vram_used=None, product=None):
    dev = root / name / "device"
    dev.mkdir(parents=True)
    (dev / "vendor").write_text(vendor + "\n")
    (dev / "device").write_text("0x744c\n")
    if vram_total is not None:
        (dev / "mem_info_vram_total").write_text(f"{vram_total}\n")
        (dev / "mem_info_vram_used").write_text(f"{vram_used or 0}\n")
    if product:
        (dev / "product_name").write_text(product + "\n")


def test_amd_and_intel_gpus_from_sysfs(tmp_path):
    _card(tmp_path, "card0", "0x1002", 24 * GIB, 2 * GIB, "AMD Radeon RX 7900 XTX")
    _card(tmp_path, "card1", "0x8086")
    _card(tmp_path, "card2", "0x10de", 8 * GIB)  # NVIDIA is NVML's to report
    (tmp_path / "card0-DP-1").mkdir()  # connectors are not cards
    cards = hardware.drm_gpus(tmp_path)
    assert [g.vendor for g in cards] == ["amd", "intel"]
    amd, intel = cards
    assert amd.vram_total == 24 * GIB and amd.vram_free == 22 * GIB and amd.backend == "rocm"
    assert amd.bandwidth_gbs == 960
    assert intel.vram_total == 0 and intel.backend == "vulkan"


def test_nvidia_smi_is_the_fallback_when_nvml_is_absent(tmp_path, monkeypatch):
    tool = tmp_path / "nvidia-smi"
    tool.write_text("#!/bin/sh\necho 'NVIDIA GeForce RTX 4090, 24564, 23000'\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(gpus, "nvml_gpus", lambda: None)
    (gpu,) = hardware.nvidia_gpus()
    assert gpu.name == "NVIDIA GeForce RTX 4090" and gpu.backend == "cuda"
    assert gpu.vram_total == 24564 << 20 and gpu.vram_free == 23000 << 20
    assert gpu.bandwidth_gbs == 1008
    assert hardware.detect_backends("linux", "x64", [gpu])[0] == "cuda"


def test_missing_or_broken_tools_mean_absent(tmp_path, monkeypatch):
    broken = tmp_path / "nvidia-smi"
    broken.write_text("#!/bin/sh\necho 'garbage, not, numbers'\nexit 0\n")
    broken.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(gpus, "nvml_gpus", lambda: None)
    assert hardware.nvidia_gpus() == []
    monkeypatch.setenv("PATH", "")
    hardware._static_probe.cache_clear()
    try:
        hw = hardware.detect()
    finally:
        hardware._static_probe.cache_clear()
    assert hw.backends[-1] == "cpu"
    assert hardware.drm_gpus(tmp_path / "no-such-dir") == []


def test_free_disk_of_a_folder_not_made_yet(tmp_path):
    assert hardware.free_disk(tmp_path / "a" / "b" / "c") == hardware.free_disk(tmp_path)


def test_apple_silicon_working_set():
    mac = hardware.from_profile(
        {
            "os": "darwin",
            "arch": "arm64",
            "physical_cores": 8,
            "ram_gb": 16,
            "cpu_name": "Apple M2",
            "unified_memory": True,
            "backends": ["metal", "cpu"],
        }
    )
    assert mac.gpu_working_set == int(16 * GIB * 0.67)
    assert mac.ram_bandwidth_gbs == 100
    big = replace(mac, memory=hardware.Memory(64 * GIB, 60 * GIB))
    assert big.gpu_working_set == int(64 * GIB * 0.75)


def test_profile_round_trip_and_environment(tmp_path, monkeypatch):
    hw = hardware.detect()
    path = tmp_path / "machine.json"
    path.write_text(json.dumps(hardware.to_profile(hw)))
    monkeypatch.setenv("AIDEVOPS_HARDWARE_PROFILE", str(path))
    assert replace(hardware.detect(), source="detected") == hw


def test_hand_written_profile_in_gigabytes():
    hw = hardware.from_profile(
        {
            "os": "linux",
            "arch": "x64",
            "physical_cores": 8,
            "ram_gb": 32,
            "backends": ["cuda", "cpu"],
            "gpus": [{"vendor": "nvidia", "name": "NVIDIA GeForce RTX 3090", "vram_gb": 24, "backend": "cuda"}],
        }
    )
    assert hw.memory.total == 32 * GIB and hw.memory.available == 32 * GIB
    assert hw.gpus[0].vram_total == 24 * GIB and hw.gpus[0].bandwidth_gbs == 936
    assert hw.vram_total == 24 * GIB
    assert hw.best_backend == "cuda"


def test_bad_profile_is_a_config_error(tmp_path, monkeypatch):
    with pytest.raises(ConfigError):
        hardware.from_profile({"os": "linux"})
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    monkeypatch.setenv("AIDEVOPS_HARDWARE_PROFILE", str(path))
    with pytest.raises(ConfigError):
        hardware.detect()


@pytest.mark.parametrize(
    "change",
    [
        {"ram_gb": "inf"},
        {"ram_gb": 1e300},
        {"ram_gb": -8},
        {"physical_cores": "x"},
        {"physical_cores": True},
        {"ram_bandwidth_gbs": float("nan")},
        {"gpus": [{"vendor": "nvidia", "name": "RTX 4090", "vram_gb": 24, "vram_free": "lots"}]},
    ],
)
def test_a_profile_with_values_of_the_wrong_kind_is_a_config_error(change):
    """A hand-written profile: text, true/false, infinite or negative numbers are named, not a traceback later."""
    profile = {"os": "linux", "arch": "x64", "physical_cores": 8, "ram_gb": 32} | change
    with pytest.raises(ConfigError) as caught:
        hw = hardware.from_profile(profile)
        fit.estimate_memory(fit.guess_shape(size_bytes=int(4e9)), hardware=hw)  # where a bad value surfaced
    assert "The hardware profile is not valid" in caught.value.message
