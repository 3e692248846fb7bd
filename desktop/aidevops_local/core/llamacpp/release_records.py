"""GitHub's record of a llama.cpp release, checked rather than trusted: the release and its assets as the API
describes them, turned into frozen records. A malformed release is an error; a malformed asset is kept with its
problem (an error only if it is the one chosen) and an asset without a name is left out.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from ..system.errors import NetworkError

TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SHA256_DIGEST = re.compile(r"^sha256:[0-9a-fA-F]{64}$")

log = logging.getLogger("aidevops_local.core.llamacpp.releases")


@dataclass(frozen=True)
class Asset:
    name: str
    url: str  # browser_download_url
    size: int
    digest: str | None = None  # GitHub's "sha256:<hex>"; absent on assets uploaded before mid-2025
    problem: str | None = None  # what is wrong with GitHub's record of it; such an asset is never downloaded

    @property
    def sha256(self) -> str | None:
        if self.digest and self.digest.lower().startswith("sha256:"):
            return self.digest.split(":", 1)[1].lower()
        return None


@dataclass(frozen=True)
class Release:
    tag: str
    assets: tuple[Asset, ...]
    published_at: str | None = None
    prerelease: bool = False
    skipped: tuple[str, ...] = ()  # why assets of the release were left out (records without a name)

    @property
    def build(self) -> int | None:
        return build_number(self.tag)


def build_number(tag: str) -> int | None:
    match = re.fullmatch(r"b(\d+)", tag or "")
    return int(match.group(1)) if match else None


def parse_release(data: object) -> Release:
    """A release from the API's JSON, which is checked, not trusted: a malformed release is an error, a
    malformed asset is kept with its problem (an error only if it is the one chosen) or, without a name,
    left out."""
    if not isinstance(data, dict):
        raise malformed("it is not a release record")
    tag = data.get("tag_name")
    if not isinstance(tag, str) or not TAG.match(tag):
        raise malformed(f"its tag_name is {shown(tag)}")
    items = data.get("assets")
    if not isinstance(items, list):
        raise malformed(f"release {tag} has assets {shown(items)} instead of a list")
    assets: list[Asset] = []
    skipped: list[str] = []
    for item in items:
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or not name:
            skipped.append(f"an asset without a name ({shown(name)})")
            continue
        assets.append(_asset(name, item))
    for reason in skipped:
        log.warning("GitHub's release %s lists %s; it was left out", tag, reason)
    published = data.get("published_at")
    return Release(
        tag=tag,
        assets=tuple(assets),
        published_at=published if isinstance(published, str) else None,
        prerelease=data.get("prerelease") is True,
        skipped=tuple(skipped),
    )


def _asset(name: str, item: dict) -> Asset:
    url, size, digest = item.get("browser_download_url"), item.get("size"), item.get("digest")
    problems = []
    if not isinstance(url, str) or not url:
        problems.append(f"its download address is {shown(url)}")
        url = ""
    # The size bounds the download (a host that sends more is cut off), so an archive without one is not fetched.
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        problems.append(f"its size is {shown(size)}, not a number of bytes")
        size = 0
    if digest is not None and not (
        isinstance(digest, str) and (SHA256_DIGEST.match(digest) or not digest.lower().startswith("sha256:"))
    ):
        problems.append(f"its digest is {shown(digest)}, not sha256:<64 hex digits>")
        digest = None
    return Asset(name=name, url=url, size=size, digest=digest or None, problem="; ".join(problems) or None)


def shown(value: object) -> str:
    """A value from the network, short and on one line, for a message."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def malformed(what: str) -> NetworkError:
    # Like an answer that is not JSON: what came back is not what GitHub sends.
    return NetworkError(
        f"GitHub's release data is malformed: {what}.",
        hint="A proxy or a mirror (AIDEVOPS_LLAMA_RELEASES_URL) may be in the way; run the command again later.",
    )
