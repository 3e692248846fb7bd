"""A release's build, fetched: downloaded and verified, unpacked in a work folder, llama-server found in it
(with the CUDA runtime's libraries merged beside it) and checked to run, before runtime.py activates it.

A Mac whose macOS is older than the latest build wants gets the newest older build that runs there
(``newest_build_for_this_macos``), found by bisecting the release list.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from ..system import macho, macos
from ..system.errors import AssetNotFound, DiskFull, NeedsNewerMacOS, VerificationFailed
from ..system.progress import ProgressCallback, check_cancelled
from . import archives, releases
from .installed import SERVER

log = logging.getLogger("aidevops_local.core.llamacpp.runtime")

_SHARED_LIB = re.compile(r"\.(so(\.\d+)*|dylib)$")
_VERSION_LINE = re.compile(r"version:\s*(\d+)\s*\(([0-9a-fA-F]+)\)")
_UNPACK_FACTOR = 3  # unpacked size / archive size, with room to spare: checked before downloading
_FALLBACK_RELEASES = 100  # how far back (one page of GitHub's list) a Mac looks for a build its macOS runs
HOMEBREW_HINT = (
    "Install Homebrew's llama.cpp, which is built for your macOS (`brew install llama.cpp`), then "
    "run `aidevops-local install --use-system`"
)


@dataclass(frozen=True)
class Build:
    """A release's build downloaded, verified and unpacked in a work folder, not yet checked or active."""

    release: releases.Release
    selection: releases.Selection
    server_dir: Path  # the folder holding llama-server, what becomes bin/
    download: releases.Downloaded  # of the main asset
    folder: Path  # everything this build put in the work folder

    @property
    def server(self) -> Path:
        return self.server_dir / SERVER


def fetch_build(
    release: releases.Release,
    selection: releases.Selection,
    folder: Path,
    *,
    progress: ProgressCallback | None,
    cancel: threading.Event | None,
    insecure_skip_checksum: bool,
) -> Build:
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
    return Build(release, selection, server_dir, main_download, folder)


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


def check_server_runs(server: Path, *, hint: str | None = None) -> str:
    """`llama-server --version`'s line ("version: 5432 (571d0d5)"); VerificationFailed, with ``hint`` (else
    one for a downloaded build), if it does not run."""
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
            errors="replace",  # any program may be named here, printing anything
            timeout=30,
            cwd=server.parent,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise VerificationFailed(
            f"{server} does not run on this machine: {exc}", hint=hint or _does_not_run_hint()
        ) from exc
    output = (done.stderr or "") + (done.stdout or "")
    if done.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-10:])
        raise VerificationFailed(
            f"{server} --version failed with exit status {done.returncode}.",
            hint=hint or _does_not_run_hint(),
            details=tail,
        )
    match = _VERSION_LINE.search(output)
    if match:
        return match.group(0)
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return next((line for line in lines if is_llama_version(line)), lines[0] if lines else "unknown")


def _does_not_run_hint() -> str:
    if macos.on_macos():  # a Mac has one build per arch: --backend cpu would fetch the same file
        return f"This build does not run on this Mac (too new for its macOS?). {HOMEBREW_HINT}."
    return "This build does not run here (missing driver or libraries?); try --backend cpu."


def is_llama_version(line: str) -> bool:
    """llama.cpp's own version line ("version: 5432 (571d0d5)"; a distribution's build may say "(unknown)")."""
    return re.match(r"version:\s*\d+\b", line) is not None


def build_from_version(version: str) -> int | None:
    match = _VERSION_LINE.search(version)
    return int(match.group(1)) if match else None


def macos_gap(build: Build) -> tuple[macho.Version, macho.Version] | None:
    """(needed, running) when the build's llama-server asks for a newer macOS than this Mac runs."""
    kind = releases.classify(build.selection.asset.name)
    running = macos.running_version()
    if kind is None or kind.os != "darwin" or running is None:
        return None
    needed = macho.minimum_macos(build.server, arch=kind.arch)
    return (needed, running) if needed is not None and needed > running else None


def newest_build_for_this_macos(
    failed: Build,
    needed: macho.Version,
    running: macho.Version,
    *,
    work: Path,
    newer_than: int | None,
    progress: ProgressCallback | None,
    cancel: threading.Event | None,
    insecure_skip_checksum: bool,
) -> Build:
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
    best: Build | None = None
    low, high = 0, len(candidates)
    while low < high:
        middle = (low + high) // 2
        check_cancelled(cancel)
        probe = fetch_build(
            *candidates[middle],
            work / f"candidate-{middle}",
            progress=progress,
            cancel=cancel,
            insecure_skip_checksum=insecure_skip_checksum,
        )
        if macos_gap(probe) is None:
            if best is not None:
                shutil.rmtree(best.folder, ignore_errors=True)
            best, high = probe, middle
        else:
            shutil.rmtree(probe.folder, ignore_errors=True)
            low = middle + 1
    if best is None:
        raise too_new(failed, needed, running, searched=len(candidates), updating=newer_than is not None)
    log.warning(
        "Installing llama.cpp %s, the newest build that runs on macOS %s", best.release.tag, macho.shown(running)
    )
    return best


def too_new(
    build: Build, needed: macho.Version, running: macho.Version, *, searched: int, updating: bool
) -> NeedsNewerMacOS:
    message = (
        f"llama.cpp {build.release.tag}'s macOS build needs macOS {macho.shown(needed)}, and this Mac "
        f"runs macOS {macho.shown(running)}"
    )
    if searched:
        between = "between the installed build and it" if updating else "before it"
        message += f"; none of the {searched} releases {between} runs here either"
    hint = f"{HOMEBREW_HINT}."
    if updating:
        hint = f"The installed build stays active. {hint}"
    elif not searched:
        hint = f"Pick an older release with --tag, or: {hint}"
    return NeedsNewerMacOS(message + ".", hint=hint)
