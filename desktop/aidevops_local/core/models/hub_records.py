"""The Hub's records of a repo and of its files, checked rather than trusted: a search result or a file of a
repo's listing as the Hub's JSON describes it, turned into a frozen record. A search result of the wrong shape
is left out (None: the other results still help); a file listing entry of the wrong shape is an error (a listing
that is wrong in part cannot be trusted to name, size or checksum the files to download). Apart from hub.py,
which names these for its callers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from ..system.errors import ConfigError
from .hub_failures import check_repo_id, malformed, shown

DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class RepoSummary:
    repo_id: str
    downloads: int = 0
    likes: int = 0
    last_modified: str = ""  # ISO date
    gated: bool | str = False
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class RemotePart:
    path: str  # path in the repo
    size: int
    sha256: str | None  # the LFS object's hash; None for a file kept in git itself
    blob_id: str = ""  # git blob sha1: what a non-LFS file is checked against


def model_summary(record: object) -> RepoSummary | None:
    """A search result from the Hub's JSON, checked; None (the result is left out) for one of the wrong shape:
    an id that is not a repository name, counts that are not counts, a date that is not one, gated neither a
    boolean nor "auto"/"manual", tags not a list of strings."""
    if not isinstance(record, dict):
        return None
    repo_id, downloads, likes = record.get("id"), record.get("downloads") or 0, record.get("likes") or 0
    date, gated, tags = record.get("lastModified") or "", record.get("gated") or False, record.get("tags") or []
    try:
        check_repo_id(repo_id if isinstance(repo_id, str) else "")
    except ConfigError:
        return None
    if not (_count(downloads) and _count(likes) and isinstance(date, str) and (not date or DATE_RE.match(date))):
        return None
    if not (isinstance(gated, bool) or gated in ("auto", "manual")):
        return None
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        return None
    return RepoSummary(
        repo_id, downloads=downloads, likes=likes, last_modified=date[:10], gated=gated, tags=tuple(tags)
    )


def info_summary(info, repo_id: str) -> RepoSummary:
    """huggingface_hub's record of one repo (model_info: parsed, not checked), checked like a search result;
    NetworkError for one of the wrong shape, which has nothing to leave out in favour of."""
    modified = info.last_modified
    summary = model_summary(
        {
            "id": info.id,
            "downloads": info.downloads,
            "likes": info.likes,
            "lastModified": modified.date().isoformat() if isinstance(modified, datetime) else modified,
            "gated": info.gated,
            "tags": info.tags,
        }
    )
    if summary is None:
        raise malformed(f"the record of {shown(repo_id)} is not a well-formed repository record")
    return summary


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def tree_part(entry: object, what: str = "file listing") -> RemotePart | None:
    """A file of the Hub's tree listing, checked (None for a folder); NetworkError for an entry of the wrong shape:
    such a listing is refused, not guessed at."""
    kind = entry.get("type") if isinstance(entry, dict) else None
    path = entry.get("path") if isinstance(entry, dict) else None
    if not isinstance(kind, str) or not isinstance(path, str) or not path:
        raise malformed(f"the {what} holds an entry {shown(entry)}")
    if kind != "file":
        return None  # a folder: its files are listed too (recursive)
    size, blob_id, lfs = entry.get("size"), entry.get("oid"), entry.get("lfs")
    if not _count(size):
        raise malformed(f"the {what} gives {shown(path)} the size {shown(size)}, not a number of bytes")
    if not isinstance(blob_id, str) or not (lfs is None or (isinstance(lfs, dict) and isinstance(lfs.get("oid"), str))):
        raise malformed(f"the {what} gives {shown(path)} a checksum that is not a string ({shown(lfs or blob_id)})")
    return RemotePart(path=path, size=size, sha256=lfs["oid"] if lfs else None, blob_id=blob_id)
