"""llama.cpp's GitHub releases: read the release API, pick the asset for this machine, download it verified.

Asset names follow ``llama-b<N>-bin-<os>-[<backend>[-<version>]-]<arch>.<tar.gz|zip>``, for example
``llama-b11101-bin-ubuntu-vulkan-x64.tar.gz``, ``-ubuntu-rocm-7.2-x64``, ``-ubuntu-cuda-12.8-x64`` (with its CUDA
runtime libraries beside it as ``cudart-llama-b11101-bin-ubuntu-cuda-12.8-x64.tar.gz``) and ``-macos-arm64``
(the Metal build). Older releases shipped ``.zip`` files with the same names.

The API's JSON is turned into checked records by release_records.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from ... import __version__
from ..system import backends as registry
from ..system import config
from ..system.errors import AssetNotFound, NetworkError, NotFound, VerificationFailed
from ..system.files import disk_full
from ..system.progress import ProgressCallback, check_cancelled, report
from .release_records import TAG, Asset, Release, malformed, parse_release, shown

_ASSET_NAME = re.compile(
    r"^(?P<cudart>cudart-)?llama-(?P<tag>b\d+)-bin-(?P<os>macos|ubuntu)-"
    r"(?:(?P<backend>[a-z]+)(?:-(?P<variant>[\w.]+))?-)?(?P<arch>x64|arm64)\.(?P<ext>tar\.gz|zip)$"
)
_CHUNK = 256 << 10
# The most of an API answer that is read. GitHub's largest, a page of 100 releases of ~40 assets each (about 1.8 KB
# of JSON per asset, uploader included), weighs ~8 MiB; past this limit the answer is refused, not held in memory.
_JSON_LIMIT = 32 << 20
_TIMEOUT = httpx.Timeout(30.0, connect=10.0)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AssetKind:
    """What an asset name says: which platform and backend it is built for."""

    tag: str
    os: str  # "darwin" | "linux"
    arch: str  # "x64" | "arm64"
    backend: str  # "cpu", "metal", "cuda", "rocm", "vulkan", or another upstream name (sycl, openvino)
    variant: str  # "12.8" for cuda-12.8, "" when none
    cudart: bool  # the CUDA runtime libraries that go beside a CUDA build
    token: str = ""  # the backend as the name spells it ("hip", "" for none)


@dataclass(frozen=True)
class Selection:
    asset: Asset
    backend: str
    companions: tuple[Asset, ...] = ()  # extra archives unpacked into the same folder (CUDA runtime)


@dataclass(frozen=True)
class Downloaded:
    path: Path
    sha256: str
    size: int
    verified: bool  # False only when the caller chose to skip the checksum


def classify(name: str) -> AssetKind | None:
    match = _ASSET_NAME.match(name)
    if not match:
        return None
    os_ = "darwin" if match["os"] == "macos" else "linux"
    token = match["backend"] or ""
    backend = registry.for_asset(os_, match["arch"], token)
    return AssetKind(match["tag"], os_, match["arch"], backend, match["variant"] or "", bool(match["cudart"]), token)


def normalize_tag(tag: str) -> str:
    tag = tag.strip()
    if tag.isdigit():
        tag = f"b{tag}"
    if not TAG.match(tag):
        raise NotFound(f"{tag!r} is not a llama.cpp release tag.", hint="Tags look like b5432.")
    return tag


# --- the release API ---------------------------------------------------------------------------------


def _api_client() -> httpx.Client:
    headers = {
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
        "User-Agent": f"aidevops-local/{__version__}",
    }
    token = config.github_token()
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.Client(headers=headers, timeout=_TIMEOUT, follow_redirects=True)


def _get_json(path: str, *, what: str):
    url = config.releases_url() + path
    try:
        with _api_client() as client, client.stream("GET", url) as response:
            body = _read_limited(response, what)  # an error's body too: the connection then ends cleanly
    except httpx.TimeoutException as exc:
        raise NetworkError(
            f"GitHub did not answer in time while fetching {what}.", hint="Check the network and run the command again."
        ) from exc
    except httpx.HTTPError as exc:
        raise NetworkError(
            f"Could not reach GitHub to fetch {what}: {exc}",
            hint="Check the network (and any proxy) and run the command again.",
        ) from exc
    _raise_for_status(response, what)
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:  # RecursionError: arrays nested thousands deep
        raise NetworkError(
            f"GitHub sent something that is not JSON for {what}.",
            hint="A proxy may be in the way; run the command again later.",
        ) from exc


def _read_limited(response: httpx.Response, what: str) -> bytes:
    """The answer's body, refused as soon as it is known to pass _JSON_LIMIT: by its Content-Length, or by what came."""
    declared = response.headers.get("content-length", "")
    too_large = declared.isascii() and declared.isdigit() and int(declared) > _JSON_LIMIT
    body = bytearray()
    for chunk in () if too_large else response.iter_bytes():
        body += chunk
        if len(body) > _JSON_LIMIT:
            too_large = True
            break
    if too_large:
        raise NetworkError(
            f"GitHub's answer for {what} is too large (over {_JSON_LIMIT >> 20} MiB) and was refused.",
            hint="A proxy or a mirror (AIDEVOPS_LLAMA_RELEASES_URL) may be in the way; run the command again later.",
        )
    return bytes(body)


def _raise_for_status(response: httpx.Response, what: str) -> None:
    status = response.status_code
    if status < 400:
        return
    if status == 404:
        raise NotFound(f"GitHub has no {what}.", hint="See https://github.com/ggml-org/llama.cpp/releases.")
    if status == 401:
        raise NetworkError(
            f"GitHub refused the token while fetching {what} (401).",
            hint="GITHUB_TOKEN is wrong or expired: fix it or unset it.",
        )
    if status == 429 or (status == 403 and response.headers.get("x-ratelimit-remaining") == "0"):
        when = _reset_time(response.headers.get("x-ratelimit-reset", ""))
        raise NetworkError(
            f"GitHub's API rate limit is used up{when}.",
            hint="Wait, or set GITHUB_TOKEN to a GitHub token for a higher limit.",
        )
    if status == 403:
        raise NetworkError(
            f"GitHub refused the request for {what} (403).",
            hint="A token without access, or a blocked network: check GITHUB_TOKEN and proxies.",
        )
    raise NetworkError(
        f"GitHub answered {status} while fetching {what}.",
        hint="GitHub may be having trouble; run the command again later.",
    )


def _reset_time(value: str) -> str:
    """The reset time from x-ratelimit-reset (epoch seconds), for the message; "" unless it is within a day."""
    if not (value.isascii() and value.isdigit()) or len(value) > 12:
        return ""
    reset = int(value)
    if abs(reset - time.time()) > 86400:
        return ""
    return time.strftime(" (it resets at %H:%M)", time.localtime(reset))


def fetch_release(*, tag: str | None = None) -> Release:
    """One release: the one tagged ``tag``, or the latest."""
    if tag:
        tag = normalize_tag(tag)
        return parse_release(_get_json(f"/tags/{tag}", what=f"llama.cpp release {tag}"))
    try:
        return parse_release(_get_json("/latest", what="latest llama.cpp release"))
    except NotFound:
        # /latest skips prereleases; a repository that marks every build one still has a newest build.
        releases = list_releases(limit=10)
        if not releases:
            raise
        return releases[0]


def list_releases(*, limit: int = 30) -> list[Release]:
    """Newest first, drafts left out."""
    data = _get_json(f"?per_page={max(1, min(limit, 100))}", what="the llama.cpp release list")
    if not isinstance(data, list):
        raise malformed("the release list is not a list")
    return [parse_release(item) for item in data if not (isinstance(item, dict) and item.get("draft"))][:limit]


# --- choosing ----------------------------------------------------------------------------------------


def _variant_key(kind: AssetKind) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", kind.variant))


def choose_asset(
    release: Release, *, os: str, arch: str, backends: Sequence[str], cuda_major: int | None = None
) -> Selection:
    """The first of ``backends`` (best first) that the release has a build of for os/arch.

    ``cuda_major``: the newest CUDA major the driver runs. Unknown, the oldest CUDA build is taken: it runs
    on the widest range of drivers."""
    kinds = [(asset, classify(asset.name)) for asset in release.assets]
    here = [(a, k) for a, k in kinds if k and not k.cudart and (k.os, k.arch) == (os, arch)]
    for wanted in backends:
        # The registry's asset patterns say which builds run it: on a Mac the Metal build also runs on the CPU.
        matches = [(a, k) for a, k in here if k.backend == wanted or registry.runs_build_of(wanted, os, arch, k.token)]
        record = registry.get(wanted)
        if record and record.versioned_by_driver and matches:
            usable = [m for m in matches if cuda_major is None or _variant_key(m[1])[:1] <= (cuda_major,)]
            if not usable:
                continue
            if cuda_major is None:
                oldest_major = min(_variant_key(k)[:1] for _, k in usable)
                usable = [m for m in usable if _variant_key(m[1])[:1] == oldest_major]
            matches = usable
        if not matches:
            continue
        # Newest variant first; among equals, tar.gz (what current releases ship) before zip.
        asset, kind = max(matches, key=lambda m: (_variant_key(m[1]), m[0].name.endswith(".tar.gz")))
        companions = tuple(a for a in release.assets if a.name == f"cudart-{asset.name}")
        for chosen in (asset, *companions):
            if chosen.problem:
                raise VerificationFailed(
                    f"GitHub's record of {chosen.name} in release {release.tag} is malformed: {chosen.problem}.",
                    hint="Nothing was downloaded. Run the command again later, or pick another release with --tag.",
                )
        return Selection(asset=asset, backend=kind.backend, companions=companions)
    raise _no_asset(release, os, arch, backends)


def _no_asset(release: Release, os: str, arch: str, backends: Sequence[str]) -> AssetNotFound:
    platform = f"{os}-{arch}"
    builds = sorted(
        {
            f"{k.backend}{'-' + k.variant if k.variant else ''}"
            for k in map(classify, (a.name for a in release.assets))
            if k and not k.cudart and (k.os, k.arch) == (os, arch)
        }
    )
    if builds:
        there = f"It has these {platform} builds: {', '.join(builds)}."
        hint = f"Pick one with --backend {' | '.join(sorted({b.split('-')[0] for b in builds}))}."
    else:
        names = [a.name if a.name.isprintable() else shown(a.name) for a in release.assets]  # no escapes
        there = f"It has no {platform} build at all; its assets are: {', '.join(names) or 'none'}."
        hint = (
            "Install llama.cpp from your package manager and run `aidevops-local install --use-system`, "
            "or pick another release with --tag."
        )
    if release.skipped:
        there += f" Left out as malformed: {', '.join(release.skipped)}."
    return AssetNotFound(
        f"llama.cpp {release.tag} has no {' or '.join(backends)} build for {platform}. {there}", hint=hint
    )


# --- downloading -------------------------------------------------------------------------------------


def download_asset(
    *,
    asset: Asset,
    dest: Path,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    insecure_skip_checksum: bool = False,
) -> Downloaded:
    """Stream ``asset`` into ``dest`` (a new file), hashing as it goes, and check it against the asset's digest.

    On any failure, cancellation or interrupt, ``dest`` is removed before the error leaves."""
    expected = asset.sha256
    if expected is None and not insecure_skip_checksum:
        raise VerificationFailed(
            f"{asset.name} has no sha256 digest in the release, so it cannot be verified.",
            hint="Pick a newer release with --tag, or pass --insecure-skip-checksum "
            "if you trust the network path to GitHub.",
        )
    dest.touch(exist_ok=False)  # before the try: a file that was already there is not ours to delete
    try:
        actual, done = _fetch(asset, dest, progress, cancel)
        if expected is not None and actual != expected:
            raise VerificationFailed(
                f"{asset.name} does not match its published checksum: expected sha256 "
                f"{expected}, got {actual}. The download was deleted.",
                hint="Run the command again; if it repeats, the file or the network "
                "path to GitHub has been tampered with.",
            )
        return Downloaded(path=dest, sha256=actual, size=done, verified=expected is not None)
    except BaseException as exc:
        done = dest.stat().st_size if dest.exists() else 0
        dest.unlink(missing_ok=True)
        error = _download_error(exc, asset.name, done)
        if error is exc:
            raise
        raise error from exc


def _fetch(
    asset: Asset, dest: Path, progress: ProgressCallback | None, cancel: threading.Event | None
) -> tuple[str, int]:
    """Write the asset's bytes into ``dest``: (their sha256, their count). Never more than the size GitHub lists:
    a host that says or sends more is refused as soon as it does, before the extra bytes reach the disk."""
    digest = hashlib.sha256()
    done = 0
    task = f"Downloading {asset.name}"
    headers = {
        "User-Agent": f"aidevops-local/{__version__}",
        "Accept": "application/octet-stream",
        "Accept-Encoding": "identity",  # the byte counts must be the file's own
    }
    with (
        open(dest, "wb") as out,
        httpx.Client(timeout=_TIMEOUT, follow_redirects=True, headers=headers) as client,
        client.stream("GET", asset.url) as response,
    ):
        _raise_for_status(response, f"file {asset.name}")
        size = _expected_size(asset, response.headers.get("content-length"))
        report(progress, task, 0, size or None)
        for chunk in response.iter_bytes(_CHUNK):
            check_cancelled(cancel)
            if size and done + len(chunk) > size:
                raise _size_mismatch(asset.name, size, f"sent more ({done + len(chunk):,} when it was stopped)")
            out.write(chunk)
            digest.update(chunk)
            done += len(chunk)
            report(progress, task, done, size or None)
    if size and done < size:
        raise NetworkError(
            f"The download of {asset.name} stopped after {done} of {size} bytes.", hint="Run the command again."
        )
    return digest.hexdigest(), done


def _expected_size(asset: Asset, content_length: str | None) -> int:
    """The size GitHub lists (the host's Content-Length when it lists none); 0 when neither says."""
    digits = content_length and content_length.isascii() and content_length.isdigit()
    declared = int(content_length) if digits else None  # httpx refuses a Content-Length that is not digits
    if asset.size and declared is not None and declared != asset.size:
        raise _size_mismatch(asset.name, asset.size, f"says it sends {declared:,}")
    return asset.size or declared or 0


def _size_mismatch(name: str, size: int, host: str) -> VerificationFailed:
    return VerificationFailed(
        f"GitHub lists {name} as {size:,} bytes, but its download host {host}. The download was stopped and deleted.",
        hint="Run the command again; if it repeats, the file or the network path to GitHub has been tampered with.",
    )


def _download_error(exc: BaseException, name: str, done: int) -> BaseException:
    if isinstance(exc, httpx.TimeoutException):
        return NetworkError(
            f"The download of {name} stalled after {done} bytes.", hint="Check the network and run the command again."
        )
    if isinstance(exc, httpx.HTTPError):
        return NetworkError(
            f"The download of {name} broke off after {done} bytes: {exc}",
            hint="Check the network and run the command again.",
        )
    return disk_full(exc, f"downloading {name}")
