"""`agents install|status|uninstall`: this tool's helper and guides put into a user's aidevops framework
(``~/.aidevops/agents`` by default), and taken out again.

Copied: scripts/local-model-helper.sh (the framework's own helper is kept in the record and put back on
uninstall) and the two tools/local-models/ guides. Merged in place (framework_parts): AGENTS.md,
tools/context/model-routing.md, subagent-index.toon, configs/model-routing-table.json. Every change is
planned and checked before anything is written; the record (original bytes, what we wrote, what we
inserted) is written before the framework's files, so uninstall can always restore. Files untouched since
install come back byte for byte; a merged file the user edited since loses only our parts."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..system import config
from ..system.errors import NotFound, Refused
from ..system.files import write_atomically
from . import framework_parts

HELPER = "scripts/local-model-helper.sh"
COPIED = (HELPER, "tools/local-models/local-models.md", "tools/local-models/huggingface.md")
MERGED = {  # framework file -> how it merges; the source is the same path in our agents folder
    "AGENTS.md": "markdown",
    "tools/context/model-routing.md": "markdown",
    "subagent-index.toon": "toon",
    "configs/model-routing-table.json": "json",
}
REQUIRED = ("AGENTS.md", "tools/context/model-routing.md", "scripts/")
RECORD_VERSION = 1


@dataclass(frozen=True)
class FileChange:
    path: str  # relative to the framework
    kind: str  # copied, markdown, toon or json
    before: bytes | None
    after: bytes
    inserted: tuple[str, ...] = ()


@dataclass(frozen=True)
class InstallResult:
    framework: Path
    record: Path
    changed: list[str]
    unchanged: list[str]


@dataclass(frozen=True)
class UninstallResult:
    framework: Path
    restored: list[str]
    removed: list[str]
    kept_edited: list[str] = field(default_factory=list)
    was_installed: bool = True


@dataclass(frozen=True)
class FileState:
    path: str
    kind: str
    state: str  # as installed, edited since install, missing


@dataclass(frozen=True)
class AgentsStatus:
    framework: Path
    installed: bool
    record: Path
    current: bool  # installing now would change nothing
    files: list[FileState]


def agents_source() -> Path:
    """This package's copy of the repo's .agents (resources/agents: a link in a checkout, files in a wheel)."""
    source = Path(str(resources.files("aidevops_local") / "resources" / "agents"))
    if not (source / HELPER).is_file():
        raise NotFound(
            f"This installation of aidevops-local lacks its framework files ({source / HELPER} is missing).",
            hint="Reinstall aidevops-local (pip install --force-reinstall aidevops-local).",
        )
    return source


def record_path(framework: Path) -> Path:
    key = hashlib.sha256(str(framework.resolve()).encode()).hexdigest()[:16]
    return config.paths().app_dir / "framework" / f"{key}.json"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _load_record(framework: Path) -> dict:
    path = record_path(framework)
    if not path.is_file():
        return {}
    try:
        return _checked(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, OSError) as exc:
        raise Refused(
            f"The install record {path} cannot be read ({exc}).",
            hint="Restore the framework with its own setup.sh, then delete that file and install again.",
        ) from None


def _checked(record: object) -> dict:
    """The record if it has the shape install writes, else ValueError saying what is wrong: install, status and
    uninstall index into it, so a damaged one must stop them with one line, not a KeyError halfway through."""
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    if record.get("version") != RECORD_VERSION:
        raise ValueError(f"version {record.get('version')!r}")
    files, folders = record.get("files", {}), record.get("created_dirs", [])
    if not isinstance(files, dict) or not isinstance(folders, list) or not all(isinstance(d, str) for d in folders):
        raise ValueError("its files or created_dirs are not what install writes")
    for rel, entry in files.items():
        if not _entry_ok(entry):
            raise ValueError(f"its entry for {rel} is damaged")
    return record


def _entry_ok(entry: object) -> bool:
    """One file's entry as _entry writes it: a known kind, our sha, their bytes (base64) and what we inserted."""
    if not isinstance(entry, dict) or entry.get("kind") not in ("copied", *MERGED.values()):
        return False
    # A missing backup reads as 0, which no kind accepts: uninstall needs it (None: the file was not there).
    backup, mode, inserted = entry.get("backup", 0), entry.get("backup_mode"), entry.get("inserted")
    if entry["kind"] == "copied":
        shape = backup is None or isinstance(backup, str)
        shape = shape and (mode is None or (isinstance(mode, int) and not isinstance(mode, bool)))
    else:
        shape = isinstance(backup, str) and isinstance(inserted, list) and all(isinstance(i, str) for i in inserted)
    if not shape or not isinstance(entry.get("installed_sha"), str):
        return False
    try:
        if backup is not None:
            base64.b64decode(backup, validate=True)
    except ValueError:  # binascii.Error: not base64
        return False
    return True


def check_framework(framework: Path) -> Path:
    """The framework folder, resolved; Refused when it is not one (nothing is written)."""
    if not framework.is_dir():
        raise Refused(
            f"{framework} is not an aidevops framework folder: it does not exist.",
            hint="Pass --framework DIR (the deployed ~/.aidevops/agents or a checkout's .agents), "
            "or set AIDEVOPS_AGENTS_DIR.",
        )
    missing = [name for name in REQUIRED if not (framework / name.rstrip("/")).exists()]
    if missing:
        raise Refused(
            f"{framework} is not an aidevops framework folder: it has no {', '.join(missing)}.",
            hint="Pass --framework DIR (the deployed ~/.aidevops/agents or a checkout's .agents).",
        )
    return framework.resolve()


def _target(framework: Path, rel: str) -> Path:
    """The framework's file ``rel``; Refused when it is a link or would lead outside the framework."""
    path = framework / rel
    for part in [path, *path.parents]:
        if part == framework:
            break
        if part.is_symlink():
            raise Refused(f"{path} is reached through a link ({part}); aidevops-local writes only real files there.")
    if not path.resolve().is_relative_to(framework):
        raise Refused(f"{path} lies outside the framework folder {framework}.")
    return path


def _read(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else None


def _their_text(rel: str, kind: str, current: bytes, entry: dict) -> str:
    """Their file without our parts: the recorded original when untouched since install, else the current
    text with our insertions taken out."""
    if entry and entry.get("installed_sha") == _sha(current):
        return base64.b64decode(entry["backup"]).decode("utf-8")
    text = current.decode("utf-8")
    return framework_parts.remove_inserted(text, entry.get("inserted", []), kind) if entry else text


def plan(framework: Path) -> list[FileChange]:
    """What install would write, file by file; raises before anything is written."""
    source, record = agents_source(), _load_record(framework)
    entries, changes = record.get("files", {}), []
    for rel in COPIED:
        changes.append(FileChange(rel, "copied", _read(_target(framework, rel)), (source / rel).read_bytes()))
    merge = {"markdown": framework_parts.merge_markdown, "toon": framework_parts.merge_toon}
    merge["json"] = framework_parts.merge_json
    for rel, kind in MERGED.items():
        current = _read(_target(framework, rel))
        if current is None:
            continue  # an older framework without this file: nothing to merge into
        try:
            theirs = _their_text(rel, kind, current, entries.get(rel, {}))
        except UnicodeDecodeError:
            raise Refused(f"The framework's {rel} is not UTF-8 text; nothing was changed.") from None
        text, inserted = merge[kind](theirs, (source / rel).read_text(encoding="utf-8"), rel)
        changes.append(FileChange(rel, kind, theirs.encode("utf-8"), text.encode("utf-8"), tuple(inserted)))
    return changes


def _entry(change: FileChange, current: bytes | None, old: dict, target: Path) -> dict:
    """The record of one file: what to put back (their bytes), what we wrote, what we inserted."""
    installed = {"kind": change.kind, "installed_sha": _sha(change.after)}
    if change.kind != "copied":
        return {**installed, "backup": base64.b64encode(change.before).decode(), "inserted": list(change.inserted)}
    if current is not None and old and old["installed_sha"] == _sha(current):
        return {**old, **installed}  # still ours: keep the original recorded at the first install
    if current is None:
        return {**installed, "backup": None, "backup_mode": None}
    backup = base64.b64encode(current).decode()
    return {**installed, "backup": backup, "backup_mode": target.stat().st_mode & 0o7777}


def install(framework: Path) -> InstallResult:
    """Copy and merge our parts into ``framework``; a second run changes nothing (byte for byte)."""
    framework = check_framework(framework)
    record = _load_record(framework)
    old_entries = record.get("files", {})
    changes = plan(framework)  # every check first: a refusal leaves everything as it was
    entries, changed, unchanged, created = {}, [], [], set(record.get("created_dirs", []))
    for change in changes:
        target = framework / change.path
        current = _read(target)
        entries[change.path] = _entry(change, current, old_entries.get(change.path, {}), target)
        (unchanged if current == change.after else changed).append(change.path)
        for parent in Path(change.path).parents:
            if str(parent) != "." and not (framework / parent).exists():
                created.add(str(parent))
    path = record_path(framework)
    if changed or entries != old_entries:
        write_atomically(
            path,
            json.dumps(
                {
                    "version": RECORD_VERSION,
                    "framework": str(framework),
                    "files": entries,
                    "created_dirs": sorted(created),
                },
                indent=1,
            ),
        )
    for change in changes:
        if change.path in changed:
            target = framework / change.path
            mode = 0o755 if change.path == HELPER else (target.stat().st_mode & 0o7777 if target.exists() else None)
            write_atomically(target, change.after, mode=mode)
    return InstallResult(framework, path, changed, unchanged)


def uninstall(framework: Path) -> UninstallResult:
    """Put back what install changed: their bytes where the file is as we left it, else only our parts out."""
    framework = check_framework(framework)
    record = _load_record(framework)
    if not record:
        return UninstallResult(framework, [], [], was_installed=False)
    writes: list[tuple[Path, bytes | None, int | None]] = []
    restored, removed, kept = [], [], []
    for rel, entry in record["files"].items():
        target = _target(framework, rel)
        current = _read(target)
        if current is None:
            continue
        if entry["installed_sha"] == _sha(current):
            backup = entry["backup"]
            mode = entry.get("backup_mode") or target.stat().st_mode & 0o7777
            writes.append((target, None if backup is None else base64.b64decode(backup), mode))
            (removed if backup is None else restored).append(rel)
        elif entry["kind"] == "copied":
            kept.append(rel)  # the user's or the framework's own since: theirs now
        else:
            text = framework_parts.remove_inserted(current.decode("utf-8"), entry["inserted"], entry["kind"])
            writes.append((target, text.encode("utf-8"), target.stat().st_mode & 0o7777))
            restored.append(rel)
    for target, data, mode in writes:
        if data is None:
            target.unlink()
        else:
            write_atomically(target, data, mode=mode)
    for folder in sorted(record.get("created_dirs", []), key=lambda p: -p.count("/")):
        path = framework / folder
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    record_path(framework).unlink()
    return UninstallResult(framework, restored, removed, kept)


def status(framework: Path) -> AgentsStatus:
    framework = check_framework(framework)
    record = _load_record(framework)
    files = []
    for rel, entry in record.get("files", {}).items():
        current = _read(framework / rel)
        state = "missing" if current is None else "as installed"
        if current is not None and entry["installed_sha"] != _sha(current):
            state = "edited since install"
        files.append(FileState(rel, entry["kind"], state))
    try:
        current = bool(record) and all(_read(framework / c.path) == c.after for c in plan(framework))
    except Refused:
        current = False
    return AgentsStatus(framework, bool(record), record_path(framework), current, files)
