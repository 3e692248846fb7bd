"""What macOS itself says about this Mac: its version, whether this process runs under Rosetta, the
performance cores, and Gatekeeper's quarantine mark on a file.

sysctl values are read in-process with sysctlbyname (libc, through ctypes): ``sysctl.proc_translated``
describes the process that asks, so a `sysctl` child process (a native arm64 program) would answer for
itself, not for us. Off macOS everything here reads as absent.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
import shlex
from functools import lru_cache
from pathlib import Path

from .macho import Version

QUARANTINE = "com.apple.quarantine"


def on_macos() -> bool:
    return platform.system() == "Darwin"


@lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        return ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None


def _sysctlbyname(name: str) -> bytes | None:
    """The raw value of a sysctl, or None where it does not exist (or this is not macOS)."""
    libc = _libc() if on_macos() else None
    if libc is None or not hasattr(libc, "sysctlbyname"):
        return None
    call = libc.sysctlbyname
    call.argtypes = [
        ctypes.c_char_p,
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_size_t),
        ctypes.c_void_p,
        ctypes.c_size_t,
    ]
    size = ctypes.c_size_t(0)
    if call(name.encode(), None, ctypes.byref(size), None, 0) != 0 or not size.value:
        return None
    buffer = ctypes.create_string_buffer(size.value)
    if call(name.encode(), buffer, ctypes.byref(size), None, 0) != 0:
        return None
    return buffer.raw[: size.value]


def sysctl_int(name: str) -> int | None:
    raw = _sysctlbyname(name)
    if raw is None or len(raw) not in (4, 8):
        return None
    return int.from_bytes(raw, "little", signed=True)  # every Mac is little-endian


def sysctl_str(name: str) -> str | None:
    raw = _sysctlbyname(name)
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace") if raw is not None else None


def parse_version(text: str) -> Version | None:
    parts = text.strip().split(".")
    try:
        numbers = [int(p) for p in parts[:3]]
    except ValueError:
        return None
    if not numbers or not text.strip():
        return None
    return (*numbers, 0, 0)[:3]  # type: ignore[return-value]


def running_version() -> Version | None:
    """The macOS this Mac runs, e.g. (15, 1, 0); None off macOS."""
    if not on_macos():
        return None
    found = parse_version(platform.mac_ver()[0])
    if found is None or found[:2] == (10, 16):
        # 10.16 is the compatibility answer some builds get on macOS 11 and later; the kernel knows better.
        found = parse_version(sysctl_str("kern.osproductversion") or "") or found
    return found


def under_rosetta() -> bool:
    """This (Intel) process is translated by Rosetta on an Apple Silicon Mac."""
    return on_macos() and sysctl_int("sysctl.proc_translated") == 1


ROSETTA_MESSAGE = (
    "This copy of aidevops-local is the Intel build running under Rosetta on an Apple Silicon "
    "Mac, so it sees an Intel CPU and no Metal GPU."
)
ROSETTA_HINT = (
    "Use the Apple Silicon app (or a native arm64 Python: `python3 -c 'import platform; "
    "print(platform.machine())'` must print arm64), then run the command again."
)


def performance_cores() -> int:
    """Apple Silicon's performance cores (what llama.cpp itself counts for its default threads); 0 where
    macOS does not say (Intel Macs, older systems) or this is not a Mac."""
    count = sysctl_int("hw.perflevel0.physicalcpu") if on_macos() else None
    return count if count and count > 0 else 0


# ---- Gatekeeper's quarantine mark ------------------------------------------------------------------------


def _getxattr(path: Path, name: str) -> bytes | None:
    """An extended attribute through libc (os.getxattr does not exist on macOS); None when absent."""
    libc = _libc() if on_macos() else None
    if libc is None or not hasattr(libc, "getxattr"):
        return None
    call = libc.getxattr  # macOS: (path, name, value, size, position, options)
    call.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint32, ctypes.c_int]
    call.restype = ctypes.c_ssize_t
    size = call(str(path).encode(), name.encode(), None, 0, 0, 0)
    if size < 0:  # ENOATTR: not there (any other failure: we cannot tell, so we do not claim it)
        return None
    buffer = ctypes.create_string_buffer(max(1, size))
    size = call(str(path).encode(), name.encode(), buffer, size, 0, 0)
    return buffer.raw[:size] if size >= 0 else None


def quarantined(path: Path) -> bool:
    return on_macos() and _getxattr(path, QUARANTINE) is not None


def quarantined_files(server: Path) -> list[Path]:
    """The program and the libraries beside it that carry the mark: Gatekeeper stops the program when any
    of them does (a build unpacked from a browser download carries it on every file)."""
    if not on_macos():
        return []
    candidates = [server]
    try:
        candidates += sorted(p for p in server.parent.glob("*.dylib") if p.is_file())
    except OSError:
        pass
    return [p for p in candidates if quarantined(p)]


def quarantine_hint(files: list[Path]) -> str:
    if len(files) == 1:
        command = f"xattr -d {QUARANTINE} {shlex.quote(str(files[0]))}"
    else:
        command = f"xattr -dr {QUARANTINE} {shlex.quote(str(files[0].parent))}"
    return (
        f"If you trust where it came from, clear the mark with `{command}` and run the command again; "
        "or install Homebrew's llama.cpp (`brew install llama.cpp`), which is not quarantined."
    )
