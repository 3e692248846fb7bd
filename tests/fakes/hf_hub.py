"""A local Hugging Face Hub that the real ``huggingface_hub`` client (2.4.0) talks to through its endpoint.

    with FakeHub() as hub:
        hub.add_repo("org/tiny-GGUF", files={"tiny.Q8_0.gguf": path, "README.md": b"# tiny"}, downloads=123)
        HfApi(endpoint=hub.endpoint).model_info("org/tiny-GGUF", files_metadata=True)
        hf_hub_download("org/tiny-GGUF", "tiny.Q8_0.gguf", endpoint=hub.endpoint)

Note: huggingface_hub reads ``HF_ENDPOINT`` once, when it is first imported; setting it later (monkeypatch)
does not move module-level helpers such as ``hf_hub_download``. Pass ``endpoint=hub.endpoint`` explicitly (as
the product should, from its own configuration), or set the variable before anything imports the library.

Routes and payloads were taken from huggingface_hub 2.4.0's source (hf_api.py, file_download.py,
utils/_http.py, utils/_pagination.py):

  GET  /api/models?search=&author=&filter=&sort=&direction=&limit=&full=&expand=&gated=&cursor=
  GET  /api/models/{repo}                  [?blobs=true&expand=...]
  GET  /api/models/{repo}/revision/{rev}   same, at a revision (rev URL-quoted: refs%2Fpr%2F1)
  GET  /api/models/{repo}/tree/{rev}[/{path}]?recursive=&expand=   (path may be one %2F-quoted segment)
  POST /api/models/{repo}/paths-info/{rev}  form (paths=a&paths=b&expand=) or JSON {"paths": [...]}
  GET  /api/whoami-v2
  HEAD|GET /{repo}/resolve/{rev}/{path}    the file, Range -> 206; no X-Xet-* headers (plain HTTP download)
  With lfs_redirect=True, LFS files answer 302 to a second server (the "CDN", another port, so another
  origin): huggingface_hub then drops the Authorization header, and the CDN answers 400 if one arrives.
Lists paginate with a Link: <...&cursor=N>; rel="next" header when longer than ``page_size``; ``rewrite``
makes a listing's page or its next link lie (a hostile or broken Hub).
Errors carry X-Error-Code / X-Error-Message (RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo) and a
JSON {"error": ...} body, which is what huggingface_hub maps to its exception types.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import struct
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

from . import Blob, FakeHTTPServer, Fault, FaultTable, Request, iso8601, link_header, paginate, timestamp

# Extensions stored in Git LFS by the Hub's default .gitattributes (the part that matters here).
LFS_SUFFIXES = (
    ".gguf",
    ".bin",
    ".safetensors",
    ".pt",
    ".pth",
    ".ckpt",
    ".onnx",
    ".zip",
    ".gz",
    ".tar",
    ".h5",
    ".msgpack",
    ".model",
    ".npy",
    ".pkl",
    ".zst",
    ".xz",
    ".7z",
)
LFS_MIN_SIZE = 10 * 1024 * 1024
_BASE_TIME = datetime(2025, 1, 1, tzinfo=UTC).timestamp()

_DIGEST_CACHE: dict[tuple[str, int, int], tuple[str, str]] = {}
_GGUF_CACHE: dict[tuple[str, int, int], dict | None] = {}
_CACHE_LOCK = threading.Lock()


def _file_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path.resolve()), st.st_size, st.st_mtime_ns


def _digests(source: Path | bytes) -> tuple[str, str]:
    """(sha256, git blob sha1) in one pass; files cached by (path, size, mtime) as tests reuse big models."""
    if isinstance(source, bytes):
        return hashlib.sha256(source).hexdigest(), hashlib.sha1(b"blob %d\0" % len(source) + source).hexdigest()
    key = _file_key(source)
    with _CACHE_LOCK:
        if key in _DIGEST_CACHE:
            return _DIGEST_CACHE[key]
    s256, s1 = hashlib.sha256(), hashlib.sha1(b"blob %d\0" % key[1])
    with open(source, "rb") as fh:
        while chunk := fh.read(1 << 20):
            s256.update(chunk)
            s1.update(chunk)
    out = (s256.hexdigest(), s1.hexdigest())
    with _CACHE_LOCK:
        _DIGEST_CACHE[key] = out
    return out


@dataclass
class HubFile:
    path: str
    blob: Blob
    size: int
    sha256: str
    git_sha1: str  # of the content (regular files) ...
    lfs: bool
    pointer: bytes = b""  # ... or of this LFS pointer (LFS files), as git stores the pointer
    listed: dict = field(default_factory=dict)  # what the listings claim instead (FakeHub.advertise)

    @property
    def oid(self) -> str:
        """The git blob id the Hub reports (``oid`` in tree listings, ``blobId`` in siblings)."""
        if self.lfs:
            return hashlib.sha1(b"blob %d\0" % len(self.pointer) + self.pointer).hexdigest()
        return self.git_sha1

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.git_sha1


@dataclass
class Commit:
    sha: str
    title: str
    date: float
    files: dict[str, HubFile]


@dataclass
class HubRepo:
    repo_id: str
    commits: list[Commit]
    gated: bool | str
    allowed_tokens: set[str]
    private: bool
    downloads: int
    likes: int
    created_at: float
    last_modified: float
    tags: list[str]
    pipeline_tag: str | None
    library_name: str | None
    gguf: dict | None | bool  # None: computed from the first .gguf file; False: omitted; dict: as given
    card_data: dict | None
    object_id: str = field(default_factory=lambda: uuid.uuid4().hex[:24])

    @property
    def head(self) -> Commit:
        return self.commits[-1]

    def commit(self, rev: str) -> Commit | None:
        if rev == "main":
            return self.head
        return next((c for c in self.commits if c.sha == rev), None)


class _HubError(Exception):
    def __init__(self, status: int, code: str | None, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


class FakeHub(FakeHTTPServer):
    """Model repositories served the way huggingface.co serves them. Start/stop it, or use ``with``."""

    def __init__(self, *, lfs_redirect: bool = False, page_size: int = 1000, strict_tokens: bool = False):
        """lfs_redirect: LFS files answer 302 to a CDN on another port (as huggingface.co does).
        page_size: entries per page of /api/models and /tree before a Link "next" header.
        strict_tokens: a bearer token the hub does not know (``add_user`` or a repo's allowed_tokens) gets 401
        "Invalid credentials in Authorization header", as on the real Hub.
        """
        super().__init__()
        self.repos: dict[str, HubRepo] = {}
        self.users: dict[str, str] = {}  # token -> user name
        self.lfs_redirect = lfs_redirect
        self.page_size = page_size
        self.strict_tokens = strict_tokens
        self.throttle_bps: int | None = None
        self._faults = FaultTable()
        self._rewrites: dict[str, Callable[[Request, list, str | None], tuple[Any, str | None]]] = {}
        self._seq = itertools.count(1)
        self.cdn = _Cdn(self) if lfs_redirect else None

    # --- lifecycle ---

    def start(self):
        super().start()
        if self.cdn is not None:
            self.cdn.start()
        return self

    def stop(self) -> None:
        if self.cdn is not None:
            self.cdn.stop()
        super().stop()

    @property
    def endpoint(self) -> str:
        """What HF_ENDPOINT / HfApi(endpoint=...) should be."""
        return self.origin

    # --- setup ---

    def add_repo(
        self,
        repo_id: str,
        files: dict[str, Path | bytes],
        *,
        gated: bool | str = False,
        allowed_tokens: set[str] | list[str] | None = None,
        private: bool = False,
        downloads: int = 0,
        likes: int = 0,
        last_modified: str | datetime | float | None = None,
        created_at: str | datetime | float | None = None,
        tags: list[str] | None = None,
        pipeline_tag: str | None = "text-generation",
        library_name: str | None = None,
        gguf: dict | None | bool = None,
        card_data: dict | None = None,
        lfs: set[str] | None = None,
        commit_message: str = "initial commit",
    ) -> str:
        """Create (or replace) a repo whose main branch holds ``files``. Returns the commit sha.

        gated: False, True/"auto" or "manual". Gated (and private) repos serve files only to a bearer token in
        allowed_tokens: none -> 401, another token -> 403, both with X-Error-Code: GatedRepo. Metadata (info,
        tree, paths-info) stays public for gated repos, as on the Hub.
        tags: default ["gguf"] when a .gguf file is present. lfs: which paths are LFS (default: by
        extension or size >= 10 MiB).
        """
        if repo_id.count("/") != 1:
            raise ValueError("repo_id must be 'org/name'")
        n = next(self._seq)
        created = timestamp(created_at) or _BASE_TIME + n * 86400
        if tags is None:
            tags = ["gguf"] if any(p.endswith(".gguf") for p in files) else []
        repo = HubRepo(
            repo_id,
            [],
            "auto" if gated is True else gated,
            set(allowed_tokens or ()),
            private,
            downloads,
            likes,
            created,
            timestamp(last_modified) or created,
            list(tags),
            pipeline_tag,
            library_name,
            gguf,
            card_data,
        )
        with self._lock:
            self.repos[repo_id] = repo
        self._commit(repo, self._files(files, lfs), commit_message, date=repo.last_modified)
        return repo.head.sha

    def commit(
        self,
        repo_id: str,
        files: dict[str, Path | bytes] | None = None,
        *,
        delete: list[str] = (),
        message: str = "update",
        lfs: set[str] | None = None,
    ) -> str:
        """Make a new commit on main (add/replace ``files``, remove ``delete``). Old shas stay resolvable."""
        repo = self.repos[repo_id]
        new = dict(repo.head.files)
        for p in delete:
            new.pop(p, None)
        new.update(self._files(files or {}, lfs))
        repo.last_modified = max(time.time(), repo.last_modified + 1)
        self._commit(repo, new, message, date=repo.last_modified)
        return repo.head.sha

    def add_user(self, token: str, name: str = "test-user") -> None:
        self.users[token] = name

    def _files(self, files: dict[str, Path | bytes], lfs: set[str] | None) -> dict[str, HubFile]:
        out = {}
        for path, source in files.items():
            src = source if isinstance(source, bytes) else Path(source)
            blob = Blob(src)
            size = blob.size
            sha256, sha1 = _digests(src)
            is_lfs = (path in lfs) if lfs is not None else (path.lower().endswith(LFS_SUFFIXES) or size >= LFS_MIN_SIZE)
            pointer = (
                f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
                if is_lfs
                else b""
            )
            out[path.strip("/")] = HubFile(path.strip("/"), blob, size, sha256, sha1, is_lfs, pointer)
        return out

    def _commit(self, repo: HubRepo, files: dict[str, HubFile], title: str, date: float) -> None:
        h = hashlib.sha1(f"{repo.repo_id}\n{len(repo.commits)}\n{title}\n".encode())
        for p in sorted(files):
            h.update(f"{p} {files[p].oid}\n".encode())
        with self._lock:
            repo.commits.append(Commit(h.hexdigest(), title, date, files))

    # --- faults (per file; only GETs that carry bytes spend them, except status faults) ---

    def _key(self, repo_id: str, filename: str) -> str:
        return f"{repo_id}/{filename}"

    def throttle(self, bytes_per_s: int, repo_id: str | None = None, filename: str | None = None) -> None:
        """Limit download speed for one file, or for every file when repo_id is None."""
        if repo_id is None:
            self.throttle_bps = bytes_per_s
        else:
            self._faults.add(self._key(repo_id, filename), Fault(throttle_bps=bytes_per_s))

    def drop_after(self, repo_id: str, filename: str, nbytes: int, times: int | None = 1) -> None:
        """Close the connection after nbytes of body (full Content-Length sent); once, or always (None)."""
        self._faults.add(self._key(repo_id, filename), Fault(drop_after=nbytes, times=times))

    def tamper(self, repo_id: str, filename: str, times: int | None = None) -> None:
        """Serve the file with one byte flipped while every header and API still advertises the original."""
        self._faults.add(self._key(repo_id, filename), Fault(tamper=True, times=times))

    def fail(self, repo_id: str, filename: str, status: int, times: int | None = 1) -> None:
        """Answer HEAD/GET of this file with an HTTP error (e.g. 500, 503, 429)."""
        self._faults.add(self._key(repo_id, filename), Fault(status=status, times=times))

    def advertise(
        self,
        repo_id: str,
        filename: str,
        *,
        oid: str | None = None,
        lfs_oid: str | None = None,
        size: int | None = None,
    ) -> None:
        """Make the tree, paths-info and siblings listings lie about a file of the head commit (a hostile or
        broken Hub): another git ``oid``, LFS ``oid`` or ``size``. Downloads still serve the real bytes."""
        f = self.repos[repo_id].head.files[filename]
        f.listed.update({k: v for k, v in (("oid", oid), ("lfs_oid", lfs_oid), ("size", size)) if v is not None})

    def rewrite(self, listing: str, answer: Callable[[Request, list, str | None], tuple[Any, str | None]]) -> None:
        """Answer each page of a listing ("models": search, "tree": a repo's files) with ``answer(req, items,
        next_url)`` -> (JSON body, next_url or None) instead of its items and Link "next" address: JSON of the
        wrong shape, a next page on another host or on itself (a hostile or broken Hub). "info": a repo's
        model info, as ``answer(req, record, None)``."""
        self._rewrites[listing] = answer

    def clear_faults(self) -> None:
        self._faults.clear()
        self._rewrites.clear()
        self.throttle_bps = None

    # --- inspection ---

    def served(self, repo_id: str, filename: str) -> int:
        """Body bytes sent for this file so far (both servers), e.g. to prove a resume re-sent nothing."""
        return self.bytes_served[self._key(repo_id, filename)]

    def all_requests(self):
        """Requests to the hub and to its CDN (if any)."""
        return list(self.requests) + (list(self.cdn.requests) if self.cdn else [])

    def requests_to(self, repo_id: str, filename: str, method: str | None = None):
        """Requests for one file's bytes: /resolve/ on the hub (and, with lfs_redirect, the CDN blob)."""
        repo = self.repos.get(repo_id)
        shas = {c.files[filename].sha256 for c in repo.commits if filename in c.files} if repo else set()
        out = []
        for r in self.all_requests():
            p = unquote(r.path)
            hit = p.startswith(f"/{repo_id}/resolve/") and p.endswith("/" + filename)
            hit = hit or (self.cdn is not None and r in self.cdn.requests and p.rsplit("/", 1)[-1] in shas)
            if hit and (method is None or r.method == method):
                out.append(r)
        return out

    # --- routing ---

    def handle(self, req: Request) -> None:
        segs = [unquote(s) for s in req.path.split("/")[1:]]
        try:
            if self.strict_tokens:
                tok = req.bearer_token
                if tok is not None and tok not in self._known_tokens():
                    raise _HubError(401, None, "Invalid credentials in Authorization header")
            if segs[:2] == ["api", "whoami-v2"]:
                return self._whoami(req)
            if segs[:2] == ["api", "models"]:
                if len(segs) == 2 or (len(segs) == 3 and segs[2] == ""):
                    return self._list_models(req)
                return self._model_api(req, segs[2:])
            if len(segs) >= 5 and segs[2] == "resolve" and req.method in ("GET", "HEAD"):
                return self._resolve(req, f"{segs[0]}/{segs[1]}", segs[3], "/".join(segs[4:]))
            raise _HubError(404, None, "Sorry, we can't find the page you are looking for.")
        except _HubError as e:
            headers = dict(e.headers)
            if e.code:
                headers["X-Error-Code"] = e.code
            headers["X-Error-Message"] = e.message
            req.send_json(e.status, {"error": e.message}, headers)

    def _known_tokens(self) -> set[str]:
        toks = set(self.users)
        for r in self.repos.values():
            toks |= r.allowed_tokens
        return toks

    def _whoami(self, req: Request) -> None:
        tok = req.bearer_token
        if tok is None or tok not in self._known_tokens():
            raise _HubError(401, None, "Invalid credentials in Authorization header")
        name = self.users.get(tok, "test-user")
        req.send_json(
            200,
            {
                "type": "user",
                "id": hashlib.md5(name.encode()).hexdigest()[:24],
                "name": name,
                "fullname": name,
                "email": None,
                "emailVerified": False,
                "isPro": False,
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "tests", "role": "read"}},
            },
        )

    def _repo(self, repo_id: str, req: Request) -> HubRepo:
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and req.bearer_token not in repo.allowed_tokens):
            # The Hub says 401 (not 404) to anonymous callers so private repos do not leak; 404 with a token.
            status = 401 if req.bearer_token is None else 404
            raise _HubError(status, "RepoNotFound", "Repository not found")
        return repo

    def _commit_at(self, repo: HubRepo, rev: str) -> Commit:
        c = repo.commit(rev)
        if c is None:
            raise _HubError(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        return c

    # /api/models/{org}/{name}[/revision/{rev} | /tree/{rev}[/path] | /paths-info/{rev}]
    def _model_api(self, req: Request, segs: list[str]) -> None:
        if len(segs) < 2:
            raise _HubError(404, None, "Sorry, we can't find the page you are looking for.")
        repo = self._repo(f"{segs[0]}/{segs[1]}", req)
        rest = segs[2:]
        if not rest and req.method == "GET":
            return self._model_info(req, repo, repo.head)
        if len(rest) == 2 and rest[0] == "revision" and req.method == "GET":
            return self._model_info(req, repo, self._commit_at(repo, rest[1]))
        if len(rest) >= 2 and rest[0] == "tree" and req.method == "GET":
            return self._tree(req, repo, self._commit_at(repo, rest[1]), "/".join(rest[2:]).strip("/"))
        if len(rest) == 2 and rest[0] == "paths-info" and req.method == "POST":
            return self._paths_info(req, repo, self._commit_at(repo, rest[1]))
        raise _HubError(404, None, "Sorry, we can't find the page you are looking for.")

    # --- JSON builders ---

    def _gguf_block(self, repo: HubRepo, commit: Commit) -> dict | None:
        if repo.gguf is False:
            return None
        if isinstance(repo.gguf, dict):
            return repo.gguf
        ggufs = sorted(p for p in commit.files if p.endswith(".gguf"))
        return gguf_summary(commit.files[ggufs[0]].blob.source) if ggufs else None

    def _model_json(self, repo: HubRepo, commit: Commit, *, siblings: str | None) -> dict:
        """The full model object; siblings: None (omit), "names" (rfilename only) or "blobs" (with sizes)."""
        d = {
            "_id": repo.object_id,
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": commit.sha,
            "lastModified": iso8601(repo.last_modified),
            "createdAt": iso8601(repo.created_at),
            "private": repo.private,
            "gated": repo.gated,
            "disabled": False,
            "downloads": repo.downloads,
            "downloadsAllTime": repo.downloads * 3,
            "likes": repo.likes,
            "trendingScore": repo.likes // 2,
            "tags": list(repo.tags),
            "pipeline_tag": repo.pipeline_tag,
            "usedStorage": sum(f.size for f in commit.files.values()),
            "spaces": [],
        }
        if repo.library_name:
            d["library_name"] = repo.library_name
        if repo.card_data is not None:
            d["cardData"] = repo.card_data
        g = self._gguf_block(repo, commit)
        if g is not None:
            d["gguf"] = g
        if siblings:
            sib = []
            for p in sorted(commit.files):
                f = commit.files[p]
                s: dict = {"rfilename": p}
                if siblings == "blobs":
                    s["blobId"] = f.listed.get("oid", f.oid)
                    s["size"] = f.listed.get("size", f.size)
                    if f.lfs:
                        s["lfs"] = {
                            "sha256": f.listed.get("lfs_oid", f.sha256),
                            "size": s["size"],
                            "pointerSize": len(f.pointer),
                        }
                sib.append(s)
            d["siblings"] = sib
        return d

    def _model_info(self, req: Request, repo: HubRepo, commit: Commit) -> None:
        expand = req.params("expand")
        blobs = (req.param("blobs") or "").lower() == "true"
        full = self._model_json(repo, commit, siblings="blobs" if blobs else "names")
        if expand:
            full = {k: v for k, v in full.items() if k in {"_id", "id", *expand}}
        if answer := self._rewrites.get("info"):
            full, _ = answer(req, full, None)
        req.send_json(200, full)

    def _list_models(self, req: Request) -> None:
        search = (req.param("search") or "").lower()
        author = req.param("author")
        filters = [f for v in req.params("filter") for f in v.split(",") if f]
        gated = req.param("gated")
        tok = req.bearer_token
        with self._lock:
            repos = [r for r in self.repos.values() if not r.private or tok in r.allowed_tokens]
        out = []
        for r in repos:
            if search and search not in r.repo_id.lower():
                continue
            if author and r.repo_id.split("/")[0] != author:
                continue
            labels = set(r.tags) | {r.library_name, r.pipeline_tag} - {None}
            if any(f not in labels for f in filters):
                continue
            if gated is not None and (gated.lower() == "true") != bool(r.gated):
                continue
            out.append(r)
        sort = req.param("sort")
        keys = {
            "downloads": lambda r: r.downloads,
            "likes": lambda r: r.likes,
            "lastModified": lambda r: r.last_modified,
            "createdAt": lambda r: r.created_at,
            "trendingScore": lambda r: r.likes,
            "id": lambda r: r.repo_id,
        }
        if sort in keys:
            out.sort(key=keys[sort], reverse=(req.param("direction") or "-1") != "1")
        try:
            limit = int(req.param("limit") or 0)
            cursor = int(req.param("cursor") or 0)
        except ValueError:
            raise _HubError(400, None, "Invalid limit or cursor") from None
        page_size = min(limit, self.page_size) if limit > 0 else self.page_size
        page = paginate(out, cursor, page_size)
        expand = req.params("expand")
        full = (req.param("full") or "").lower() == "true"
        items = []
        for r in page.items:
            d = self._model_json(r, r.head, siblings="names")
            if expand:
                d = {k: v for k, v in d.items() if k in {"_id", "id", *expand}}
            elif not full:
                # The default listing is short; siblings, sha, gguf and friends need full=true or expand.
                keep = {
                    "_id",
                    "id",
                    "likes",
                    "trendingScore",
                    "private",
                    "downloads",
                    "tags",
                    "pipeline_tag",
                    "library_name",
                    "createdAt",
                    "modelId",
                }
                d = {k: v for k, v in d.items() if k in keep}
            items.append(d)
        headers = {}
        if page.next_cursor is not None:
            base = (
                self.origin
                + req.path
                + "?"
                + "&".join(f"{k}={quote(v, safe='')}" for k, v in req.query if k != "cursor")
            )
            headers["Link"] = link_header(base, page.next_cursor)
        self._send_listing(req, "models", items, headers)

    def _entry(self, commit: Commit, path: str, expand: bool) -> dict | None:
        """Tree/paths-info entry for a file or folder path; None if it does not exist."""
        last = {"id": commit.sha, "title": commit.title, "date": iso8601(commit.date)}
        f = commit.files.get(path)
        if f is not None:
            size = f.listed.get("size", f.size)
            e = {"type": "file", "oid": f.listed.get("oid", f.oid), "size": size, "path": f.path}
            if f.lfs:
                e["lfs"] = {"oid": f.listed.get("lfs_oid", f.sha256), "size": size, "pointerSize": len(f.pointer)}
            if expand:
                e["lastCommit"] = last
            return e
        prefix = path + "/"
        if path and any(p.startswith(prefix) for p in commit.files):
            tree = hashlib.sha1(
                (
                    "tree " + path + "".join(commit.files[p].oid for p in sorted(commit.files) if p.startswith(prefix))
                ).encode()
            ).hexdigest()
            e = {"type": "directory", "oid": tree, "size": 0, "path": path}
            if expand:
                e["lastCommit"] = last
            return e
        return None

    def _tree(self, req: Request, repo: HubRepo, commit: Commit, path: str) -> None:
        recursive = (req.param("recursive") or "").lower() == "true"
        expand = (req.param("expand") or "").lower() == "true"
        if path and (path in commit.files or self._entry(commit, path, False) is None):
            raise _HubError(404, "EntryNotFound", f"{path} is not a folder of {repo.repo_id}@{commit.sha}")
        prefix = path + "/" if path else ""
        names: set[str] = set()
        for p in commit.files:
            if not p.startswith(prefix):
                continue
            parts = p[len(prefix) :].split("/")
            if recursive:
                names.update(prefix + "/".join(parts[:i]) for i in range(1, len(parts) + 1))
            else:
                names.add(prefix + parts[0])
        # The Hub lists folders before files, each sorted by path.
        entries = [self._entry(commit, n, expand) for n in sorted(names)]
        entries = sorted(entries, key=lambda e: (e["type"] != "directory", e["path"]))
        cursor = int(req.param("cursor") or 0)
        page = paginate(entries, cursor, min(self.page_size, 50) if expand else self.page_size)
        headers = {}
        if page.next_cursor is not None:
            base = self.origin + req.path + "?" + "&".join(f"{k}={v}" for k, v in req.query if k != "cursor")
            headers["Link"] = link_header(base, page.next_cursor)
        self._send_listing(req, "tree", page.items, headers)

    def _send_listing(self, req: Request, listing: str, items: list, headers: dict[str, str]) -> None:
        answer = self._rewrites.get(listing)
        if answer is None:
            return req.send_json(200, items, headers)
        link = headers.get("Link")
        body, next_url = answer(req, items, link[1 : link.index(">")] if link else None)
        req.send_json(200, body, {"Link": f'<{next_url}>; rel="next"'} if next_url else {})

    def _paths_info(self, req: Request, repo: HubRepo, commit: Commit) -> None:
        ctype = (req.headers.get("Content-Type") or "").lower()
        if "json" in ctype:
            data = json.loads(req.body or b"{}")
            paths = data.get("paths") or []
            expand = bool(data.get("expand"))
        else:
            form = parse_qsl(req.body.decode(), keep_blank_values=True)
            paths = [v for k, v in form if k in ("paths", "paths[]")]
            expand = any(k == "expand" and v.lower() == "true" for k, v in form)
        out = [e for p in paths if (e := self._entry(commit, p.strip("/"), expand)) is not None]
        req.send_json(200, out)

    # --- file downloads ---

    def _check_access(self, req: Request, repo: HubRepo) -> None:
        if not repo.gated:
            return
        tok = req.bearer_token
        if tok in repo.allowed_tokens:
            return
        if tok is None:
            raise _HubError(
                401,
                "GatedRepo",
                f"Access to model {repo.repo_id} is restricted. You must have access "
                "to it and be authenticated to access it. Please log in.",
            )
        raise _HubError(
            403,
            "GatedRepo",
            f"Access to model {repo.repo_id} is restricted and you are not in the "
            f"authorized list. Visit {self.origin}/{repo.repo_id} to ask for access.",
        )

    def _resolve(self, req: Request, repo_id: str, rev: str, path: str) -> None:
        repo = self._repo(repo_id, req)
        commit = self._commit_at(repo, rev)
        self._check_access(req, repo)
        f = commit.files.get(path)
        common = {
            "X-Repo-Commit": commit.sha,
            "X-Request-Id": f"Root=1-{uuid.uuid4().hex[:24]}",
            "Vary": "Origin, Accept",
        }
        if f is None:
            raise _HubError(404, "EntryNotFound", "Entry not found", common)
        common["ETag"] = f'"{f.etag}"'
        if f.lfs:
            common["X-Linked-Etag"] = f'"{f.sha256}"'
            common["X-Linked-Size"] = str(f.size)
        key = self._key(repo_id, path)
        if f.lfs and self.cdn is not None:
            # Like huggingface.co: a 302 to a signed URL on another host. Status faults still apply here.
            fault = self._faults.take(key, head=True)
            if fault and fault.status:
                raise _HubError(fault.status, None, f"fake error {fault.status}")
            loc = (
                f"{self.cdn.origin}/repos/{hashlib.sha1(repo_id.encode()).hexdigest()[:8]}/{f.sha256}"
                f"?response-content-disposition=attachment%3B+filename%3D%22{quote(path.rsplit('/')[-1])}%22"
                f"&Expires={int(time.time()) + 3600}&Signature=fake&Key-Pair-Id=FAKE"
            )
            body = f"Found. Redirecting to {loc}".encode()
            return req.send(302, body, {**common, "Location": loc}, content_type="text/plain; charset=utf-8")
        self._serve(req, f, key, common)

    def _serve(self, req: Request, f: HubFile, key: str, headers: dict[str, str]) -> None:
        fault = self._faults.take(key, self.throttle_bps, head=req.method == "HEAD")
        if fault and fault.status:
            raise _HubError(fault.status, None, f"fake error {fault.status}")
        name = f.path.rsplit("/", 1)[-1]
        headers = {
            **headers,
            "Content-Disposition": f"inline; filename*=UTF-8''{quote(name)}; filename=\"{name}\";",
            "Cache-Control": "public, max-age=31536000, immutable" if f.lfs else "private, max-age=0",
        }
        req.send_blob(
            f.blob,
            headers=headers,
            fault=fault,
            count=self.count_bytes(key),
            stopping=self._stopping,
        )


class _Cdn(FakeHTTPServer):
    """The LFS blob host that /resolve/ redirects to (enabled by FakeHub(lfs_redirect=True))."""

    def __init__(self, hub: FakeHub):
        super().__init__()
        self.hub = hub
        self.bytes_served = hub.bytes_served  # one counter for both servers

    def handle(self, req: Request) -> None:
        if req.method not in ("GET", "HEAD"):
            return req.send(405, b"", content_type="text/plain")
        if req.headers.get("Authorization"):
            # S3-style signed URLs refuse a second auth mechanism; also proves the client dropped the token.
            return req.send(
                400,
                b"<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed</Message></Error>",
                content_type="application/xml",
            )
        sha = req.path.rsplit("/", 1)[-1]
        with self.hub._lock:
            found = next(
                (
                    (rid, f)
                    for rid, r in self.hub.repos.items()
                    for c in reversed(r.commits)
                    for f in c.files.values()
                    if f.sha256 == sha
                ),
                None,
            )
        if found is None:
            return req.send(404, b"<Error><Code>NoSuchKey</Code></Error>", content_type="application/xml")
        rid, f = found
        try:
            self.hub._serve(req, f, self.hub._key(rid, f.path), {"ETag": f'"{f.sha256}"'})
        except _HubError as e:
            req.send(e.status, e.message.encode(), content_type="text/plain")


# --- a header-only GGUF reader, for the "gguf" block of model info ------------------------------------------

_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}


def gguf_summary(source: Path | bytes) -> dict | None:
    """What the Hub shows as ``gguf``: total parameters, architecture, context_length, chat_template, bos/eos.
    None for a file that does not parse (the Hub shows nothing for those either). Cached per file."""
    if isinstance(source, bytes):
        return _parse_gguf(_BytesReader(source))
    key = _file_key(source)
    with _CACHE_LOCK:
        if key in _GGUF_CACHE:
            return _GGUF_CACHE[key]
    with open(source, "rb") as fh:
        out = _parse_gguf(fh)
    with _CACHE_LOCK:
        _GGUF_CACHE[key] = out
    return out


class _BytesReader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def read(self, n: int) -> bytes:
        b = self.data[self.pos : self.pos + n]
        self.pos += len(b)
        return b

    def seek(self, n: int, whence: int = 0) -> None:
        self.pos = n if whence == 0 else self.pos + n


def _parse_gguf(fh) -> dict | None:
    def take(fmt: str):
        size = struct.calcsize(fmt)
        b = fh.read(size)
        if len(b) != size:
            raise EOFError
        return struct.unpack(fmt, b)[0]

    def string() -> str:
        n = take("<Q")
        if n > 1 << 26:
            raise ValueError("string too long")
        b = fh.read(n)
        if len(b) != n:
            raise EOFError
        return b.decode("utf-8", "replace")

    try:
        if fh.read(4) != b"GGUF":
            return None
        version = take("<I")
        if version < 2:
            return None
        n_tensors, n_kv = take("<Q"), take("<Q")
        if n_kv > 1 << 20 or n_tensors > 1 << 24:
            return None
        kv: dict = {}
        tokens: list[str] | None = None
        for _ in range(n_kv):
            key, typ = string(), take("<I")
            if typ == 8:
                kv[key] = string()
            elif typ in _SCALARS:
                kv[key] = take(_SCALARS[typ])
            elif typ == 9:
                etype, count = take("<I"), take("<Q")
                if etype == 8:
                    items = [string() for _ in range(count)]
                    if key == "tokenizer.ggml.tokens":
                        tokens = items
                elif etype in _SCALARS:
                    fh.seek(struct.calcsize(_SCALARS[etype]) * count, 1)
                else:
                    return None  # nested arrays: not worth it here
            else:
                return None
        total = 0
        for _ in range(n_tensors):
            string()
            dims = [take("<Q") for _ in range(take("<I"))]
            take("<I")
            take("<Q")
            n = 1
            for d in dims:
                n *= d
            total += n
    except (EOFError, ValueError, struct.error, UnicodeDecodeError):
        return None
    arch = kv.get("general.architecture")
    out: dict = {"total": total, "architecture": arch}
    if arch and f"{arch}.context_length" in kv:
        out["context_length"] = kv[f"{arch}.context_length"]
    if "tokenizer.chat_template" in kv:
        out["chat_template"] = kv["tokenizer.chat_template"]
    for name in ("bos", "eos"):
        tid = kv.get(f"tokenizer.ggml.{name}_token_id")
        if tokens is not None and isinstance(tid, int) and 0 <= tid < len(tokens):
            out[f"{name}_token"] = tokens[tid]
    return out
