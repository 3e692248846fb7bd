"""The llama.cpp runtime: install an official release (or adopt the system's llama-server), update, roll back.

What is installed and the safe swap of build folders live in installed.py; fetching and checking a build in
builds.py. Nothing changes on disk unless a new build downloads, verifies and runs.
"""

from __future__ import annotations

import os
import shutil
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..system import config, hardware, macos
from ..system.errors import NotFound, Refused, RuntimeNotInstalled, VerificationFailed
from ..system.progress import ProgressCallback, check_cancelled, report
from . import releases
from .builds import (
    HOMEBREW_HINT,
    build_from_version,
    check_server_runs,
    fetch_build,
    is_llama_version,
    macos_gap,
    newest_build_for_this_macos,
    too_new,
)
from .installed import (
    SERVER,
    InstalledRuntime,
    activate,
    disk_full_is_ours,
    find_llama_server,
    install_session,
    installed_runtime,
    load_manifest,
    locked,
    previous_runtime,
    recover,
    swap_dir,
    write_manifest,
)

__all__ = [
    "SERVER",
    "InstalledRuntime",
    "RollbackResult",
    "UpdateCheck",
    "UpdateResult",
    "check_server_runs",
    "check_update",
    "find_llama_server",
    "install_release",
    "installed_runtime",
    "previous_runtime",
    "rollback",
    "update",
    "use_system",
]


@dataclass(frozen=True)
class UpdateCheck:
    installed: InstalledRuntime | None
    latest_tag: str
    latest_build: int | None
    update_available: bool


@dataclass(frozen=True)
class UpdateResult:
    updated: bool
    runtime: InstalledRuntime
    replaced: InstalledRuntime | None  # the build that is now the previous one


@dataclass(frozen=True)
class RollbackResult:
    runtime: InstalledRuntime  # active now
    previous: InstalledRuntime | None  # the build rolled away from, kept as previous


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def install_release(
    *,
    tag: str | None = None,
    backend: str = "auto",
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    insecure_skip_checksum: bool = False,
    force: bool = False,
) -> InstalledRuntime:
    """Install the official llama.cpp build for this machine (the latest release, or ``tag``).

    ``backend`` "auto" takes the best backend the hardware has that the release ships. The build it
    replaces becomes the previous one. Nothing changes unless the whole download verifies and runs. On a
    Mac, a latest build that needs a newer macOS gives way to the newest older one that runs here."""
    hw = hardware.detect()
    _refuse_under_rosetta(hw)
    backends = hw.backends if backend == "auto" else (backend,)
    release = releases.fetch_release(tag=tag)
    selection = releases.choose_asset(release, os=hw.os, arch=hw.arch, backends=backends)
    current = installed_runtime()
    if (
        not force
        and current
        and current.source == "release"
        and current.asset == selection.asset.name
        and Path(current.server_path).is_file()
    ):
        return current
    return _install_selection(
        release,
        selection,
        progress=progress,
        cancel=cancel,
        insecure_skip_checksum=insecure_skip_checksum,
        fallback=tag is None,
        keep=None if force else current,
    )


def _refuse_under_rosetta(hw: hardware.Hardware) -> None:
    if hw.os == "darwin" and macos.under_rosetta():
        raise Refused(
            macos.ROSETTA_MESSAGE + " It would install the Intel, CPU-only llama.cpp instead of the Metal build.",
            hint=f"{macos.ROSETTA_HINT} Or: {HOMEBREW_HINT}.",
        )


def _install_selection(
    release: releases.Release,
    selection: releases.Selection,
    *,
    progress: ProgressCallback | None,
    cancel: threading.Event | None,
    insecure_skip_checksum: bool,
    fallback: bool = False,
    newer_than: int | None = None,
    keep: InstalledRuntime | None = None,
) -> InstalledRuntime:
    """Download, check and activate one build. ``fallback``: on a Mac whose macOS is too old for it, take
    the newest older release that runs here instead (only builds newer than ``newer_than``, for updates);
    when that is the build already active (``keep``), it stays as it is and the previous one is kept."""
    p = config.paths()
    fetch = {"progress": progress, "cancel": cancel, "insecure_skip_checksum": insecure_skip_checksum}
    with disk_full_is_ours(f"installing llama.cpp {release.tag}"), install_session(p) as work:
        build = fetch_build(release, selection, work / "build", **fetch)
        gap = macos_gap(build)
        if gap is not None:
            if not fallback:
                raise too_new(build, *gap, searched=0, updating=newer_than is not None)
            build = newest_build_for_this_macos(build, *gap, work=work, newer_than=newer_than, **fetch)
            if (
                keep is not None
                and keep.source == "release"
                and keep.asset == build.selection.asset.name
                and Path(keep.server_path).is_file()
            ):
                return keep
        report(progress, f"Checking {SERVER}", 0, None)
        version = check_server_runs(build.server)
        runtime = InstalledRuntime(
            tag=build.release.tag,
            build=build.release.build,
            backend=build.selection.backend,
            asset=build.selection.asset.name,
            sha256=build.download.sha256,
            installed_at=_now(),
            version=version,
            source="release",
            server_path=SERVER,
            verified=build.download.verified,
        )
        write_manifest(build.server_dir, p.runtime_manifest.name, runtime)
        check_cancelled(cancel)
        activate(p, build.server_dir, work)
    return installed_runtime()


def use_system(*, path: Path | None = None) -> InstalledRuntime:
    """Record a llama-server that is already installed (Homebrew, the distribution, a build of one's own)
    instead of downloading one. It becomes the active runtime; the build it replaces becomes previous."""
    found = path or (Path(which) if (which := shutil.which(SERVER)) else None)
    if found is None:
        raise RuntimeNotInstalled(
            f"There is no {SERVER} on PATH.",
            hint="Install llama.cpp (for example `brew install llama.cpp`), or run "
            "`aidevops-local install` for an official build.",
        )
    server = Path(os.path.abspath(found))
    if not server.is_file():
        raise RuntimeNotInstalled(f"{server} is not a file.", hint=f"Name the {SERVER} program itself.")
    named = f"Name the {SERVER} program of a llama.cpp install that works here."
    version = check_server_runs(server, hint=named)
    if not is_llama_version(version):  # it ran, but it is some other program
        raise VerificationFailed(
            f"{server} is not {SERVER}: its --version printed no llama.cpp version line.", hint=named
        )
    p = config.paths()
    with disk_full_is_ours(f"recording {server}"), install_session(p) as work:
        staging = work / "staging"
        staging.mkdir()
        build = build_from_version(version)
        runtime = InstalledRuntime(
            tag=None,
            build=build,
            backend="system",
            asset=None,
            sha256=None,
            installed_at=_now(),
            version=version,
            source="system",
            server_path=str(server),
        )
        write_manifest(staging, p.runtime_manifest.name, runtime)
        activate(p, staging, work)
    return installed_runtime()


def check_update() -> UpdateCheck:
    installed = installed_runtime()
    latest = releases.fetch_release()
    available = installed is None or (
        latest.build is not None and (installed.build is None or latest.build > installed.build)
    )
    return UpdateCheck(
        installed=installed, latest_tag=latest.tag, latest_build=latest.build, update_available=available
    )


def update(
    *,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    insecure_skip_checksum: bool = False,
) -> UpdateResult:
    """Install the latest release with the installed build's backend, keeping the current one as previous."""
    hw = hardware.detect()
    _refuse_under_rosetta(hw)  # it would swap the Metal build for the Intel one
    installed = installed_runtime()
    if installed is None:
        raise RuntimeNotInstalled(
            "llama.cpp is not installed, so there is nothing to update.", hint="Run `aidevops-local install`."
        )
    if installed.source == "system":
        raise Refused(
            f"The active llama-server is the system's ({installed.server_path}).",
            hint="Update it with the package manager that installed it, or run "
            "`aidevops-local install` to switch to an official build.",
        )
    latest = releases.fetch_release()
    if latest.build is not None and installed.build is not None and latest.build <= installed.build:
        return UpdateResult(updated=False, runtime=installed, replaced=None)
    selection = releases.choose_asset(latest, os=hw.os, arch=hw.arch, backends=(installed.backend,))
    runtime = _install_selection(
        latest,
        selection,
        progress=progress,
        cancel=cancel,
        insecure_skip_checksum=insecure_skip_checksum,
        fallback=True,
        newer_than=installed.build,
    )
    return UpdateResult(updated=True, runtime=runtime, replaced=installed)


def rollback() -> RollbackResult:
    """Make the previous build active again; the build rolled away from becomes the previous one."""
    p = config.paths()
    with locked(p.app_dir / "install.lock", wait=False), locked(p.app_dir / "swap.lock", wait=True):
        recover(p)
        if load_manifest(p.previous_bin_dir, p.runtime_manifest.name) is None:
            raise NotFound(
                "There is no previous llama.cpp build to roll back to.",
                hint="A previous build is kept after `install` or `update` replaces one.",
            )
        swap = swap_dir(p)
        if p.bin_dir.exists():
            os.rename(p.bin_dir, swap)
        os.rename(p.previous_bin_dir, p.bin_dir)
        if swap.exists():
            os.rename(swap, p.previous_bin_dir)
    return RollbackResult(runtime=installed_runtime(), previous=previous_runtime())
