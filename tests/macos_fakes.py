"""A Mac, faked where no Mac is: platform answers, sysctl values, extended attributes, and Mach-O programs
built byte by byte the way Apple's linker lays them out."""

from __future__ import annotations

import functools
import io
import json
import platform
import struct
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from aidevops_local.core.system import hardware, macos

MH_MAGIC_64, FAT_MAGIC, FAT_MAGIC_64 = 0xFEEDFACF, 0xCAFEBABE, 0xCAFEBABF
CPU_ARM64, CPU_X86_64 = 0x0100000C, 0x01000007
LC_SEGMENT_64, LC_BUILD_VERSION, LC_VERSION_MIN_MACOSX = 0x19, 0x32, 0x24


def packed(version: tuple[int, int, int]) -> int:
    major, minor, patch = version
    return major << 16 | minor << 8 | patch


def macho_program(
    minos: tuple[int, int, int] | None = (26, 0, 0),
    *,
    cputype: int = CPU_ARM64,
    order: str = "<",
    old_style: bool = False,
    platform_id: int = 1,
) -> bytes:
    """A thin 64-bit executable: a __PAGEZERO segment, then the version command (or none)."""
    segment = struct.pack(order + "II16sQQQQiiII", LC_SEGMENT_64, 72, b"__PAGEZERO", 0, 1 << 32, 0, 0, 0, 0, 0, 0)
    commands = [segment]
    if minos is not None and old_style:
        commands.append(struct.pack(order + "IIII", LC_VERSION_MIN_MACOSX, 16, packed(minos), packed(minos)))
    elif minos is not None:  # one tool (ld) after the fixed part, as the linker writes it
        commands.append(
            struct.pack(
                order + "IIIIIIII", LC_BUILD_VERSION, 32, platform_id, packed(minos), packed(minos), 1, 3, 0x04CE0100
            )
        )
    body = b"".join(commands)
    header = struct.pack(order + "IiiIIIII", MH_MAGIC_64, cputype, 3, 2, len(commands), len(body), 0x00200085, 0)
    return header + body + b"\0" * 256


def universal(slices: dict[int, bytes], *, wide: bool = False) -> bytes:
    """A fat file: big-endian header and arch table, each slice at a 16 KiB boundary."""
    entry = 32 if wide else 20
    offset = 0x4000
    table, payload = b"", b""
    for cputype, data in slices.items():
        start = offset + len(payload)
        if wide:
            table += struct.pack(">iiQQII", cputype, 0, start, len(data), 14, 0)
        else:
            table += struct.pack(">iiIII", cputype, 0, start, len(data), 14)
        payload += data + b"\0" * (-len(data) % 0x4000)
    header = struct.pack(">II", FAT_MAGIC_64 if wide else FAT_MAGIC, len(slices)) + table
    assert len(header) <= offset and entry
    return header + b"\0" * (offset - len(header)) + payload


def macos_release_archive(dest: Path, tag: str, server: bytes) -> Path:
    """A macOS release asset (llama-<tag>-bin-macos-arm64.tar.gz) holding ``server`` as its llama-server."""
    out = dest / f"llama-{tag}-bin-macos-arm64.tar.gz"
    with tarfile.open(out, "w:gz") as tar:
        for name, data in ((f"llama-{tag}/llama-server", server), (f"llama-{tag}/libggml.dylib", b"\xcf\xfa")):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return out


@dataclass
class FakeMac:
    """What the faked Mac answers; tests change the dictionaries as they go."""

    sysctl: dict[str, int | str] = field(default_factory=dict)
    xattrs: dict[tuple[str, str], bytes] = field(default_factory=dict)
    version: str = "15.1"

    def quarantine(self, path: Path) -> None:
        self.xattrs[(str(path), macos.QUARANTINE)] = b"0083;674f0a2b;Safari;6B1C0E4F-3E7A-4F43-A8B4-1C9B0E0D5F21"

    def read_sysctl(self, name: str) -> bytes | None:
        value = self.sysctl.get(name)
        if value is None:
            return None
        if isinstance(value, str):
            return value.encode() + b"\0"
        return struct.pack("<q" if abs(value) >= 2**31 or name == "hw.memsize" else "<i", value)


def fake_mac(monkeypatch, tmp_path: Path, *, arch: str = "arm64", profile: bool = True) -> FakeMac:
    """Make this process see a Mac. With ``profile``, hardware.detect() reads a matching profile (so the
    install picks the macOS asset); without, detect() probes through the faked platform itself."""
    mac = FakeMac()
    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    monkeypatch.setattr(platform, "machine", lambda: "arm64" if arch == "arm64" else "x86_64")
    monkeypatch.setattr(platform, "mac_ver", lambda: (mac.version, ("", "", ""), platform.machine()))
    monkeypatch.setattr(macos, "_sysctlbyname", mac.read_sysctl)
    monkeypatch.setattr(macos, "_getxattr", lambda path, name: mac.xattrs.get((str(path), name)))
    # A probe cache of its own for the faked Mac; the real one comes back untouched afterwards.
    monkeypatch.setattr(hardware, "_static_probe", functools.lru_cache(maxsize=1)(hardware._static_probe.__wrapped__))
    if profile:
        path = tmp_path / "mac.json"
        path.write_text(
            json.dumps(
                {
                    "os": "darwin",
                    "arch": arch,
                    "physical_cores": 8,
                    "ram_gb": 16,
                    "cpu_name": "Apple M2",
                    "unified_memory": arch == "arm64",
                    "backends": ["metal", "cpu"] if arch == "arm64" else ["cpu"],
                }
            )
        )
        monkeypatch.setenv("AIDEVOPS_HARDWARE_PROFILE", str(path))
    return mac
