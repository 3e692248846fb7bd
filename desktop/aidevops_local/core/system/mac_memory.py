"""Memory the way macOS means it: the GPU's share of unified memory, and how much is free.

The GPU's share (Metal's recommendedMaxWorkingSetSize) depends on the macOS version and the Mac's size,
and a user can raise it with `sudo sysctl iogpu.wired_limit_mb=N`, which Metal then reports. It is read,
in order: the user's limit when set; Metal itself through rubicon-objc (in the app's bundle and the gui
extra, so imported lazily); `llama-server --list-devices`, which prints what Metal reports; and last the
usual default share of RAM.

Free memory: psutil's ``available`` on macOS is free plus inactive pages, which leaves out file cache and
purgeable memory that macOS hands back at once, so a healthy Mac looks full. The kernel's own figure is
``kern.memorystatus_level`` (the percentage `memory_pressure` prints as "System-wide memory free
percentage"); without it, vm_stat's pages give what Activity Monitor shows: total minus app memory (anonymous
pages less purgeable ones), wired and compressed memory.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import macos

_LIST_DEVICES_LINE = re.compile(r"^\s*(?:Metal|MTL\d*):.*\((\d+) MiB, \d+ MiB free\)", re.MULTILINE)
_VM_STAT_PAGE = re.compile(r"page size of (\d+) bytes")
_VM_STAT_LINE = re.compile(r'^"?([^:"]+)"?:\s+(\d+)\.?$', re.MULTILINE)


@dataclass(frozen=True)
class WorkingSet:
    bytes: int
    source: str  # "iogpu.wired_limit_mb" (or macOS 13's "debug.iogpu.wired_limit"), "Metal",
    # "llama-server --list-devices" or "estimate"


def default_share(total: int) -> int:
    """macOS's usual recommendedMaxWorkingSetSize: about 2/3 of RAM up to 36 GB, 3/4 above."""
    return int(total * (0.67 if total <= 36 * 2**30 else 0.75))


def gpu_working_set(total: int, *, server: Path | None = None) -> WorkingSet:
    """How much of the unified memory Metal lets one process use."""
    limit_mb = macos.sysctl_int("iogpu.wired_limit_mb") or 0
    if limit_mb > 0:  # 0 means "macOS's default"
        return WorkingSet(min(limit_mb << 20, total), "iogpu.wired_limit_mb")
    limit = macos.sysctl_int("debug.iogpu.wired_limit") or 0  # macOS 13's name for it, in bytes
    if limit > 0:
        return WorkingSet(min(limit, total), "debug.iogpu.wired_limit")
    metal = _metal_working_set()
    if metal > 0:
        return WorkingSet(metal, "Metal")
    listed = _listed_working_set(server) if server else 0
    if listed > 0:
        return WorkingSet(listed, "llama-server --list-devices")
    return WorkingSet(default_share(total), "estimate")


def _metal_working_set() -> int:
    """MTLDevice.recommendedMaxWorkingSetSize, through rubicon-objc where it is installed; 0 otherwise."""
    if not macos.on_macos():
        return 0
    try:
        from rubicon.objc import ObjCInstance
        from rubicon.objc.runtime import load_library, objc_id
    except ImportError:
        return 0
    try:
        metal = load_library("Metal")
        metal.MTLCreateSystemDefaultDevice.restype = objc_id
        metal.MTLCreateSystemDefaultDevice.argtypes = []
        pointer = metal.MTLCreateSystemDefaultDevice()
        if not pointer:
            return 0
        value = ObjCInstance(pointer).recommendedMaxWorkingSetSize
        # A protocol property that the device's private class does not declare comes back as a method.
        return int(value() if callable(value) else value)
    except Exception:  # noqa: BLE001 - any failure of a foreign bridge means "not known here"
        return 0


def _listed_working_set(server: Path) -> int:
    try:
        done = subprocess.run(
            [str(server), "--list-devices"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=server.parent,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return 0
    return parse_list_devices((done.stdout or "") + (done.stderr or ""))


def parse_list_devices(text: str) -> int:
    """The Metal device's memory in bytes from `llama-server --list-devices` ("MTL0: Apple M2 Pro (21845
    MiB, 21844 MiB free)"); 0 when no Metal device is listed."""
    match = _LIST_DEVICES_LINE.search(text)
    return int(match.group(1)) << 20 if match else 0


def available(total: int, fallback: int) -> int:
    """Bytes a new program can have without pushing macOS into swapping; ``fallback`` (psutil's figure)
    when macOS says nothing."""
    level = macos.sysctl_int("kern.memorystatus_level")
    if level is not None and 0 < level <= 100:
        return total * level // 100
    from_pages = available_from_vm_stat(_vm_stat(), total)
    return from_pages if from_pages is not None else fallback


def _vm_stat() -> str:
    if not macos.on_macos() or shutil.which("vm_stat") is None:
        return ""
    try:
        done = subprocess.run(["vm_stat"], capture_output=True, text=True, timeout=2, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout if done.returncode == 0 else ""


def available_from_vm_stat(text: str, total: int) -> int | None:
    """Total less what Activity Monitor calls Memory Used (app memory, wired, compressed)."""
    page = _VM_STAT_PAGE.search(text)
    pages = {name.strip().lower(): int(count) for name, count in _VM_STAT_LINE.findall(text)}
    needed = ("pages wired down", "anonymous pages", "pages purgeable", "pages occupied by compressor")
    if not page or any(key not in pages for key in needed):
        return None
    app = max(0, pages["anonymous pages"] - pages["pages purgeable"])
    used = (app + pages["pages wired down"] + pages["pages occupied by compressor"]) * int(page.group(1))
    return max(0, min(total, total - used))
