"""The lowest macOS a Mach-O program asks for, read from its load commands (no tool needed).

dyld refuses to start a binary whose LC_BUILD_VERSION (or, on builds before macOS 10.14's SDK,
LC_VERSION_MIN_MACOSX) names a newer macOS than the running one. Reading it first lets an install fall back
to an older build, or say what to do, instead of failing with "built for macOS 26.0 which is newer than
running OS". The file comes from the network: every offset and count is checked against what was read, and
anything unexpected reads as "unknown" (None), never as an error.
"""

from __future__ import annotations

import struct
from pathlib import Path

Version = tuple[int, int, int]

_MH_MAGIC, _MH_MAGIC_64 = 0xFEEDFACE, 0xFEEDFACF
_FAT_MAGIC, _FAT_MAGIC_64 = 0xCAFEBABE, 0xCAFEBABF
_LC_VERSION_MIN_MACOSX, _LC_BUILD_VERSION = 0x24, 0x32
_PLATFORM_MACOS = 1
_CPU_TYPES = {"arm64": 0x0100000C, "x64": 0x01000007}
_HEAD_BYTES = 64 << 10  # the load commands of any real program fit well within this
_MAX_FAT_ARCHS = 16  # real universal binaries hold 2-4; Java class files share the magic with huge counts


def minimum_macos(path: Path, *, arch: str) -> Version | None:
    """(major, minor, patch) of the lowest macOS that ``path`` runs on, for a thin binary or the ``arch``
    ("arm64" or "x64") slice of a universal one; None when it is not a Mach-O or names no version."""
    try:
        with open(path, "rb") as f:
            head = f.read(_HEAD_BYTES)
            offset = _slice_offset(head, arch)
            if offset is None:
                return None
            if offset:
                f.seek(offset)
                head = f.read(_HEAD_BYTES)
    except OSError:
        return None
    return _minimum_in_thin(head)


def _slice_offset(head: bytes, arch: str) -> int | None:
    """Where the Mach-O for ``arch`` starts: 0 for a thin file, its offset in a universal one."""
    if len(head) < 8:
        return None
    magic, count = struct.unpack_from(">II", head)
    if magic not in (_FAT_MAGIC, _FAT_MAGIC_64):
        return 0
    if count > _MAX_FAT_ARCHS:
        return None
    entry, layout = (32, ">iiQQII") if magic == _FAT_MAGIC_64 else (20, ">iiIII")
    wanted = _CPU_TYPES.get(arch)
    for index in range(count):
        start = 8 + index * entry
        if start + entry > len(head):
            return None
        cputype, _subtype, offset, *_ = struct.unpack_from(layout, head, start)
        if cputype == wanted and offset > 0:
            return offset
    return None


def _minimum_in_thin(head: bytes) -> Version | None:
    if len(head) < 28:
        return None
    (raw_magic,) = struct.unpack_from("<I", head)
    if raw_magic in (_MH_MAGIC, _MH_MAGIC_64):
        order = "<"
    elif struct.unpack_from(">I", head)[0] in (_MH_MAGIC, _MH_MAGIC_64):
        order = ">"
    else:
        return None
    (magic,) = struct.unpack_from(order + "I", head)
    ncmds, sizeofcmds = struct.unpack_from(order + "II", head, 16)
    position = 32 if magic == _MH_MAGIC_64 else 28
    end = min(len(head), position + sizeofcmds)
    for _ in range(ncmds):
        if position + 8 > end:
            return None
        cmd, size = struct.unpack_from(order + "II", head, position)
        if size < 8 or position + size > end:
            return None
        if cmd == _LC_BUILD_VERSION and size >= 24:
            platform, minos = struct.unpack_from(order + "II", head, position + 8)
            if platform == _PLATFORM_MACOS:
                return _decoded(minos)
        elif cmd == _LC_VERSION_MIN_MACOSX and size >= 16:
            (version,) = struct.unpack_from(order + "I", head, position + 8)
            return _decoded(version)
        position += size
    return None


def _decoded(packed: int) -> Version:
    """Apple packs X.Y.Z as xxxx.yy.zz in one 32-bit number."""
    return packed >> 16, (packed >> 8) & 0xFF, packed & 0xFF


def shown(version: Version) -> str:
    """26.0, 13.3, 10.15.7: as Apple writes it."""
    major, minor, patch = version
    return f"{major}.{minor}.{patch}" if patch else f"{major}.{minor}"
