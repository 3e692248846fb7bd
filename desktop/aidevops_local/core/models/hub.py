"""The Hugging Face Hub: search GGUF repos and list their files, through huggingface_hub's HfApi.

Every call takes its endpoint from config (HF_ENDPOINT) at call time, honours offline mode before it
touches the network, and turns the library's exceptions into ours: a gated repo says to accept the licence
on the model page and set a token; a missing repo or file is NotFound; a dead network is NetworkError.
huggingface_hub is imported inside the functions only: `status` and the server path never pay for it.
The exceptions' translation and the checks it relies on (offline mode, a repo name) are hub_failures.py's,
named here too for the callers. The two listings (search results, a repo's files) are read page by page by
hub_http.json_pages, and their JSON is checked record by record (hub_records.py) before anything uses it.
"""

from __future__ import annotations

import logging
import posixpath
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain, islice
from pathlib import PurePosixPath
from urllib.parse import quote

from ..system import config
from ..system.errors import ChoiceNeeded, LocalModelsError, NotFound, UnsafePath
from ..system.hardware import Hardware
from ..system.untrusted import printable
from .gguf_meta import SPLIT_RE
from .hub_failures import check_online, check_repo_id, hub_errors, malformed, parsed
from .hub_http import json_pages
from .hub_records import RemotePart, RepoSummary, info_summary, model_summary, tree_part

DEFAULT_QUANTS = ("Q4_K_M", "Q5_K_M", "Q8_0")  # what `pull REPO` takes when it is not told
NAME_MAX_BYTES = 255  # the longest file name Linux and macOS file systems take
# What a checksum id from the Hub may look like: it names the partial file, so nothing else is accepted.
SHA256_RE = re.compile(r"[0-9a-f]{64}")
BLOB_ID_RE = re.compile(r"[0-9a-f]{40}")
SEARCH_SCAN = 1000  # repos read from the Hub (one page) to filter a query of several words
COMMON_WORDS = {"gguf", "instruct", "it", "chat", "model", "q4_k_m", "q8_0"}  # in too many names to narrow a search
SEARCH_PAGES = 10  # a search asks for one page (limit); a Hub that answers in more than this many is refused
TREE_PAGES, TREE_ENTRIES = 100, 10_000  # a repo's file listing longer than this is refused
EXPAND = ("downloads", "likes", "lastModified", "gated", "tags")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RemoteFile:
    """One model file in a repo, or a split set shown as one (named by its first part)."""

    filename: str  # path in the repo of the (first) file
    size_bytes: int  # all parts
    quant: str
    parts: tuple[RemotePart, ...] = field(default_factory=tuple)
    fits: bool | None = None  # on the hardware given to list_files; None when not asked
    needs_bytes: int | None = None  # predicted memory at the default context

    @property
    def split(self) -> bool:
        return len(self.parts) > 1


def _api(token: str | None = None):
    endpoint = _endpoint()  # before the import: huggingface_hub reads HF_ENDPOINT as it loads
    from huggingface_hub import HfApi

    return HfApi(endpoint=endpoint, token=token)


def _endpoint() -> str:
    endpoint = config.hf_endpoint()  # checked first: huggingface_hub parses HF_ENDPOINT as it loads, and may crash
    use_fail_fast_session()
    return endpoint


_session_lock = threading.Lock()
_session_ready = False


def use_fail_fast_session() -> None:
    """huggingface_hub's shared HTTP client, made to give up at once when the Hub cannot be connected to
    (core.hub_http says why). Once per process: the tray's workers share the client."""
    global _session_ready
    with _session_lock:
        if not _session_ready:
            from huggingface_hub.utils import set_client_factory

            from .hub_http import fail_fast_client

            set_client_factory(fail_fast_client)
            _session_ready = True


def hub_token() -> str | None:
    """The token to send: the environment's or the keyring's (core.secrets); None lets huggingface_hub find
    its own (its token file). A keyring that cannot be read is no token, not an error."""
    try:
        from ..system import secrets

        return secrets.hf_token()
    except (LocalModelsError, ImportError, RuntimeError, OSError):
        return config.hf_token_from_env()


def search(query: str, *, limit: int = 20, token: str | None = None) -> list[RepoSummary]:
    """GGUF repos whose id holds every word of ``query`` (any case), most downloaded first. The Hub matches
    its search string as one piece of the id, so "qwen coder" would find nothing: it is asked for the most
    selective word, and what it answers (the first SEARCH_SCAN, most downloaded first) is filtered by all."""
    words = query.lower().split()
    check_online()
    token = token or hub_token()
    scan = limit if len(words) < 2 else SEARCH_SCAN
    params = [("filter", "gguf"), ("sort", "downloads"), ("limit", str(scan)), *(("expand", e) for e in EXPAND)]
    if word := search_word(words):
        params.append(("search", word))
    results, read, skipped = [], 0, 0
    with hub_errors():
        pages = json_pages(
            f"{_endpoint()}/api/models", params, token=token, what="search listing", max_pages=SEARCH_PAGES
        )
        for record in islice(chain.from_iterable(pages), scan):  # a page is asked for only when it is reached
            read, found = read + 1, model_summary(record)
            if found is None:
                skipped += 1
            elif all(word in found.repo_id.lower() for word in words):
                results.append(found)
                if len(results) >= limit:
                    break
    if skipped and skipped == read:
        raise malformed(f"none of the {read} search results is a well-formed repository record")
    if skipped:
        log.warning("The Hub's search listing held %d malformed result(s); they were left out", skipped)
    return sorted(results, key=lambda r: r.downloads, reverse=True)


def search_word(words: list[str]) -> str:
    """The word to ask the Hub for: the longest that is not in nearly every GGUF repo's name (the fewest
    repos hold a long word), else the longest."""
    rare = [w for w in words if w not in COMMON_WORDS] or words
    return max(rare, key=len, default="")


def _date(value) -> str:
    if isinstance(value, datetime):
        return value.date().isoformat()
    return str(value or "")[:10]


def repo_info(repo_id: str, *, token: str | None = None) -> RepoSummary:
    check_repo_id(repo_id)
    check_online()
    with hub_errors(repo_id), parsed(f"the record of {repo_id}"):
        m = _api(token or hub_token()).model_info(repo_id, expand=list(EXPAND))
    return info_summary(m, repo_id)


def safe_filename(path_in_repo: str) -> str:
    """The file's local name (its base name) if the Hub's path is one we may write; UnsafePath otherwise.
    A hostile repo could name a file ``../../.bashrc`` or an absolute path, or give it control characters or
    a name longer than a file system takes."""
    bad = not path_in_repo or "\\" in path_in_repo or path_in_repo.startswith("/")
    parts = path_in_repo.split("/")
    if bad or any(p in ("", ".", "..") for p in parts) or posixpath.isabs(path_in_repo):
        raise UnsafePath(
            f"The Hub names a file {path_in_repo!r}, which would be written outside the models folder.",
            hint="The file was refused; nothing was downloaded. Report the repository if it is yours.",
        )
    if printable(path_in_repo) != path_in_repo:  # control or bidi characters: a name that shows as another
        raise UnsafePath(
            f"The Hub names a file {path_in_repo!r}, with characters a file name should not have.",
            hint="The file was refused; nothing was downloaded. Report the repository if it is yours.",
        )
    try:
        too_long = len(parts[-1].encode()) > NAME_MAX_BYTES
    except UnicodeEncodeError:  # a lone surrogate from the JSON: no file system takes it
        too_long = True
    if too_long:
        raise UnsafePath(
            f"The Hub names a file {parts[-1][:40]!r}... that is not a valid file name here (longer "
            f"than {NAME_MAX_BYTES} bytes, or not UTF-8).",
            hint="The file was refused; nothing was downloaded. Pick another file of the repo.",
        )
    return parts[-1]


def check_checksum_id(part: RemotePart) -> str:
    """The id a part is verified against and its partial file named after: the LFS sha256 (64 hex digits), or
    for a file kept in git its blob id (40). Anything else from the Hub is refused (UnsafePath): it would
    name a path."""
    if part.sha256 is not None:
        ok = SHA256_RE.fullmatch(part.sha256)
    else:
        ok = BLOB_ID_RE.fullmatch(part.blob_id)
    if not ok:
        name = PurePosixPath(part.path).name
        raise UnsafePath(
            f"The Hub gives {name} a checksum that is not a sha256 or git blob id.",
            hint="The file was refused; nothing was downloaded. Report the repository if it is yours.",
        )
    return part.sha256 or part.blob_id


def repo_files(repo_id: str, *, revision: str | None = None, token: str | None = None) -> list[RemotePart]:
    """Every file in the repo (recursively) with its size and LFS sha256."""
    check_repo_id(repo_id)
    check_online()
    url = f"{_endpoint()}/api/models/{repo_id}/tree/{quote(revision or 'main', safe='')}"
    what = f"file listing of {repo_id}"
    with hub_errors(repo_id):
        pages = json_pages(
            url,
            [("recursive", "true")],
            token=token or hub_token(),
            what=what,
            max_pages=TREE_PAGES,
            max_items=TREE_ENTRIES,
        )
        entries = [tree_part(entry, what) for page in pages for entry in page]
    return [part for part in entries if part is not None]


def group_models(parts: list[RemotePart]) -> list[RemoteFile]:
    """The repo's model files: single GGUFs, and each complete split set as one entry. Vision projectors
    (mmproj), names that would escape the models folder and files without a well-formed checksum are left
    out."""
    from .library import quant_from_name

    singles, sets = [], {}
    for part in parts:
        base = part.path.rsplit("/", 1)[-1]
        if not base.lower().endswith(".gguf") or base.lower().startswith("mmproj"):
            continue
        try:
            safe_filename(part.path)
            check_checksum_id(part)
        except UnsafePath:
            continue
        match = SPLIT_RE.match(base)
        if match:
            folder = part.path.rsplit("/", 1)[0] if "/" in part.path else ""
            sets.setdefault((folder, match["stem"], match["count"]), []).append(part)
        else:
            singles.append(
                RemoteFile(filename=part.path, size_bytes=part.size, quant=quant_from_name(part.path), parts=(part,))
            )
    for (_folder, _stem, count), members in sets.items():
        members.sort(key=lambda p: p.path)
        if len(members) != int(count):
            continue  # an incomplete set cannot be served
        singles.append(
            RemoteFile(
                filename=members[0].path,
                size_bytes=sum(p.size for p in members),
                quant=quant_from_name(members[0].path),
                parts=tuple(members),
            )
        )
    return sorted(singles, key=lambda f: (f.size_bytes, f.filename))


def list_files(
    repo_id: str, *, hardware: Hardware | None = None, revision: str | None = None, token: str | None = None
) -> list[RemoteFile]:
    """The repo's GGUF models (split sets as one), smallest first; with ``hardware``, each marked by
    whether it fits there at the default context (estimated from its size: the header is not fetched)."""
    files = group_models(repo_files(repo_id, revision=revision, token=token))
    if hardware is None:
        return files
    from dataclasses import replace

    from . import fit

    marked = []
    for f in files:
        estimate = fit.estimate_memory(
            fit.guess_shape(size_bytes=f.size_bytes),
            hardware=hardware,
            backend=hardware.best_backend,
            gpu_layers=999 if hardware.best_backend != "cpu" else 0,
        )
        marked.append(replace(f, fits=estimate.fits, needs_bytes=estimate.total_bytes))
    return marked


def choose_file(
    files: list[RemoteFile], *, repo_id: str, quant: str | None = None, filename: str | None = None
) -> RemoteFile:
    """The file ``pull`` takes: the one named, else the quant asked for, else Q4_K_M, Q5_K_M, Q8_0 in that
    order, else the only one. ChoiceNeeded (listing the quants) when that leaves more than one."""
    if not files:
        raise NotFound(
            f"{repo_id} has no GGUF model files.", hint="Pick a repo with GGUF files: `aidevops-local search NAME`."
        )
    if filename:
        for f in files:
            if filename in (f.filename, f.filename.rsplit("/", 1)[-1]) or any(
                filename in (p.path, p.path.rsplit("/", 1)[-1]) for p in f.parts
            ):
                return f
        raise NotFound(
            f"{repo_id} has no GGUF file {filename!r}.", hint="Files: " + ", ".join(f.filename for f in files[:12])
        )
    wanted = [quant] if quant else list(DEFAULT_QUANTS)
    for q in wanted:
        matches = [f for f in files if f.quant.upper() == q.upper()]
        if not matches and quant:
            matches = [f for f in files if q.upper() in f.filename.upper()]
        if len(matches) == 1 or (matches and not quant):
            return min(matches, key=lambda f: f.size_bytes) if len(matches) > 1 else matches[0]
        if len(matches) > 1:
            raise ChoiceNeeded(
                f"{repo_id} has {len(matches)} files for {q}.",
                choices=[m.filename for m in matches],
                hint="Name one with --file.",
            )
    if quant:
        raise NotFound(
            f"{repo_id} has no {quant} file.",
            hint="Quants there: " + ", ".join(sorted({f.quant or f.filename for f in files})),
        )
    if len(files) == 1:
        return files[0]
    raise ChoiceNeeded(
        f"{repo_id} has no {', '.join(DEFAULT_QUANTS)} file; pick one.",
        choices=[f.quant or f.filename for f in files],
        hint=f"Run again as `pull {repo_id}:QUANT` or with --file NAME.",
    )
