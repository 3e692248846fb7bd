"""One file's transfer from the Hub into its partial, resumable and verified: what `pull` does for each part.

The partial is locked against a second aidevops-local, continued from its last byte (its existing bytes hashed
first), fetched with Range GETs that retry a dropped connection or a 5xx from where it stopped, with backoff,
until MAX_STALLED_RETRIES attempts in a row bring nothing; a file the Hub serves shorter than it lists is
fetched afresh once, then refused. The whole file's hash must equal the Hub's LFS sha256 (or its git blob id)
or the partial is deleted. Apart from downloads.py, which chooses, places and records the model.
"""

from __future__ import annotations

import fcntl
import hashlib
import time
from pathlib import Path

from ..system import config
from ..system.errors import NetworkError, Refused, VerificationFailed
from ..system.files import disk_full
from ..system.progress import check_cancelled, report
from . import hub

CHUNK = 1 << 20
MAX_STALLED_RETRIES = 5  # consecutive attempts that brought no new byte
RETRY_STATUSES = (408, 429, 500, 502, 503, 504)
REPORT_EVERY_S = 0.1


def download_part(
    repo_id: str,
    part: hub.RemotePart,
    partial: Path,
    *,
    revision: str | None,
    token: str | None,
    progress,
    cancel,
    task: str,
    offset: int,
    total: int,
) -> tuple[int, int]:
    """Fetch one file into ``partial`` (resuming what is there) and verify it. Returns (bytes transferred now,
    bytes that were already there)."""
    url, headers = _pinned_request(repo_id, part, revision=revision, token=token)
    partial.parent.mkdir(parents=True, exist_ok=True)
    with open(partial.with_suffix(".lock"), "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise Refused(
                f"{Path(part.path).name} is already being downloaded by another aidevops-local.",
                hint="Wait for that download to finish (or stop it), then pull again.",
            ) from None
        had = _drop_oversized(partial, part.size)
        try:
            got, digest = _Transfer(
                url, headers, partial, part, repo_id=repo_id, progress=progress, cancel=cancel, task=task
            ).run(offset, total)
        except OSError as exc:
            mapped = disk_full(
                exc,
                f"downloading {Path(part.path).name}",
                hint="Free some space, then pull again: it resumes from what was saved.",
            )
            if mapped is exc:
                raise
            raise mapped from None
        _check_digest(digest, part, partial)
    partial.with_suffix(".lock").unlink(missing_ok=True)
    return got, had


def _pinned_request(repo_id: str, part: hub.RemotePart, *, revision: str | None, token: str | None):
    """The file's address at the commit a HEAD sees now, and the headers for its Range GETs."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.utils import build_hf_headers

    endpoint = config.hf_endpoint()
    hub.use_fail_fast_session()
    with hub.hub_errors(repo_id, part.path):
        meta = get_hf_file_metadata(
            hf_hub_url(repo_id, part.path, revision=revision, endpoint=endpoint),
            token=token,
            endpoint=endpoint,
            retry_on_errors=True,
        )
    # Pin the commit the HEAD saw, so every Range request of this run reads the same bytes.
    url = hf_hub_url(repo_id, part.path, revision=meta.commit_hash or revision, endpoint=endpoint)
    headers = build_hf_headers(token=token)
    headers["Accept-Encoding"] = "identity"  # byte offsets must be the file's own
    return url, headers


class _Transfer:
    """Range GETs until the partial holds the whole file; a dropped connection or a 5xx is retried from the
    last byte written, with backoff, until MAX_STALLED_RETRIES attempts in a row bring nothing. The counts and
    the running hash are what the attempts share."""

    def __init__(
        self, url: str, headers: dict, partial: Path, part: hub.RemotePart, *, repo_id, progress, cancel, task
    ):
        self.url, self.headers, self.partial, self.part = url, headers, partial, part
        self.repo_id, self.progress, self.cancel, self.task = repo_id, progress, cancel, task
        self.digest = _new_digest(part)
        self.stalled = 0
        self.transferred = 0
        self.last_report = 0.0
        self.started_over = False

    def run(self, offset: int, total: int):
        """Returns (bytes transferred, the hash of the whole file); ``offset`` and ``total`` place this file's
        bytes in the progress of the whole pull."""
        import httpx2

        with open(self.partial, "ab") as out:
            _rehash(self.partial, self.digest, out.tell())
            while out.tell() < self.part.size:
                check_cancelled(self.cancel)
                start = out.tell()
                try:
                    self._get(out, start, offset, total)
                except _ServedShort:
                    self._start_over_once(out, start)
                    continue
                except (_Retry, httpx2.TransportError) as exc:
                    self._back_off(out, start, exc)
                    continue
                out.flush()
                if out.tell() == start:  # an empty answer is no progress either
                    self.stalled += 1
                    if self.stalled >= MAX_STALLED_RETRIES:
                        raise NetworkError(
                            f"The Hub sends no data for {Path(self.part.path).name}.",
                            hint="Try again later: the download resumes where it stopped.",
                        )
            report(self.progress, self.task, offset + out.tell(), total)
        return self.transferred, self.digest

    def _get(self, out, start: int, offset: int, total: int) -> None:
        """One Range GET from ``start``, written (and hashed) as it arrives: a drop loses nothing buffered."""
        import httpx2
        from huggingface_hub.utils import get_session

        part = self.part
        with get_session().stream(
            "GET",
            self.url,
            headers={**self.headers, "Range": f"bytes={start}-"},
            timeout=httpx2.Timeout(30.0, read=60.0),
        ) as response:
            if response.status_code in RETRY_STATUSES:
                raise _Retry(f"the server answered {response.status_code}")
            if response.status_code == 416:  # nothing at this offset: the file is shorter than listed
                raise _ServedShort()
            if response.status_code >= 400:
                response.read()
                from huggingface_hub.utils import hf_raise_for_status

                with hub.hub_errors(self.repo_id, part.path):
                    hf_raise_for_status(response)
            if response.status_code == 200 and start:  # the server ignored Range: start over
                out.seek(0)
                out.truncate()
                self.digest = _new_digest(part)
            for chunk in response.iter_bytes():
                out.write(chunk)
                self.digest.update(chunk)
                self.transferred += len(chunk)
                if out.tell() > part.size:
                    out.close()
                    self.partial.unlink(missing_ok=True)
                    raise VerificationFailed(
                        f"The Hub sent more bytes than {Path(part.path).name} has.",
                        hint="Pull again to download it afresh.",
                    )
                now = time.monotonic()
                if now - self.last_report >= REPORT_EVERY_S:
                    self.last_report = now
                    report(self.progress, self.task, offset + out.tell(), total)
                    check_cancelled(self.cancel)

    def _start_over_once(self, out, start: int) -> None:
        """The Hub has no bytes at ``start``: what is saved may be from elsewhere, so fetch the whole file once
        more; if that is still short, it is a bad file."""
        if self.started_over:
            out.close()
            self.partial.unlink(missing_ok=True)
            raise VerificationFailed(
                f"The Hub serves fewer bytes of {Path(self.part.path).name} than it lists ({start:,} of "
                f"{self.part.size:,}). It was deleted and not recorded.",
                hint="The file on the Hub is broken or being replaced: try again later, or pick another file.",
            ) from None
        self.started_over = True
        out.seek(0)
        out.truncate()
        self.digest = _new_digest(self.part)

    def _back_off(self, out, start: int, exc: Exception) -> None:
        """A failed attempt: wait longer each time in a row it brought nothing, and give up after too many."""
        out.flush()
        self.stalled = 0 if out.tell() > start else self.stalled + 1
        if self.stalled >= MAX_STALLED_RETRIES:
            raise NetworkError(
                f"The download of {Path(self.part.path).name} keeps failing: {exc}",
                hint="Check the network and pull again: it resumes where it stopped.",
            ) from None
        time.sleep(min(8.0, 0.5 * 2**self.stalled))


def _new_digest(part: hub.RemotePart):
    if part.sha256:
        return hashlib.sha256()
    digest = hashlib.sha1()  # a file kept in git is checked against its blob id: sha1("blob <size>\0" + data)
    digest.update(b"blob %d\0" % part.size)
    return digest


def _drop_oversized(partial: Path, size: int) -> int:
    """Bytes an earlier run left. A partial longer than the file is from something else: start over."""
    if not partial.exists():
        return 0
    if partial.stat().st_size > size:
        partial.unlink()
        return 0
    return partial.stat().st_size


class _Retry(Exception):
    pass


class _ServedShort(Exception):
    """416: the server has no bytes where the listing says the file goes on."""


def _rehash(partial: Path, digest, length: int) -> None:
    with open(partial, "rb") as src:
        remaining = length
        while remaining > 0:
            chunk = src.read(min(CHUNK * 8, remaining))
            if not chunk:
                break
            digest.update(chunk)
            remaining -= len(chunk)


def _check_digest(digest, part: hub.RemotePart, partial: Path) -> None:
    expected = part.sha256 or part.blob_id
    if digest.hexdigest() != expected:
        partial.unlink(missing_ok=True)
        raise VerificationFailed(
            f"{Path(part.path).name} does not match the Hub's checksum (expected {expected[:16]}…, got "
            f"{digest.hexdigest()[:16]}…). It was deleted and not recorded.",
            hint="The bytes were damaged on the way (a proxy or a bad mirror). Pull again to download it afresh.",
        )


def verify_file(path: Path, part: hub.RemotePart) -> bool:
    digest = _new_digest(part)
    _rehash(path, digest, part.size)
    return digest.hexdigest() == (part.sha256 or part.blob_id)


# ---- the inventory ----------------------------------------------------------------------------------------
