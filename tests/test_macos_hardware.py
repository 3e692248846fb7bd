"""The machine as macOS describes it, faked: performance cores for the threads, Intel Macs' CPU flags, the
GPU's working set of unified memory, and free memory the way macOS counts it. Linux keeps psutil's figures."""

from __future__ import annotations

import sys
import types

import psutil
import pytest

from aidevops_local.core.serving import launch
from aidevops_local.core.system import hardware, mac_memory
from tests.macos_fakes import fake_mac
from tests.serving import serving_settings

GIB, MIB = 1 << 30, 1 << 20

INTEL_MAC_SYSCTL = (  # `sysctl machdep.cpu hw.optional` on an Intel Mac, shortened
    "machdep.cpu.brand_string: Intel(R) Core(TM) i9-9980HK CPU @ 2.40GHz\n"
    "machdep.cpu.features: FPU VME DE PSE TSC MSR PAE MCE CX8 APIC SEP MTRR PGE MCA CMOV PAT PSE36 CLFSH DS ACPI "
    "MMX FXSR SSE SSE2 SS HTT TM PBE SSE3 PCLMULQDQ DTES64 MON DSCPL VMX EST TM2 SSSE3 FMA CX16 TPR PDCM SSE4.1 "
    "SSE4.2 x2APIC MOVBE POPCNT AES PCID XSAVE OSXSAVE SEGLIM64 TSCTMR AVX1.0 RDRAND F16C\n"
    "machdep.cpu.leaf7_features: RDWRFSGS TSC_THREAD_OFFSET SGX BMI1 AVX2 SMEP BMI2 ERMS INVPCID FPU_CSDS AVX512F "
    "AVX512DQ AVX512CD AVX512BW AVX512VL AVX512VBMI AVX512VNNI MDCLEAR IBRS STIBP L1DF SSBD\n"
    "hw.optional.avx1_0: 1\nhw.optional.avx2_0: 1\n"
)

VM_STAT = """Mach Virtual Memory Statistics: (page size of 16384 bytes)
Pages free:                               12000.
Pages active:                            300000.
Pages inactive:                          290000.
Pages speculative:                         9000.
Pages throttled:                              0.
Pages wired down:                        150000.
Pages purgeable:                          20000.
"Translation faults":                 912345678.
Pages copy-on-write:                   12345678.
Pages zero filled:                    456789012.
Pages reactivated:                      1234567.
Pages purged:                            654321.
File-backed pages:                       280000.
Anonymous pages:                         319000.
Pages stored in compressor:              210000.
Pages occupied by compressor:             70000.
Decompressions:                         1234567.
Compressions:                           2345678.
Pageins:                                3456789.
Pageouts:                                 12345.
Swapins:                                      0.
Swapouts:                                     0.
"""


@pytest.fixture
def mac(monkeypatch, tmp_path):
    """A faked Apple Silicon Mac that detect() probes itself (no profile)."""
    return fake_mac(monkeypatch, tmp_path, profile=False)


# --- threads --------------------------------------------------------------------------------------------------


def test_threads_are_the_performance_cores_on_apple_silicon(mac, monkeypatch):
    monkeypatch.setattr(psutil, "cpu_count", lambda logical=True: 12)  # 8 performance + 4 efficiency
    mac.sysctl.update({"hw.perflevel0.physicalcpu": 8, "hw.perflevel1.physicalcpu": 4, "hw.nperflevels": 2})
    hw = hardware.detect()
    assert hw.physical_cores == 12 and hw.performance_cores == 8 and hw.threads == 8


def test_without_performance_levels_the_threads_are_the_physical_cores(mac, monkeypatch):
    monkeypatch.setattr(psutil, "cpu_count", lambda logical=True: 4)  # an Intel Mac, or an older macOS
    hw = hardware.detect()
    assert hw.performance_cores == 0 and hw.threads == 4


def test_a_launch_on_apple_silicon_uses_the_performance_cores(
    system_runtime, tiny_gguf, tmp_path, monkeypatch, free_port
):
    profile = tmp_path / "m2pro.json"
    profile.write_text(
        '{"os": "darwin", "arch": "arm64", "physical_cores": 12, "performance_cores": 8, '
        '"ram_gb": 16, "cpu_name": "Apple M2 Pro", "unified_memory": true, '
        '"backends": ["metal", "cpu"]}'
    )
    monkeypatch.setenv("AIDEVOPS_HARDWARE_PROFILE", str(profile))
    serving_settings(threads=0)  # 0: the machine decides
    argv = launch.plan_launch(str(tiny_gguf), port=free_port()).argv
    assert argv[argv.index("--threads") + 1] == "8"


# --- CPU flags of Intel Macs ------------------------------------------------------------------------------------


def test_intel_mac_flags_read_as_llama_cpp_names_them(monkeypatch, tmp_path):
    fake_mac(monkeypatch, tmp_path, arch="x64", profile=False)
    (tmp_path / "sysctl.out").write_text(INTEL_MAC_SYSCTL)
    tool = tmp_path / "sysctl"
    tool.write_text(f"#!/bin/sh\nexec /bin/cat '{tmp_path / 'sysctl.out'}'\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    name, features = hardware.cpu_info("darwin")
    assert name.startswith("Intel(R) Core(TM) i9")
    assert {"sse3", "ssse3", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vbmi", "avx512_vnni"} <= set(
        features
    )


# --- the GPU's share of unified memory -------------------------------------------------------------------------


def test_the_users_wired_limit_is_the_gpu_working_set(mac):
    mac.sysctl["iogpu.wired_limit_mb"] = 1024
    hw = hardware.detect()
    assert hw.unified_memory and hw.gpu_working_set == 1024 * MIB
    assert mac_memory.gpu_working_set(16 * GIB).source == "iogpu.wired_limit_mb"
    mac.sysctl["iogpu.wired_limit_mb"] = 0  # macOS's default: read what Metal says instead
    assert mac_memory.gpu_working_set(16 * GIB).source == "estimate"
    mac.sysctl["debug.iogpu.wired_limit"] = 12 * GIB  # macOS 13 named it so, in bytes
    assert mac_memory.gpu_working_set(16 * GIB) == mac_memory.WorkingSet(12 * GIB, "debug.iogpu.wired_limit")


class DeviceWithProperty:
    recommendedMaxWorkingSetSize = 11453 * MIB  # noqa: N815 - Metal's name


class DeviceWithMethod:  # how rubicon answers when the device's class does not declare the property
    def recommendedMaxWorkingSetSize(self):  # noqa: N802 - Metal's name
        return 11453 * MIB


@pytest.mark.parametrize("Device", [DeviceWithProperty, DeviceWithMethod])
def test_metals_recommended_working_set_through_rubicon(mac, monkeypatch, Device):  # noqa: N803
    calls = []

    class Metal:
        @staticmethod
        def MTLCreateSystemDefaultDevice():  # noqa: N802 - Metal's name
            calls.append("create")
            return 0x6000_0000

    objc = types.ModuleType("rubicon.objc")
    objc.ObjCInstance = lambda pointer: Device() if pointer == 0x6000_0000 else None
    runtime_module = types.ModuleType("rubicon.objc.runtime")
    runtime_module.load_library = lambda name: Metal() if name == "Metal" else None
    runtime_module.objc_id = object
    for name, module in (
        ("rubicon", types.ModuleType("rubicon")),
        ("rubicon.objc", objc),
        ("rubicon.objc.runtime", runtime_module),
    ):
        monkeypatch.setitem(sys.modules, name, module)
    found = mac_memory.gpu_working_set(16 * GIB)
    assert found == mac_memory.WorkingSet(11453 * MIB, "Metal") and calls == ["create"]
    assert hardware.detect().gpu_working_set == 11453 * MIB


def test_without_rubicon_the_working_set_comes_from_list_devices(mac, tmp_path):
    server = tmp_path / "llama-server"
    server.write_text("#!/bin/sh\necho 'Available devices:'\necho '  MTL0: Apple M2 (10922 MiB, 10922 MiB free)'\n")
    server.chmod(0o755)
    assert mac_memory.gpu_working_set(16 * GIB, server=server) == mac_memory.WorkingSet(
        10922 * MIB, "llama-server --list-devices"
    )
    # detect() is told the server by its caller (hardware sits below the runtime that finds it).
    assert hardware.detect(server=server).gpu_working_set == 10922 * MIB
    server.write_text("#!/bin/sh\necho 'Available devices:'\n")  # no Metal device listed: the usual share
    assert mac_memory.gpu_working_set(16 * GIB, server=server) == mac_memory.WorkingSet(
        int(16 * GIB * 0.67), "estimate"
    )
    assert mac_memory.parse_list_devices("  Metal: Apple M1 Max (49152 MiB, 49151 MiB free)") == 49152 * MIB


# --- free memory, the way macOS counts it -----------------------------------------------------------------------


def test_free_memory_on_macos_is_the_kernels_memory_status_level(mac):
    mac.sysctl["kern.memorystatus_level"] = 63  # what `memory_pressure` prints as "free percentage"
    total = psutil.virtual_memory().total
    assert hardware.memory().available == total * 63 // 100


def test_vm_stat_pages_give_what_activity_monitor_shows(mac, monkeypatch):
    total = 16 * GIB
    app = (319000 - 20000) * 16384
    expected = total - app - 150000 * 16384 - 70000 * 16384
    assert mac_memory.available_from_vm_stat(VM_STAT, total) == expected
    assert mac_memory.available_from_vm_stat("garbage", total) is None
    monkeypatch.setattr(mac_memory, "_vm_stat", lambda: VM_STAT)  # no memorystatus level: vm_stat's pages
    assert mac_memory.available(total, fallback=1) == expected


def test_linux_memory_is_psutils(monkeypatch):
    def not_here(*args, **kwargs):
        raise AssertionError("macOS figures read on Linux")

    monkeypatch.setattr(mac_memory, "available", not_here)
    found = hardware.memory()
    assert 0 < found.available <= found.total == psutil.virtual_memory().total
