"""What is installed, and the folders that hold it: the active build (``<root>/bin/``: llama-server beside its
shared libraries and a manifest), the previous one, and the swap between them.

A new build is activated by three renames on one filesystem. If the process dies between two of them,
``recover`` finishes the job on the next call from what is on disk, so bin/ always ends up holding a complete
build: the old one or the new one. Installs take a lock file for their whole run (a second install is refused,
not queued); the renames take a second, short lock that readers such as ``find_llama_server`` also take, so
they never see the gap. runtime.py (install, update, rollback) builds on these.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ..system import config, files, hardware
from ..system.config import Paths
from ..system.errors import Refused, RuntimeNotInstalled
from ..system.files import write_atomically
from ..system.json_records import well_typed

log = logging.getLogger("aidevops_local.core.llamacpp.runtime")

SERVER = "llama-server"


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


def load_manifest(build_dir: Path, manifest_name: str) -> InstalledRuntime | None:
    """The build's manifest, or None when there is none or it is damaged (not JSON, or not what
    write_manifest writes): doctor, serve and update then see no recorded build rather than a traceback."""
    try:
        data = json.loads((build_dir / manifest_name).read_text(encoding="utf-8"))
        known = {f.name for f in fields(InstalledRuntime)}
        data = {k: v for k, v in data.items() if k in known}
        if not isinstance(data.get("server_path", SERVER), str):
            return None
        # Release builds record the server relative to their folder, since the folder moves.
        data["server_path"] = str(build_dir / data.get("server_path", SERVER))
        runtime = InstalledRuntime(**data)
    except (OSError, ValueError, TypeError, AttributeError):  # AttributeError: JSON that is not an object
        return None
    return runtime if well_typed(runtime) else None


def write_manifest(build_dir: Path, manifest_name: str, runtime: InstalledRuntime) -> None:
    data = asdict(runtime)
    if runtime.source == "release":
        data["server_path"] = SERVER
    write_atomically(build_dir / manifest_name, json.dumps(data, indent=2) + "\n")


def installed_runtime() -> InstalledRuntime | None:
    p = config.paths()
    recover_if_idle(p)
    return load_manifest(p.bin_dir, p.runtime_manifest.name)


def previous_runtime() -> InstalledRuntime | None:
    p = config.paths()
    return load_manifest(p.previous_bin_dir, p.runtime_manifest.name)


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


# Secrets of the tool that no llama.cpp binary needs: taken out of the environments we start them with.
TOOL_SECRETS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "GITHUB_TOKEN")


def runtime_env(binary: Path) -> dict[str, str]:
    """The environment for one of the build's programs (llama-server, its RPC server): ours, less the tool's
    secrets, with the build's folder first on the loader's path. Official builds find their libraries through
    $ORIGIN; a loader path set for another build must not shadow them."""
    env = {k: v for k, v in os.environ.items() if k not in TOOL_SECRETS}
    var = "DYLD_LIBRARY_PATH" if hardware.os_name() == "darwin" else "LD_LIBRARY_PATH"
    env[var] = os.pathsep.join(filter(None, [str(binary.parent), env.get(var)]))
    return env


def server_or_none() -> Path | None:
    """The llama-server find_llama_server gives, or None where there is none: for callers that only want
    what it can tell (hardware.detect's Metal working set on a Mac)."""
    try:
        return find_llama_server()
    except (RuntimeNotInstalled, OSError):
        return None


@contextmanager
def locked(path: Path, *, wait: bool) -> Iterator[None]:
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


def swap_dir(p: Paths) -> Path:
    """Where the active build waits during a rollback's three renames."""
    return p.app_dir / "bin.rollback"


def recover(p: Paths) -> None:
    """Finish a swap that a killed process left half done. Call with the swap lock held."""
    if not p.bin_dir.exists() and p.previous_bin_dir.exists():
        os.rename(p.previous_bin_dir, p.bin_dir)
        log.warning("Restored %s from %s after an interrupted install", p.bin_dir, p.previous_bin_dir)
    swap = swap_dir(p)
    if swap.exists():
        if p.previous_bin_dir.exists():
            shutil.rmtree(swap, ignore_errors=True)
        else:
            os.rename(swap, p.previous_bin_dir)


def recover_if_idle(p: Paths) -> None:
    if not swap_dir(p).exists() and (p.bin_dir.exists() or not p.previous_bin_dir.exists()):
        return  # the common case: nothing to finish, so no lock file to touch
    with locked(p.app_dir / "swap.lock", wait=True):
        recover(p)


def activate(p: Paths, build_dir: Path, work: Path) -> None:
    """previous <- bin <- build_dir, each a rename on one filesystem."""
    p.app_dir.mkdir(parents=True, exist_ok=True)
    with locked(p.app_dir / "swap.lock", wait=True):
        if p.previous_bin_dir.exists():
            os.rename(p.previous_bin_dir, work / "old-previous")
        if p.bin_dir.exists():
            os.rename(p.bin_dir, p.previous_bin_dir)
        os.rename(build_dir, p.bin_dir)


def disk_full_is_ours(what: str) -> contextlib.AbstractContextManager[None]:
    """ENOSPC from a step with no handling of its own (the manifest, a work folder) as DiskFull: the disk can
    fill at any moment, not only while downloading or unpacking."""
    return files.disk_full_is_ours(what, hint=f"{files.FREE_SPACE_HINT[:-1]}; the active build was not changed.")


@contextmanager
def install_session(p: Paths) -> Iterator[Path]:
    """The install lock, a clean work folder under the root, and the leftovers of killed runs removed."""
    with locked(p.app_dir / "install.lock", wait=False):
        with locked(p.app_dir / "swap.lock", wait=True):
            recover(p)
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
