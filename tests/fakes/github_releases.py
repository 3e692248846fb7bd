"""A local GitHub releases API (``/repos/{owner}/{repo}/releases``) and its download host, on 127.0.0.1.

    with FakeReleases() as gh:
        gh.add_release("b10068", {"llama-b10068-bin-ubuntu-x64.tar.gz": archive_path})
        os.environ["AIDEVOPS_LLAMA_RELEASES_URL"] = gh.base_url
        # the product reads <base>/latest, <base>/tags/<tag> and <base> (list, newest first)

Release and asset JSON follow GitHub's REST API, including the asset ``digest`` ("sha256:<hex>", null for
assets uploaded before GitHub computed digests). ``browser_download_url`` points back here: like github.com it
answers 302 to an "objects" URL that serves the bytes (``redirect_downloads=False`` serves them directly), so
a client that does not follow redirects fails here as it would against GitHub.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, unquote

from . import CHUNK, Blob, FakeHTTPServer, Fault, FaultTable, Request, http_date, timestamp

_BASE_TIME = datetime(2025, 6, 1, tzinfo=UTC).timestamp()
_HASH_CACHE: dict[tuple[str, int, int], str] = {}
_HASH_LOCK = threading.Lock()


def _sha256(source: Path | bytes) -> str:
    """sha256 of a file or bytes; files are cached by (path, size, mtime) since tests reuse big archives."""
    if isinstance(source, bytes):
        return hashlib.sha256(source).hexdigest()
    st = source.stat()
    key = (str(source.resolve()), st.st_size, st.st_mtime_ns)
    with _HASH_LOCK:
        if key in _HASH_CACHE:
            return _HASH_CACHE[key]
    h = hashlib.sha256()
    with open(source, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    with _HASH_LOCK:
        _HASH_CACHE[key] = h.hexdigest()
    return h.hexdigest()


def _content_type(name: str) -> str:
    if name.endswith(".zip"):
        return "application/zip"
    if name.endswith((".tar.gz", ".tgz")):
        return "application/gzip"
    return "application/octet-stream"


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


@dataclass
class _Asset:
    id: int
    name: str
    blob: Blob
    size: int
    digest: str | None
    content_type: str
    downloads: int = 0
    fields: dict = field(default_factory=dict)  # replaces keys of the asset's JSON (malformed records)


@dataclass
class _Release:
    id: int
    tag: str
    name: str
    published_at: float
    draft: bool
    prerelease: bool
    body: str
    assets: list[_Asset] = field(default_factory=list)
    fields: dict = field(default_factory=dict)  # replaces keys of the release's JSON (malformed records)


class FakeReleases(FakeHTTPServer):
    """GitHub's releases API for one repository, plus the download host for its assets.

    Routes (``{repo}`` is ``owner/name``):
      GET /repos/{repo}/releases?per_page=&page=   list, newest published first, GitHub's Link pagination
      GET /repos/{repo}/releases/latest            newest non-draft, non-prerelease; 404 if none
      GET /repos/{repo}/releases/tags/{tag}        one release, 404 if unknown
      GET /repos/{repo}/releases/{id}
      GET /repos/{repo}/releases/assets/{id}       asset JSON (Accept: application/octet-stream: the bytes)
      GET|HEAD /{repo}/releases/download/{tag}/{name}   302 -> /objects/{asset_id}/{name} (or the bytes)
      GET|HEAD /objects/{asset_id}/{name}          the bytes: Range -> 206, faults applied
    JSON and bytes are served with Content-Length, or chunked without one when ``chunked`` is set.
    Anything else answers 404 with GitHub's {"message": "Not Found", ...} body.
    """

    def __init__(self, repo: str = "ggml-org/llama.cpp", *, redirect_downloads: bool = True, per_page: int = 30):
        super().__init__()
        self.repo = repo
        self.redirect_downloads = redirect_downloads
        self.default_per_page = per_page
        self._releases: list[_Release] = []
        self._ids = itertools.count(1000)
        self._faults = FaultTable()
        self.rate_limited = False  # True: every API call answers 403 "API rate limit exceeded"
        self.rate_limit_reset: str | None = None  # the X-RateLimit-Reset it sends then (default: in an hour)
        self.chunked = False  # True: every body is sent chunked, without Content-Length (and Range is ignored)
        self.throttle_bps: int | None = None  # applies to every download

    # --- URLs ---

    @property
    def api_url(self) -> str:
        """Stand-in for https://api.github.com."""
        return self.origin

    @property
    def base_url(self) -> str:
        """What the product is configured with (AIDEVOPS_LLAMA_RELEASES_URL)."""
        return f"{self.origin}/repos/{self.repo}/releases"

    def download_url(self, tag: str, name: str) -> str:
        return f"{self.origin}/{self.repo}/releases/download/{quote(tag)}/{quote(name)}"

    def download_path(self, tag: str, name: str) -> str:
        """The path of browser_download_url, for ``hits()``."""
        return f"/{self.repo}/releases/download/{quote(tag)}/{quote(name)}"

    # --- setup ---

    def add_release(
        self,
        tag: str,
        assets: dict[str, Path | bytes] | None = None,
        *,
        digest_override: dict[str, str] | None = None,
        omit_digest: set[str] | None = None,
        published_at: str | datetime | float | None = None,
        name: str | None = None,
        prerelease: bool = False,
        draft: bool = False,
        body: str = "",
        asset_fields: dict[str, dict] | None = None,
        release_fields: dict | None = None,
    ) -> dict:
        """Publish a release. Returns its JSON as the API serves it.

        digest_override: asset name -> digest to advertise instead of the real one ("sha256:<hex>" or hex).
        omit_digest: asset names whose digest is null (as for assets uploaded before mid-2025).
        published_at: defaults to one hour after the previously added release, so the last added is newest.
        asset_fields: asset name -> JSON keys to serve instead of the true ones, for malformed records
        ({"digest": 5}, {"size": "12"}, {"name": None}); downloads still find the asset by its true name.
        release_fields: the same for the release's own keys ({"tag_name": None}, {"assets": "none"}).
        """
        digest_override = digest_override or {}
        omit_digest = omit_digest or set()
        asset_fields = asset_fields or {}
        with self._lock:
            if any(r.tag == tag for r in self._releases):
                raise ValueError(f"release {tag} already exists")
            ts = timestamp(published_at)
            if ts is None:
                ts = max((r.published_at for r in self._releases), default=_BASE_TIME) + 3600
            rel = _Release(
                next(self._ids),
                tag,
                name if name is not None else tag,
                ts,
                draft,
                prerelease,
                body,
                fields=dict(release_fields or {}),
            )
            for asset_name, source in (assets or {}).items():
                src = Path(source) if not isinstance(source, bytes) else source
                blob = Blob(src)
                if asset_name in omit_digest:
                    digest = None
                elif asset_name in digest_override:
                    d = digest_override[asset_name]
                    digest = d if d.startswith("sha256:") else f"sha256:{d}"
                else:
                    digest = f"sha256:{_sha256(src)}"
                rel.assets.append(
                    _Asset(
                        next(self._ids),
                        asset_name,
                        blob,
                        blob.size,
                        digest,
                        _content_type(asset_name),
                        fields=dict(asset_fields.get(asset_name, {})),
                    )
                )
            self._releases.append(rel)
            return self._release_json(rel)

    def remove_release(self, tag: str) -> None:
        with self._lock:
            self._releases = [r for r in self._releases if r.tag != tag]

    # --- faults (keyed by asset name; they apply to the request that carries the bytes) ---

    def fault(self, asset_name: str, fault: Fault) -> None:
        self._faults.add(asset_name, fault)

    def truncate(self, asset_name: str, after_bytes: int, times: int | None = None) -> None:
        """Send the full Content-Length, then close the connection after this many body bytes."""
        self._faults.add(asset_name, Fault(drop_after=after_bytes, times=times))

    def throttle(self, bytes_per_s: int, asset_name: str | None = None) -> None:
        if asset_name is None:
            self.throttle_bps = bytes_per_s
        else:
            self._faults.add(asset_name, Fault(throttle_bps=bytes_per_s))

    def tamper(self, asset_name: str, times: int | None = None) -> None:
        """Serve the asset with one byte flipped while its JSON keeps the true size and digest."""
        self._faults.add(asset_name, Fault(tamper=True, times=times))

    def fail(self, asset_name: str, status: int, times: int | None = 1) -> None:
        """Answer downloads of this asset with an HTTP error status."""
        self._faults.add(asset_name, Fault(status=status, times=times))

    def clear_faults(self) -> None:
        self._faults.clear()
        self.throttle_bps = None
        self.rate_limited = False

    # --- inspection ---

    def downloads(self, asset_name: str) -> int:
        """How many responses started sending this asset's bytes (GET, not HEAD, not redirects)."""
        with self._lock:
            return sum(a.downloads for r in self._releases for a in r.assets if a.name == asset_name)

    # --- JSON ---

    def _asset_json(self, rel: _Release, a: _Asset) -> dict:
        api = f"{self.origin}/repos/{self.repo}/releases/assets/{a.id}"
        return {
            "url": api,
            "id": a.id,
            "node_id": f"RA_fake{a.id}",
            "name": a.name,
            "label": "",
            "uploader": _BOT,
            "content_type": a.content_type,
            "state": "uploaded",
            "size": a.size,
            "digest": a.digest,
            "download_count": a.downloads,
            "created_at": _iso(rel.published_at - 600),
            "updated_at": _iso(rel.published_at - 300),
            "browser_download_url": self.download_url(rel.tag, a.name),
            **a.fields,
        }

    def _release_json(self, rel: _Release) -> dict:
        api = f"{self.origin}/repos/{self.repo}/releases/{rel.id}"
        return {
            "url": api,
            "assets_url": f"{api}/assets",
            "upload_url": f"{self.origin}/repos/{self.repo}/releases/{rel.id}/assets{{?name,label}}",
            "html_url": f"{self.origin}/{self.repo}/releases/tag/{quote(rel.tag)}",
            "id": rel.id,
            "author": _BOT,
            "node_id": f"RE_fake{rel.id}",
            "tag_name": rel.tag,
            "target_commitish": "master",
            "name": rel.name,
            "draft": rel.draft,
            "immutable": False,
            "prerelease": rel.prerelease,
            "created_at": _iso(rel.published_at - 900),
            "updated_at": _iso(rel.published_at),
            "published_at": None if rel.draft else _iso(rel.published_at),
            "assets": [self._asset_json(rel, a) for a in rel.assets],
            "tarball_url": f"{self.origin}/repos/{self.repo}/tarball/{quote(rel.tag)}",
            "zipball_url": f"{self.origin}/repos/{self.repo}/zipball/{quote(rel.tag)}",
            "body": rel.body,
            **rel.fields,
        }

    def _sorted(self) -> list[_Release]:
        # GitHub lists newest first; drafts are visible only to collaborators, so never here.
        return sorted((r for r in self._releases if not r.draft), key=lambda r: r.published_at, reverse=True)

    # --- routing ---

    def handle(self, req: Request) -> None:
        path = req.path
        api = f"/repos/{self.repo}/releases"
        if path.startswith("/repos/"):
            if self.rate_limited:
                return self._rate_limit(req)
            if path in (api, api + "/"):
                return self._list(req)
            rest = path[len(api) + 1 :] if path.startswith(api + "/") else None
            if rest == "latest":
                with self._lock:
                    rels = [r for r in self._sorted() if not r.prerelease]
                return self._json_or_404(req, self._release_json(rels[0]) if rels else None)
            if rest is not None and rest.startswith("tags/"):
                tag = unquote(rest[5:])
                with self._lock:
                    rel = next((r for r in self._releases if r.tag == tag and not r.draft), None)
                return self._json_or_404(req, self._release_json(rel) if rel else None)
            if rest is not None and (m := re.fullmatch(r"assets/(\d+)", rest)):
                found = self._asset_by_id(int(m.group(1)))
                if found and "application/octet-stream" in (req.headers.get("Accept") or ""):
                    return self._redirect_or_serve(req, *found)
                return self._json_or_404(req, self._asset_json(*found) if found else None)
            if rest is not None and rest.isdigit():
                with self._lock:
                    rel = next((r for r in self._releases if r.id == int(rest)), None)
                return self._json_or_404(req, self._release_json(rel) if rel else None)
            return self._not_found(req)
        dl = f"/{self.repo}/releases/download/"
        if path.startswith(dl) and req.method in ("GET", "HEAD"):
            tag, _, name = path[len(dl) :].partition("/")
            tag, name = unquote(tag), unquote(name)
            with self._lock:
                rel = next((r for r in self._releases if r.tag == tag), None)
                asset = next((a for a in rel.assets if a.name == name), None) if rel else None
            if asset is None:
                return req.send(404, b"Not Found", content_type="text/plain; charset=utf-8")
            return self._redirect_or_serve(req, rel, asset)
        if (m := re.fullmatch(r"/objects/(\d+)/([^/]+)", path)) and req.method in ("GET", "HEAD"):
            found = self._asset_by_id(int(m.group(1)))
            if found is None or found[1].name != unquote(m.group(2)):
                return req.send(404, b"Not Found", content_type="text/plain; charset=utf-8")
            return self._serve(req, *found)
        return self._not_found(req)

    def _asset_by_id(self, asset_id: int) -> tuple[_Release, _Asset] | None:
        with self._lock:
            for r in self._releases:
                for a in r.assets:
                    if a.id == asset_id:
                        return r, a
        return None

    def _list(self, req: Request) -> None:
        try:
            per_page = max(1, min(100, int(req.param("per_page") or self.default_per_page)))
            page = max(1, int(req.param("page") or 1))
        except ValueError:
            return self._send_json(req, 400, {"message": "Invalid request.", "status": "400"})
        with self._lock:
            rels = self._sorted()
            items = [self._release_json(r) for r in rels[(page - 1) * per_page : page * per_page]]
        headers = {}
        last = max(1, -(-len(rels) // per_page))
        base = f"{self.base_url}?per_page={per_page}"
        links = []
        if page < last:
            links += [f'<{base}&page={page + 1}>; rel="next"', f'<{base}&page={last}>; rel="last"']
        if page > 1:
            links += [f'<{base}&page={page - 1}>; rel="prev"', f'<{base}&page=1>; rel="first"']
        if links:
            headers["Link"] = ", ".join(links)
        self._send_json(req, 200, items, {**headers, **_RATE_HEADERS()})

    def _json_or_404(self, req: Request, obj: dict | None) -> None:
        if obj is None:
            return self._not_found(req)
        self._send_json(req, 200, obj, _RATE_HEADERS())

    def _not_found(self, req: Request) -> None:
        self._send_json(
            req,
            404,
            {
                "message": "Not Found",
                "documentation_url": "https://docs.github.com/rest/releases/releases",
                "status": "404",
            },
            _RATE_HEADERS(),
        )

    def _rate_limit(self, req: Request) -> None:
        reset = self.rate_limit_reset if self.rate_limit_reset is not None else str(int(time.time()) + 3600)
        self._send_json(
            req,
            403,
            {
                "message": "API rate limit exceeded for 127.0.0.1. (But here's the good news: "
                "Authenticated requests "
                "get a higher rate limit. Check out the documentation for more details.)",
                "documentation_url": "https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting",
            },
            {
                "X-RateLimit-Limit": "60",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": reset,
                "X-RateLimit-Used": "60",
                "X-RateLimit-Resource": "core",
            },
        )

    def _redirect_or_serve(self, req: Request, rel: _Release, asset: _Asset) -> None:
        if not self.redirect_downloads:
            return self._serve(req, rel, asset)
        # github.com answers 302 to a signed, short-lived objects URL; the query mimics its shape.
        loc = f"{self.origin}/objects/{asset.id}/{quote(asset.name)}?sp=r&sv=2018-11-09&sig=fake"
        req.send(302, b"", {"Location": loc}, content_type="text/html; charset=utf-8")

    def _serve(self, req: Request, rel: _Release, asset: _Asset) -> None:
        fault = self._faults.take(asset.name, self.throttle_bps, head=req.method == "HEAD")
        if fault and fault.status:
            return req.send(
                fault.status, f"fake error {fault.status}".encode(), content_type="text/plain; charset=utf-8"
            )
        if req.method == "GET":
            with self._lock:
                asset.downloads += 1
        headers = {
            "Content-Disposition": f"attachment; filename={asset.name}",
            "Last-Modified": http_date(rel.published_at),
            "ETag": f'"0x{asset.id:X}"',
        }
        if self.chunked:
            pieces = asset.blob.iter_range(0, asset.blob.size)
            count = self.count_bytes(asset.name)
            return self._send_chunked(req, 200, pieces, headers, "application/octet-stream", count)
        req.send_blob(
            asset.blob,
            headers=headers,
            fault=fault,
            count=self.count_bytes(asset.name),
            stopping=self._stopping,
            content_type="application/octet-stream",
        )

    def _send_json(self, req: Request, status: int, obj, headers: dict[str, str] | None = None) -> None:
        if not self.chunked:
            return req.send_json(status, obj, headers)
        body = json.dumps(obj).encode()
        pieces = (body[i : i + CHUNK] for i in range(0, len(body), CHUNK))
        self._send_chunked(req, status, pieces, headers or {}, "application/json; charset=utf-8")

    def _send_chunked(self, req: Request, status: int, pieces, headers: dict[str, str], content_type: str, count=None):
        """Like Request.send, but with Transfer-Encoding: chunked: written piece by piece, so a client that stops
        reading stops it (``record.body_bytes`` says how far it got)."""
        h = req.h
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Transfer-Encoding", "chunked")
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        req.record.status = status
        if req.method == "HEAD":
            return
        try:
            for piece in pieces:
                if self._stopping.is_set():
                    raise ConnectionAbortedError("server stopping")
                h.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                req.record.body_bytes += len(piece)
                if count:
                    count(len(piece))
            h.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            h.close_connection = True


_BOT = {"login": "github-actions[bot]", "id": 41898282, "type": "Bot", "site_admin": False}


def _RATE_HEADERS() -> dict[str, str]:  # noqa: N802 - reads like the constant it nearly is
    return {
        "X-RateLimit-Limit": "5000",
        "X-RateLimit-Remaining": "4999",
        "X-RateLimit-Reset": str(int(time.time()) + 3600),
        "X-RateLimit-Used": "1",
        "X-RateLimit-Resource": "core",
    }
