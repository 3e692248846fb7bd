"""The doctor's checks of what is kept on disk: the models' files (present, their recorded size, and on request
their hashes), the usage database (readable, undamaged, migrated) and the free space for models."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path
from urllib.parse import quote

from ..database import migrations
from ..system import config
from ..system.progress import ProgressCallback, report
from .doctor_result import FAIL, OK, WARN, Check

DISK_FAIL_BYTES = 1 << 30  # below this a pull or an update fails part-way
DISK_WARN_BYTES = 5 << 30  # about one 7B model at Q4


def check_models(*, hashes: bool, progress: ProgressCallback | None = None) -> Check:
    from ..database import store

    path = config.paths().database
    if not path.exists():
        return Check("models", OK, "no models recorded yet")
    if store.check_health(path) != "ok":
        return Check("models", WARN, "not checked: the database that records them is damaged (see database)")
    store.database()
    # A row without a file is history (the old helper's model_access, a file gone before it was imported).
    rows = [r for r in store.ModelInventory.select().order_by(store.ModelInventory.model) if r.file_paths()]
    if not rows:
        return Check("models", OK, "no models recorded yet")
    problems: list[str] = []
    worst = OK
    hashed = 0
    for row in rows:
        files = row.file_paths()
        pulled = row.source == "pulled"
        missing = [f for f in files if not (f.is_absolute() and f.exists())]  # relative: where to is unknown
        if missing:
            # Another tool's file may go away with that tool; ours should not.
            worst = FAIL if pulled or worst == FAIL else WARN
            problems.append(f"{row.model}: file missing: {', '.join(map(str, missing))}")
            continue
        size = sum(f.stat().st_size for f in files)
        if row.size_bytes and size != row.size_bytes:
            worst = FAIL
            problems.append(f"{row.model}: {size} bytes on disk, {row.size_bytes} recorded when it was pulled")
            continue
        if hashes and row.sha256:
            bad = _hash_mismatches(row.model, files, row.sha256, progress)
            hashed += 1
            if bad:
                worst = FAIL
                problems += [f"{row.model}: {name} does not match its recorded hash" for name in bad]
    counted = f"{len(rows)} model{'s' if len(rows) != 1 else ''}"
    if not problems:
        checked = f"; {hashed} hashed, all match" if hashes else "; hashes not checked (--hashes, slow)"
        return Check("models", OK, f"{counted}: every file present at its recorded size{checked}")
    return Check(
        "models",
        worst,
        f"{len(problems)} problem{'s' if len(problems) != 1 else ''} in {counted}",
        fix="Pull a damaged or missing model again (`aidevops-local pull REPO`), or remove it "
        "(`aidevops-local models rm NAME`).",
        details=tuple(problems),
    )


def _hash_mismatches(name: str, files: list[Path], recorded: str, progress: ProgressCallback | None) -> list[str]:
    """Files whose content differs from what pull verified: the Hub's LFS sha256, or for a file kept in git,
    its blob id (sha1 of "blob <size>\\0" + content). A split set records one per part, comma-separated."""
    expected = recorded.split(",")
    if len(expected) != len(files):
        return [f"{len(files)} files but {len(expected)} recorded hashes"]
    bad = []
    for path, want in zip(files, expected):
        size = path.stat().st_size
        if len(want) == 40:
            digest = hashlib.sha1()
            digest.update(b"blob %d\0" % size)
        else:
            digest = hashlib.sha256()
        done = 0
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
                done += len(chunk)
                report(progress, f"Hashing {path.name}", done, size)
        if digest.hexdigest() != want.strip().lower():
            bad.append(path.name)
    return bad


# ---- database -----------------------------------------------------------------------------------------------


def check_database() -> Check:
    from ..database import store

    path = config.paths().database
    if not path.exists():
        return Check("database", OK, f"not created yet ({path} is made on first use)")
    problem = store.check_health(path)
    if problem != "ok":
        return Check(
            "database",
            FAIL,
            f"{path} is damaged: {problem}",
            fix="`aidevops-local usage --reset-db` moves it aside (nothing is deleted) and starts a fresh one.",
        )
    applied, newer = _migrations(path)
    known = [fn.__name__ for fn in migrations.MIGRATIONS]
    pending = [name for name in known if name not in applied]
    if newer:
        return Check(
            "database",
            WARN,
            f"{path} was migrated by a newer aidevops-local ({', '.join(newer)})",
            fix="Update aidevops-local; this version may not read every column.",
        )
    if pending:
        return Check(
            "database",
            WARN,
            f"{len(pending)} migration(s) not applied yet: {', '.join(pending)}",
            fix="They run the next time the tool opens it, e.g. `aidevops-local usage`.",
        )
    return Check("database", OK, f"integrity ok, {len(known)} migrations applied", details=(str(path),))


def _migrations(path: Path) -> tuple[set[str], list[str]]:
    """Applied migration names, and those this version does not know (read-only)."""
    from ..database import store

    conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=store.BUSY_TIMEOUT_S)
    try:
        rows = conn.execute("SELECT name FROM schema_migrations").fetchall()
    except sqlite3.OperationalError:
        rows = []  # no table yet: nothing applied
    finally:
        conn.close()
    applied = {r[0] for r in rows}
    known = {fn.__name__ for fn in migrations.MIGRATIONS}
    return applied, sorted(applied - known)


def check_disk() -> Check:
    from ..models import library

    models_dir = config.paths().models_dir
    where = models_dir
    while not where.exists() and where != where.parent:
        where = where.parent
    free = shutil.disk_usage(where).free
    details = []
    partial = library.partial_downloads()
    if partial:
        size = sum(p.stat().st_size for p in partial if p.exists())
        details.append(
            f"{len(partial)} unfinished download(s) hold {size / 2**30:.1f} GiB in "
            f"{config.paths().partial_dir}: pull again to finish them"
        )
    summary = f"{free / 2**30:.1f} GiB free for {models_dir}"
    if free < DISK_FAIL_BYTES:
        return Check(
            "disk",
            FAIL,
            summary,
            fix="Free some space: `aidevops-local cleanup` lists unused models.",
            details=tuple(details),
        )
    if free < DISK_WARN_BYTES:
        return Check(
            "disk",
            WARN,
            summary + ": too little for most models",
            fix="Free some space: `aidevops-local cleanup` lists unused models.",
            details=tuple(details),
        )
    return Check("disk", OK, summary, details=tuple(details))
