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
import errno
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

from . import archives, config, hardware, releases
from .config import Paths
from .errors import DiskFull, NotFound, Refused, RuntimeNotInstalled, VerificationFailed
from .progress import ProgressCallback, check_cancelled, report

log = logging.getLogger(__name__)

SERVER = "llama-server"
_SHARED_LIB = re.compile(r"\.(so(\.\d+)*|dylib)$")
_VERSION_LINE = re.compile(r"version:\s*(\d+)\s*\(([0-9a-fA-F]+)\)")
_UNPACK_FACTOR = 3  # unpacked size / archive size, with room to spare: checked before downloading


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
    tmp = build_dir / (manifest_name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, build_dir / manifest_name)


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
        raise RuntimeNotInstalled(f"The system llama-server recorded at {server} is gone.",
                                  hint="Run `aidevops-local install` for an official build, or "
                                       "`aidevops-local install --use-system` once it is back on PATH.")
    raise RuntimeNotInstalled("llama.cpp is not installed.",
                              hint="Run `aidevops-local install` (or `aidevops-local install --use-system` "
                                   "to use a llama-server already on PATH).")


# --- locks, work folders and the swap ----------------------------------------------------------------

@contextmanager
def _locked(path: Path, *, wait: bool) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise Refused("Another install, update or rollback is running.",
                          hint="Wait for it to finish, then run the command again.") from None
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


@contextmanager
def _disk_full_is_ours(what: str) -> Iterator[None]:
    """ENOSPC from a step with no handling of its own (the manifest, a work folder) as DiskFull: the disk can
    fill at any moment, not only while downloading or unpacking."""
    try:
        yield
    except OSError as exc:
        if exc.errno != errno.ENOSPC or isinstance(exc, DiskFull):
            raise
        raise DiskFull(f"The disk filled up while {what}.",
                       hint="Free some disk space and run the command again; the active build was not "
                            "changed.") from exc


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
        raise DiskFull(f"Installing needs about {needed >> 20} MiB (download and unpack) but only "
                       f"{free >> 20} MiB is free at {where}.",
                       hint="Free some disk space, or point AIDEVOPS_HOME at a bigger disk.")


def _locate_server(tree: Path, asset_name: str) -> Path:
    """The folder holding llama-server, at any depth (``llama-b1234/``, ``build/bin/``, or the top)."""
    found = sorted((path for path in tree.rglob(SERVER) if path.is_file()),
                   key=lambda path: len(path.parts))
    if not found:
        raise VerificationFailed(f"{asset_name} contains no {SERVER}.",
                                 hint="Pick another backend with --backend, or another release with --tag.")
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
    try:
        done = subprocess.run([str(server), "--version"], capture_output=True, text=True, timeout=30,
                              cwd=server.parent, check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise VerificationFailed(f"{server} does not run on this machine: {exc}",
                                 hint="Try another backend with --backend cpu.") from exc
    output = (done.stderr or "") + (done.stdout or "")
    if done.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-10:])
        raise VerificationFailed(f"{server} --version failed with exit status {done.returncode}.",
                                 hint="This build does not run here (missing driver or libraries?); "
                                      "try --backend cpu.", details=tail)
    match = _VERSION_LINE.search(output)
    if match:
        return match.group(0)
    return next((line.strip() for line in output.splitlines() if line.strip()), "unknown")


def _build_from_version(version: str) -> int | None:
    match = _VERSION_LINE.search(version)
    return int(match.group(1)) if match else None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# --- the public operations -------------------------------------------------------------------------

def install_release(*, tag: str | None = None, backend: str = "auto", progress: ProgressCallback | None = None,
                    cancel: threading.Event | None = None, insecure_skip_checksum: bool = False,
                    force: bool = False) -> InstalledRuntime:
    """Install the official llama.cpp build for this machine (the latest release, or ``tag``).

    ``backend`` "auto" takes the best backend the hardware has that the release ships. The build it
    replaces becomes the previous one. Nothing changes unless the whole download verifies and runs."""
    hw = hardware.detect()
    backends = hw.backends if backend == "auto" else (backend,)
    release = releases.fetch_release(tag=tag)
    selection = releases.choose_asset(release, os=hw.os, arch=hw.arch, backends=backends)
    current = installed_runtime()
    if (not force and current and current.source == "release" and current.asset == selection.asset.name
            and Path(current.server_path).is_file()):
        return current
    return _install_selection(release, selection, progress=progress, cancel=cancel,
                              insecure_skip_checksum=insecure_skip_checksum)


def _install_selection(release: releases.Release, selection: releases.Selection, *,
                       progress: ProgressCallback | None, cancel: threading.Event | None,
                       insecure_skip_checksum: bool) -> InstalledRuntime:
    p = config.paths()
    with _disk_full_is_ours(f"installing llama.cpp {release.tag}"), _install_session(p) as work:
        assets = (selection.asset, *selection.companions)
        _check_free_space(work, sum(asset.size for asset in assets))
        trees: list[Path] = []
        main_download: releases.Downloaded | None = None
        # choose_asset only picks names of llama.cpp's own pattern: plain file names, safe to join.
        for asset in assets:
            check_cancelled(cancel)
            got = releases.download_asset(asset=asset, dest=work / asset.name, progress=progress,
                                          cancel=cancel, insecure_skip_checksum=insecure_skip_checksum)
            if not got.verified:
                log.warning("%s was installed without checking its checksum", asset.name)
            main_download = main_download or got
            tree = work / f"unpacked-{len(trees)}"
            archives.extract(archive=got.path, dest=tree, progress=progress, cancel=cancel)
            got.path.unlink()
            trees.append(tree)
        build_dir = _locate_server(trees[0], selection.asset.name)
        for tree in trees[1:]:
            _merge_libraries(tree, build_dir)
        # Links were checked against each unpacked tree; only build_dir is installed, so check them again there.
        archives.check_links_stay_inside(build_dir, what=f"llama.cpp {release.tag}")
        report(progress, f"Checking {SERVER}", 0, None)
        version = check_server_runs(build_dir / SERVER)
        runtime = InstalledRuntime(
            tag=release.tag, build=release.build, backend=selection.backend, asset=selection.asset.name,
            sha256=main_download.sha256, installed_at=_now(), version=version, source="release",
            server_path=SERVER, verified=main_download.verified)
        _write_manifest(build_dir, p.runtime_manifest.name, runtime)
        check_cancelled(cancel)
        _activate(p, build_dir, work)
    return installed_runtime()


def use_system(*, path: Path | None = None) -> InstalledRuntime:
    """Record a llama-server that is already installed (Homebrew, the distribution, a build of one's own)
    instead of downloading one. It becomes the active runtime; the build it replaces becomes previous."""
    found = path or (Path(which) if (which := shutil.which(SERVER)) else None)
    if found is None:
        raise RuntimeNotInstalled(f"There is no {SERVER} on PATH.",
                                  hint="Install llama.cpp (for example `brew install llama.cpp`), or run "
                                       "`aidevops-local install` for an official build.")
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
            tag=None, build=build, backend="system", asset=None, sha256=None, installed_at=_now(),
            version=version, source="system", server_path=str(server))
        _write_manifest(staging, p.runtime_manifest.name, runtime)
        _activate(p, staging, work)
    return installed_runtime()


def check_update() -> UpdateCheck:
    installed = installed_runtime()
    latest = releases.fetch_release()
    available = installed is None or (latest.build is not None
                                      and (installed.build is None or latest.build > installed.build))
    return UpdateCheck(installed=installed, latest_tag=latest.tag, latest_build=latest.build,
                       update_available=available)


def update(*, progress: ProgressCallback | None = None, cancel: threading.Event | None = None,
           insecure_skip_checksum: bool = False) -> UpdateResult:
    """Install the latest release with the installed build's backend, keeping the current one as previous."""
    installed = installed_runtime()
    if installed is None:
        raise RuntimeNotInstalled("llama.cpp is not installed, so there is nothing to update.",
                                  hint="Run `aidevops-local install`.")
    if installed.source == "system":
        raise Refused(f"The active llama-server is the system's ({installed.server_path}).",
                      hint="Update it with the package manager that installed it, or run "
                           "`aidevops-local install` to switch to an official build.")
    latest = releases.fetch_release()
    if latest.build is not None and installed.build is not None and latest.build <= installed.build:
        return UpdateResult(updated=False, runtime=installed, replaced=None)
    hw = hardware.detect()
    selection = releases.choose_asset(latest, os=hw.os, arch=hw.arch, backends=(installed.backend,))
    runtime = _install_selection(latest, selection, progress=progress, cancel=cancel,
                                 insecure_skip_checksum=insecure_skip_checksum)
    return UpdateResult(updated=True, runtime=runtime, replaced=installed)


def rollback() -> RollbackResult:
    """Make the previous build active again; the build rolled away from becomes the previous one."""
    p = config.paths()
    with _locked(p.app_dir / "install.lock", wait=False), _locked(p.app_dir / "swap.lock", wait=True):
        _recover(p)
        if _load_manifest(p.previous_bin_dir, p.runtime_manifest.name) is None:
            raise NotFound("There is no previous llama.cpp build to roll back to.",
                           hint="A previous build is kept after `install` or `update` replaces one.")
        swap = _swap_dir(p)
        if p.bin_dir.exists():
            os.rename(p.bin_dir, swap)
        os.rename(p.previous_bin_dir, p.bin_dir)
        if swap.exists():
            os.rename(swap, p.previous_bin_dir)
    return RollbackResult(runtime=installed_runtime(), previous=previous_runtime())
