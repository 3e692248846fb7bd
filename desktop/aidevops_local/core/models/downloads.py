"""`pull`: download a GGUF model (or a split set) from the Hub into models/, resumable and verified.

huggingface_hub 2.4.0 neither resumes across processes (each run writes a fresh randomly named
.incomplete file) nor checks the sha256 of what it downloaded, so the transfer is ours, built from the hub's
own pieces: `hf_hub_url` for the address, `get_hf_file_metadata` (a HEAD that also raises the hub's typed
errors, gated repos included) for the commit and size, and the hub's HTTP session (its proxy, offline and
header handling; Authorization is dropped on a redirect to another host) for a Range GET.

- The partial file is models/.partial/<sha256>.part, keyed by the LFS hash (accepted only as 64 hex digits,
  or a git blob id as 40: it names a path), so any later run (after Ctrl-C, a cancel, kill -9 or a dropped
  connection) continues from its last byte. A dropped connection is retried within the run from where it
  stopped; a file the Hub serves shorter than it lists is fetched afresh once, then refused.
- The hash is computed while downloading (the partial's existing bytes are hashed first on a resume) and
  must equal the Hub's LFS sha256 (or, for a file kept in git, its blob id) before the file is moved into
  place and recorded; on a mismatch the partial is deleted and nothing is recorded.
- Names from the Hub that would escape models/ are refused; free disk is checked first.
- A single file lands as models/<file>.gguf; a split set as models/<stem>/<parts> (llama-server's router
  reads a folder of parts as one model), moved there only once every part verified.

This module chooses, places and records the model; each file's transfer (lock, resume, retries, hash) is
transfer.py's.
"""

from __future__ import annotations

import errno
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..database import store
from ..system import clock, config
from ..system.errors import ConfigError, DiskFull, LocalModelsError, Refused, UnsafePath
from ..system.progress import ProgressCallback
from . import hub, transfer
from .library import LocalModel, model_name

DISK_MARGIN = 256 << 20  # left free after the download, for the system and the database
STALE_PARTIAL_DAYS = 30  # a partial untouched this long (its file since replaced on the Hub, say) is dropped


@dataclass(frozen=True)
class PullResult:
    model: LocalModel
    repo: str
    files: tuple[str, ...]  # paths in the repo
    downloaded_bytes: int  # transferred in this run
    resumed_bytes: int  # already on disk from an earlier run
    seconds: float
    already_present: bool = False

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def rate_bps(self) -> float:
        return self.downloaded_bytes / self.seconds if self.seconds > 0 else 0.0


def parse_spec(spec: str) -> tuple[str, str | None]:
    """("org/repo", "Q4_K_M") from "org/repo:Q4_K_M"; also takes hf.co/ and https://huggingface.co/ URLs."""
    spec = spec.strip()
    for prefix in ("https://huggingface.co/", "http://huggingface.co/", "huggingface.co/", "hf.co/"):
        spec = spec.removeprefix(prefix)
    repo, _, quant = spec.partition(":")
    repo = repo.strip("/")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise ConfigError(
            f"{spec!r} is not a repository name.",
            hint="Write it as ORG/REPO or ORG/REPO:QUANT, e.g. bartowski/Qwen_Qwen3-8B-GGUF:Q4_K_M.",
        )
    return hub.check_repo_id(repo), quant or None


def pull(
    repo: str,
    file: str | None = None,
    *,
    quant: str | None = None,
    revision: str | None = None,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    token: str | None = None,
) -> PullResult:
    """Download ``repo``'s model (``file``, or ``quant``, or the default quant) into models/ and record it.

    ``repo`` may carry the quant ("org/repo:Q5_K_M"). Raises ChoiceNeeded when no default quant exists and
    several files do, GatedRepo/AuthRequired, NotFound, UnsafePath, DiskFull, VerificationFailed,
    NetworkError, Cancelled."""
    started = time.monotonic()
    repo_id, spec_quant = parse_spec(repo)
    hub.check_online()
    token = token or hub.hub_token()
    remove_partials(older_than_days=STALE_PARTIAL_DAYS)
    listing = hub.repo_files(repo_id, revision=revision, token=token)
    if file:
        _check_named_file(listing, file)
    chosen = hub.choose_file(hub.group_models(listing), repo_id=repo_id, quant=quant or spec_quant, filename=file)
    name, targets, existing = _place(chosen, repo_id)
    if existing is not None:
        return PullResult(
            existing,
            repo_id,
            tuple(p.path for p in chosen.parts),
            0,
            0,
            time.monotonic() - started,
            already_present=True,
        )
    _make_partial_dir()
    partials = [_partial_path(part) for part in chosen.parts]
    _check_disk(chosen, targets, partials)
    downloaded, resumed = _download_parts(
        repo_id, chosen, targets, partials, revision=revision, token=token, progress=progress, cancel=cancel
    )
    # Into models/ only once every part is verified: a part alone there would be listed as a model of its own
    # (and never cleaned up) if a later part failed. Until then the finished parts wait in their partials.
    for target, partial in zip(targets, partials, strict=True):
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(partial, target)
    model = _record(name, repo_id, chosen, targets)
    return PullResult(
        model, repo_id, tuple(p.path for p in chosen.parts), downloaded, resumed, time.monotonic() - started
    )


def _check_named_file(listing: list[hub.RemotePart], file: str) -> None:
    """A file the Hub lists but that we may not write is refused, not "not found"."""
    for part in listing:
        if file in (part.path, part.path.rsplit("/", 1)[-1]):
            hub.safe_filename(part.path)
            hub.check_checksum_id(part)
    hub.safe_filename(file)


def _download_parts(
    repo_id: str,
    chosen: hub.RemoteFile,
    targets: list[Path],
    partials: list[Path],
    *,
    revision: str | None,
    progress: ProgressCallback | None,
    cancel: threading.Event | None,
    token: str | None,
) -> tuple[int, int]:
    """Each part not yet in place into its partial, verified. Returns (bytes transferred now, bytes that were
    already there)."""
    downloaded = resumed = 0
    task = f"Downloading {Path(chosen.filename).name}" + (f" ({len(chosen.parts)} parts)" if chosen.split else "")
    done_before = 0
    for part, target, partial in zip(chosen.parts, targets, partials, strict=True):
        if target.exists():  # _place verified it: a pull that stopped before recording the model
            done_before += part.size
            continue
        got, had = transfer.download_part(
            repo_id,
            part,
            partial,
            revision=revision,
            token=token,
            progress=progress,
            cancel=cancel,
            task=task,
            offset=done_before,
            total=chosen.size_bytes,
        )
        downloaded += got
        resumed += had
        done_before += part.size
    return downloaded, resumed


# ---- where things go --------------------------------------------------------------------------------------


def _layout(name: str, chosen: hub.RemoteFile) -> list[Path]:
    """models/<file> for a single file (models/<name>.gguf when the name had to change); a split set in its
    own folder, models/<name>/<parts>."""
    models_dir = config.paths().models_dir
    names = [hub.safe_filename(p.path) for p in chosen.parts]
    if chosen.split:
        targets = [models_dir / name / n for n in names]
    else:
        targets = [models_dir / (names[0] if model_name(names[0]) == name else f"{name}.gguf")]
    for target in targets:  # belt and braces: the resolved path must stay inside models/
        _inside(target, models_dir)
    return targets


def _inside(path: Path, folder: Path) -> Path:
    """``path`` if it resolves inside ``folder`` with names a file system takes; UnsafePath otherwise. Every
    path a pull writes or deletes passes here: its names come from the Hub."""
    if any(len(name.encode(errors="replace")) > hub.NAME_MAX_BYTES for name in path.parts):
        raise UnsafePath(
            f"{path.name[:40]}... would be a file name longer than a file system takes.",
            hint="Nothing was downloaded. Remove the model of the same name, or pull with --file.",
        )
    if folder.resolve() not in path.resolve().parents:
        raise UnsafePath(
            f"The Hub's listing would make this pull write {path}, outside {folder}.",
            hint="Nothing was downloaded. Report the repository if it is yours.",
        )
    return path


def _place(chosen: hub.RemoteFile, repo_id: str) -> tuple[str, list[Path], LocalModel | None]:
    """The model's name and files, and the model itself when it is already pulled. The file's own name
    unless it is taken, by another repo's model of the same name or by a different file already there (never
    overwritten): then "<name>-<org>", "<name>-<org>-2", ..."""
    store.database()
    inv = store.ModelInventory
    base = model_name(chosen.parts[0].path)
    org = repo_id.split("/")[0]
    for candidate in [base, f"{base}-{org}"] + [f"{base}-{org}-{i}" for i in range(2, 100)]:
        targets = _layout(candidate, chosen)
        row = inv.get_or_none(inv.model == candidate)
        if row is not None:
            if row.sha256 != _sha_text(chosen):
                continue
            present = all(t.exists() and t.stat().st_size == p.size for t, p in zip(targets, chosen.parts, strict=True))
            return candidate, targets, _local(row) if present else None
        if any(t.exists() and not _is_this_file(t, p) for t, p in zip(targets, chosen.parts, strict=True)):
            continue
        return candidate, targets, None
    raise Refused(f"Too many models are named {base}.", hint="Remove some with `aidevops-local models rm`.")


def _is_this_file(path: Path, part: hub.RemotePart) -> bool:
    """A file already at the target (a pull that stopped before recording it): ours only if it verifies."""
    return path.stat().st_size == part.size and transfer.verify_file(path, part)


def _make_partial_dir() -> None:
    """models/.partial, where unfinished downloads wait. Something else in its place is said plainly here: the
    transfer's mkdir would only raise FileExistsError."""
    folder = config.paths().partial_dir
    if folder.exists() and not folder.is_dir():
        raise LocalModelsError(
            f"{folder} is not a folder, so there is nowhere to keep the unfinished download.",
            hint="Move that file away: pull makes the folder again.",
        )
    folder.mkdir(parents=True, exist_ok=True)


def _partial_path(part: hub.RemotePart) -> Path:
    key = hub.check_checksum_id(part) if part.sha256 else f"git-{hub.check_checksum_id(part)}"
    folder = config.paths().partial_dir
    return _inside(folder / f"{key}.part", folder)


def _sha_text(chosen: hub.RemoteFile) -> str:
    return ",".join(p.sha256 or p.blob_id for p in chosen.parts)


def _check_disk(chosen: hub.RemoteFile, targets: list[Path], partials: list[Path]) -> None:
    needed = 0
    for part, target, partial in zip(chosen.parts, targets, partials, strict=True):
        if target.exists() and target.stat().st_size == part.size:
            continue
        needed += part.size - (partial.stat().st_size if partial.exists() else 0)
    folder = config.paths().models_dir
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if needed + DISK_MARGIN > free:
        raise DiskFull(
            f"{Path(chosen.filename).name} needs {needed / 2**30:.2f} GiB more, but only "
            f"{free / 2**30:.2f} GiB is free at {folder}.",
            hint="Free some space (`aidevops-local cleanup` lists unused models), or pick a smaller "
            "quant, then pull again: it resumes.",
        )


# ---- the inventory ----------------------------------------------------------------------------------------


def _record(name: str, repo_id: str, chosen: hub.RemoteFile, targets: list[Path]) -> LocalModel:
    inv = store.ModelInventory
    values = {
        "model": name,
        "path": str(targets[0]),
        "size_bytes": chosen.size_bytes,
        "repo": repo_id,
        "quant": chosen.quant or None,
        "sha256": _sha_text(chosen),
        "files": [str(t) for t in targets],
        "source": "pulled",
        "downloaded": store.format_timestamp(_now()),
    }

    def write():
        row = inv.get_or_none(inv.model == name)
        if row is None:
            inv.insert(**values).execute()
        else:  # a re-pull keeps the model's usage history
            inv.update(**values).where(inv.model == name).execute()

    store.write(write)
    return _local(inv.get(inv.model == name))


def _now():
    return clock.now()


def _local(row) -> LocalModel:
    files = tuple(Path(f) for f in (row.files or [row.path]))
    return LocalModel(
        name=row.model,
        path=Path(row.path),
        files=files,
        size_bytes=row.size_bytes or 0,
        quant=row.quant or "",
        repo=row.repo,
        source=row.source,
        where="models",
        last_used=row.last_used
        if isinstance(row.last_used, str) or row.last_used is None
        else store.format_timestamp(row.last_used),
        downloaded=row.downloaded
        if isinstance(row.downloaded, str) or row.downloaded is None
        else store.format_timestamp(row.downloaded),
        total_requests=row.total_requests or 0,
        sha256=row.sha256,
    )


def remove_partials(*, older_than_days: float = 0) -> int:
    """Delete unfinished downloads (all, or those untouched for a while); returns bytes freed."""
    folder = config.paths().partial_dir
    freed = 0
    cutoff = time.time() - older_than_days * 86400
    leftovers = [*folder.glob("*.part"), *folder.glob("*.lock")] if folder.is_dir() else []
    for path in leftovers:
        try:
            st = path.stat()
            if st.st_mtime <= cutoff:
                path.unlink()
                freed += st.st_size
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise LocalModelsError(f"Cannot remove {path}: {exc.strerror}") from exc
    return freed
