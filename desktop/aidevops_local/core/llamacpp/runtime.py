"""The llama.cpp runtime: install an official release (or adopt the system's llama-server), update, roll back.

On disk: ``<root>/bin/`` is the active build (llama-server beside its shared libraries and a manifest),
``previous_bin_dir`` the one before it. A new build is downloaded and unpacked into a work folder under the
root and checked (``llama-server --version`` must run) before anything changes; then three renames on one
filesystem swap it in. If the process dies between two of them, ``_recover`` finishes the job on the next
call from what is on disk, so bin/ always ends up holding a complete build: the old one or the new one.

Installs take a lock file for their whole run (a second install is refused, not queued); the renames take a
second, short lock that readers such as ``find_llama_server`` also take, so they never see the gap.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

from ..system import config, hardware, macho, macos
from ..system.config import Paths
from ..system.errors import (
    AssetNotFound,
    DiskFull,
    NeedsNewerMacOS,
    NotFound,
    Refused,
    RuntimeNotInstalled,
    VerificationFailed,
)
from ..system.files import FREE_SPACE_HINT, disk_full_is_ours, write_atomically
from ..system.progress import ProgressCallback, check_cancelled, report
from . import archives, releases

log = logging.getLogger(__name__)

SERVER = "llama-server"
_SHARED_LIB = re.compile(r"\.(so(\.\d+)*|dylib)$")
_VERSION_LINE = re.compile(r"version:\s*(\d+)\s*\(([0-9a-fA-F]+)\)")
_UNPACK_FACTOR = 3  # unpacked size / archive size, with room to spare: checked before downloading
_FALLBACK_RELEASES = 100  # how far back (one page of GitHub's list) a Mac looks for a build its macOS runs
_HOMEBREW_HINT = (
    "Install Homebrew's llama.cpp, which is built for your macOS (`brew install llama.cpp`), then "
    "run `aidevops-local install --use-system`"
)


@dataclass(frozen=True)
class InstalledRuntime:
    tag: str | None  # "b5432"; None for a system llama-server
    build: int | None
    backend: str
    asset: str | None  # the release asset it came from
    sha256: str | None  # of that asset
    installed_at: str
    version: str  # what `llama-server --version` printed, e.g. "version: 5432 (571d0d5)"
    source: str  # "release" or "system"
    server_path: str  # the llama-server to run
    verified: bool = True  # False when installed with --insecure-skip-checksum


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


# --- reading what is installed -----------------------------------------------------------------------


def _load_manifest(build_dir: Path, manifest_name: str) -> InstalledRuntime | None:
    try:
        data = json.loads((build_dir / manifest_name).read_text(encoding="utf-8"))
        known = {f.name for f in fields(InstalledRuntime)}
        data = {k: v for k, v in data.items() if k in known}
        # Release builds record the server relative to their folder, since the folder moves.
        data["server_path"] = str(build_dir / data.get("server_path", SERVER))
        return InstalledRuntime(**data)
    except (OSError, ValueError, TypeError):
        return None


def _write_manifest(build_dir: Path, manifest_name: str, runtime: InstalledRuntime) -> None:
    data = asdict(runtime)
    if runtime.source == "release":
        data["server_path"] = SERVER
    write_atomically(build_dir / manifest_name, json.dumps(data, indent=2) + "\n")


def installed_runtime() -> InstalledRuntime | None:
    p = config.paths()
    _recover_if_idle(p)
    return _load_manifest(p.bin_dir, p.runtime_manifest.name)


def previous_runtime() -> InstalledRuntime | None:
    p = config.paths()
    return _load_manifest(p.previous_bin_dir, p.runtime_manifest.name)


def find_llama_server() -> Path:
    """The llama-server to run: the installed release build, or the system one that `install --use-system`
    recorded. Raises RuntimeNotInstalled with what to do."""
    p = config.paths()
    runtime = installed_runtime()
    server = Path(runtime.server_path) if runtime else p.bin_dir / SERVER
    if server.is_file() and os.access(server, os.X_OK):
        return server
    if runtime and runtime.source == "system":
        raise RuntimeNotInstalled(
            f"The system llama-server recorded at {server} is gone.",
            hint="Run `aidevops-local install` for an official build, or "
            "`aidevops-local install --use-system` once it is back on PATH.",
        )
    raise RuntimeNotInstalled(
        "llama.cpp is not installed.",
        hint="Run `aidevops-local install` (or `aidevops-local install --use-system` "
        "to use a llama-server already on PATH).",
    )


# --- locks, work folders and the swap ----------------------------------------------------------------


@contextmanager
def _locked(path: Path, *, wait: bool) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise Refused(
                "Another install, update or rollback is running.",
                hint="Wait for it to finish, then run the command again.",
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _work_root(p: Paths) -> Path:
    return p.app_dir / "install"


def _swap_dir(p: Paths) -> Path:
    """Where the active build waits during a rollback's three renames."""
    return p.app_dir / "bin.rollback"


def _recover(p: Paths) -> None:
    """Finish a swap that a killed process left half done. Call with the swap lock held."""
    if not p.bin_dir.exists() and p.previous_bin_dir.exists():
        os.rename(p.previous_bin_dir, p.bin_dir)
        log.warning("Restored %s from %s after an interrupted install", p.bin_dir, p.previous_bin_dir)
    swap = _swap_dir(p)
    if swap.exists():
        if p.previous_bin_dir.exists():
            shutil.rmtree(swap, ignore_errors=True)
        else:
            os.rename(swap, p.previous_bin_dir)


def _recover_if_idle(p: Paths) -> None:
    if not _swap_dir(p).exists() and (p.bin_dir.exists() or not p.previous_bin_dir.exists()):
        return  # the common case: nothing to finish, so no lock file to touch
    with _locked(p.app_dir / "swap.lock", wait=True):
        _recover(p)


def _activate(p: Paths, build_dir: Path, work: Path) -> None:
    """previous <- bin <- build_dir, each a rename on one filesystem."""
    p.app_dir.mkdir(parents=True, exist_ok=True)
    with _locked(p.app_dir / "swap.lock", wait=True):
        if p.previous_bin_dir.exists():
            os.rename(p.previous_bin_dir, work / "old-previous")
        if p.bin_dir.exists():
            os.rename(p.bin_dir, p.previous_bin_dir)
        os.rename(build_dir, p.bin_dir)


def _disk_full_is_ours(what: str) -> contextlib.AbstractContextManager[None]:
    """ENOSPC from a step with no handling of its own (the manifest, a work folder) as DiskFull: the disk can
    fill at any moment, not only while downloading or unpacking."""
    return disk_full_is_ours(what, hint=f"{FREE_SPACE_HINT[:-1]}; the active build was not changed.")


@contextmanager
def _install_session(p: Paths) -> Iterator[Path]:
    """The install lock, a clean work folder under the root, and the leftovers of killed runs removed."""
    with _locked(p.app_dir / "install.lock", wait=False):
        with _locked(p.app_dir / "swap.lock", wait=True):
            _recover(p)
        root = _work_root(p)
        if root.exists():
            for leftover in root.iterdir():
                log.info("Removing %s, left by an interrupted install", leftover)
                if leftover.is_dir() and not leftover.is_symlink():
                    shutil.rmtree(leftover, ignore_errors=True)
                else:
                    leftover.unlink(missing_ok=True)
        work = root / uuid.uuid4().hex[:12]
        work.mkdir(parents=True)
        try:
            yield work
        finally:
            shutil.rmtree(work, ignore_errors=True)
            with contextlib.suppress(OSError):
                root.rmdir()  # only when empty


# --- building a new bin/ ---------------------------------------------------------------------------


def _check_free_space(where: Path, download_bytes: int) -> None:
    needed = download_bytes * (1 + _UNPACK_FACTOR)
    free = shutil.disk_usage(where).free
    if needed > free:
        raise DiskFull(
            f"Installing needs about {needed >> 20} MiB (download and unpack) but only "
            f"{free >> 20} MiB is free at {where}.",
            hint="Free some disk space, or point AIDEVOPS_HOME at a bigger disk.",
        )


def _locate_server(tree: Path, asset_name: str) -> Path:
    """The folder holding llama-server, at any depth (``llama-b1234/``, ``build/bin/``, or the top)."""
    found = sorted((path for path in tree.rglob(SERVER) if path.is_file()), key=lambda path: len(path.parts))
    if not found:
        raise VerificationFailed(
            f"{asset_name} contains no {SERVER}.",
            hint="Pick another backend with --backend, or another release with --tag.",
        )
    return found[0].parent


def _merge_libraries(source_tree: Path, build_dir: Path) -> None:
    """A companion archive (the CUDA runtime) contributes its shared libraries to the build's folder."""
    for path in sorted(source_tree.rglob("*")):
        if _SHARED_LIB.search(path.name) and (path.is_symlink() or path.is_file()):
            target = build_dir / path.name
            if not target.exists() and not target.is_symlink():
                os.rename(path, target)


def check_server_runs(server: Path) -> str:
    """`llama-server --version`'s line ("version: 5432 (571d0d5)"); VerificationFailed if it does not run."""
    marked = macos.quarantined_files(server)
    if marked:
        # Gatekeeper kills a quarantined program that is not notarized; the bare "killed" reads like a crash.
        raise VerificationFailed(
            f"macOS has quarantined {server} (it came from a browser download), so Gatekeeper will not let it run.",
            hint=macos.quarantine_hint(marked),
            details="\n".join(f"com.apple.quarantine on {p}" for p in marked),
        )
    try:
        done = subprocess.run(
            [str(server), "--version"],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=server.parent,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise VerificationFailed(f"{server} does not run on this machine: {exc}", hint=_does_not_run_hint()) from exc
    output = (done.stderr or "") + (done.stdout or "")
    if done.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-10:])
        raise VerificationFailed(
            f"{server} --version failed with exit status {done.returncode}.", hint=_does_not_run_hint(), details=tail
        )
    match = _VERSION_LINE.search(output)
    if match:
        return match.group(0)
    return next((line.strip() for line in output.splitlines() if line.strip()), "unknown")


def _does_not_run_hint() -> str:
    if macos.on_macos():  # a Mac has one build per arch: --backend cpu would fetch the same file
        return f"This build does not run on this Mac (too new for its macOS?). {_HOMEBREW_HINT}."
    return "This build does not run here (missing driver or libraries?); try --backend cpu."


def _build_from_version(version: str) -> int | None:
    match = _VERSION_LINE.search(version)
    return int(match.group(1)) if match else None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# --- the public operations -------------------------------------------------------------------------


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
            hint=f"{macos.ROSETTA_HINT} Or: {_HOMEBREW_HINT}.",
        )


@dataclass(frozen=True)
class _Build:
    """A release's build downloaded, verified and unpacked in a work folder, not yet checked or active."""

    release: releases.Release
    selection: releases.Selection
    server_dir: Path  # the folder holding llama-server, what becomes bin/
    download: releases.Downloaded  # of the main asset
    folder: Path  # everything this build put in the work folder

    @property
    def server(self) -> Path:
        return self.server_dir / SERVER


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
    with _disk_full_is_ours(f"installing llama.cpp {release.tag}"), _install_session(p) as work:
        build = _fetch_build(release, selection, work / "build", **fetch)
        gap = _macos_gap(build)
        if gap is not None:
            if not fallback:
                raise _too_new(build, *gap, searched=0, updating=newer_than is not None)
            build = _newest_build_for_this_macos(build, *gap, work=work, newer_than=newer_than, **fetch)
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
        _write_manifest(build.server_dir, p.runtime_manifest.name, runtime)
        check_cancelled(cancel)
        _activate(p, build.server_dir, work)
    return installed_runtime()


def _fetch_build(
    release: releases.Release,
    selection: releases.Selection,
    folder: Path,
    *,
    progress: ProgressCallback | None,
    cancel: threading.Event | None,
    insecure_skip_checksum: bool,
) -> _Build:
    folder.mkdir()
    assets = (selection.asset, *selection.companions)
    _check_free_space(folder, sum(asset.size for asset in assets))
    trees: list[Path] = []
    main_download: releases.Downloaded | None = None
    # choose_asset only picks names of llama.cpp's own pattern: plain file names, safe to join.
    for asset in assets:
        check_cancelled(cancel)
        got = releases.download_asset(
            asset=asset,
            dest=folder / asset.name,
            progress=progress,
            cancel=cancel,
            insecure_skip_checksum=insecure_skip_checksum,
        )
        if not got.verified:
            log.warning("%s was installed without checking its checksum", asset.name)
        main_download = main_download or got
        tree = folder / f"unpacked-{len(trees)}"
        archives.extract(archive=got.path, dest=tree, progress=progress, cancel=cancel)
        got.path.unlink()
        trees.append(tree)
    server_dir = _locate_server(trees[0], selection.asset.name)
    for tree in trees[1:]:
        _merge_libraries(tree, server_dir)
    # Links were checked against each unpacked tree; only server_dir is installed, so check them again there.
    archives.check_links_stay_inside(server_dir, what=f"llama.cpp {release.tag}")
    return _Build(release, selection, server_dir, main_download, folder)


# --- a Mac whose macOS is older than the build wants ------------------------------------------------


def _macos_gap(build: _Build) -> tuple[macho.Version, macho.Version] | None:
    """(needed, running) when the build's llama-server asks for a newer macOS than this Mac runs."""
    kind = releases.classify(build.selection.asset.name)
    running = macos.running_version()
    if kind is None or kind.os != "darwin" or running is None:
        return None
    needed = macho.minimum_macos(build.server, arch=kind.arch)
    return (needed, running) if needed is not None and needed > running else None


def _newest_build_for_this_macos(
    failed: _Build,
    needed: macho.Version,
    running: macho.Version,
    *,
    work: Path,
    newer_than: int | None,
    progress: ProgressCallback | None,
    cancel: threading.Event | None,
    insecure_skip_checksum: bool,
) -> _Build:
    """Bisect the releases before ``failed`` for the newest whose build runs on this macOS. A build's minimum
    macOS only grows with time (llama.cpp's builders move to newer macOS, never back), so a handful of
    downloads covers a hundred releases; each one is verified like any install."""
    shutil.rmtree(failed.folder, ignore_errors=True)
    log.warning(
        "llama.cpp %s needs macOS %s (this Mac runs %s); looking for an older build that runs here",
        failed.release.tag,
        macho.shown(needed),
        macho.shown(running),
    )
    kind = releases.classify(failed.selection.asset.name)
    candidates = []
    for release in releases.list_releases(limit=_FALLBACK_RELEASES):
        build = release.build
        if build is None or (failed.release.build is not None and build >= failed.release.build):
            continue
        if (newer_than is not None and build <= newer_than) or (release.prerelease and not failed.release.prerelease):
            continue
        try:
            selection = releases.choose_asset(release, os=kind.os, arch=kind.arch, backends=(failed.selection.backend,))
        except (AssetNotFound, VerificationFailed):
            continue
        candidates.append((release, selection))
    best: _Build | None = None
    low, high = 0, len(candidates)
    while low < high:
        middle = (low + high) // 2
        check_cancelled(cancel)
        probe = _fetch_build(
            *candidates[middle],
            work / f"candidate-{middle}",
            progress=progress,
            cancel=cancel,
            insecure_skip_checksum=insecure_skip_checksum,
        )
        if _macos_gap(probe) is None:
            if best is not None:
                shutil.rmtree(best.folder, ignore_errors=True)
            best, high = probe, middle
        else:
            shutil.rmtree(probe.folder, ignore_errors=True)
            low = middle + 1
    if best is None:
        raise _too_new(failed, needed, running, searched=len(candidates), updating=newer_than is not None)
    log.warning(
        "Installing llama.cpp %s, the newest build that runs on macOS %s", best.release.tag, macho.shown(running)
    )
    return best


def _too_new(
    build: _Build, needed: macho.Version, running: macho.Version, *, searched: int, updating: bool
) -> NeedsNewerMacOS:
    message = (
        f"llama.cpp {build.release.tag}'s macOS build needs macOS {macho.shown(needed)}, and this Mac "
        f"runs macOS {macho.shown(running)}"
    )
    if searched:
        between = "between the installed build and it" if updating else "before it"
        message += f"; none of the {searched} releases {between} runs here either"
    hint = f"{_HOMEBREW_HINT}."
    if updating:
        hint = f"The installed build stays active. {hint}"
    elif not searched:
        hint = f"Pick an older release with --tag, or: {hint}"
    return NeedsNewerMacOS(message + ".", hint=hint)


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
    version = check_server_runs(server)
    p = config.paths()
    with _disk_full_is_ours(f"recording {server}"), _install_session(p) as work:
        staging = work / "staging"
        staging.mkdir()
        build = _build_from_version(version)
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
        _write_manifest(staging, p.runtime_manifest.name, runtime)
        _activate(p, staging, work)
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
    with _locked(p.app_dir / "install.lock", wait=False), _locked(p.app_dir / "swap.lock", wait=True):
        _recover(p)
        if _load_manifest(p.previous_bin_dir, p.runtime_manifest.name) is None:
            raise NotFound(
                "There is no previous llama.cpp build to roll back to.",
                hint="A previous build is kept after `install` or `update` replaces one.",
            )
        swap = _swap_dir(p)
        if p.bin_dir.exists():
            os.rename(p.bin_dir, swap)
        os.rename(p.previous_bin_dir, p.bin_dir)
        if swap.exists():
            os.rename(swap, p.previous_bin_dir)
    return RollbackResult(runtime=installed_runtime(), previous=previous_runtime())
