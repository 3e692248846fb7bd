"""The fakes and fixtures are test infrastructure: prove them against the real clients and the real server."""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.fakes.github_releases import FakeReleases
from tests.fakes.hf_hub import FakeHub, gguf_summary
from tests.fixtures import prepare as prep


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- prepare(): the real parts ------------------------------------------------------------------------------


def test_llama_server_layout_is_release_like(llama_server_dir: Path):
    names = {p.name: p for p in llama_server_dir.iterdir()}
    assert not names["libggml-base.so.0.17.0"].is_symlink()
    assert os.readlink(names["libggml-base.so.0"]) == "libggml-base.so.0.17.0"
    assert os.readlink(names["libggml-base.so"]) == "libggml-base.so.0"
    assert os.readlink(names["libvulkan.so.1"]) == "libvulkan.so.1.4.313"
    assert not names["libllama-server-impl.so"].is_symlink()
    assert names["llama-server"].stat().st_mode & stat.S_IXUSR
    # Every real file has a distinct content: no flattened copies remain.
    real = [p for p in names.values() if not p.is_symlink() and p.name.startswith("lib")]
    digests = [hashlib.sha256(p.read_bytes()).hexdigest() for p in real]
    assert len(set(digests)) == len(digests)
    assert prep.LLAMA_SERVER_VERSION_LINE in prep.llama_server_version(names["llama-server"])


def test_models_are_in_place(fixtures: prep.Fixtures, tiny_split_gguf, corrupt_ggufs):
    assert fixtures.smollm2_gguf.stat().st_size == 98_362_432
    with open(fixtures.gemma3_gguf, "rb") as fh:
        assert fh.read(4) == b"GGUF"
    assert fixtures.gemma3_gguf.stat().st_size == 253_113_024
    assert len(fixtures.gemma3_sha256) == 64
    assert fixtures.tiny_gguf.stat().st_size < 4 * 1024 * 1024
    assert [p.name for p in tiny_split_gguf] == [
        "tiny-random-llama-split-00001-of-00002.gguf",
        "tiny-random-llama-split-00002-of-00002.gguf",
    ]
    assert set(corrupt_ggufs) == {"empty", "truncated", "cut_header", "random_header"}
    assert gguf_summary(corrupt_ggufs["random_header"]) is None


def test_tiny_split_carries_split_keys(tiny_split_gguf):
    import gguf

    r = gguf.GGUFReader(tiny_split_gguf[0])
    assert int(r.fields["split.count"].parts[-1][0]) == 2
    assert int(r.fields["split.no"].parts[-1][0]) == 0
    r2 = gguf.GGUFReader(tiny_split_gguf[1])
    assert int(r2.fields["split.no"].parts[-1][0]) == 1
    assert len(r.tensors) + len(r2.tensors) == int(r.fields["split.tensors.count"].parts[-1][0])


def test_prepare_rerun_builds_nothing(fixtures: prep.Fixtures):
    """A second run finds every fixture in the cache: it says nothing and changes no file."""

    def files() -> dict[str, tuple[int, int]]:
        return {
            str(p): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in fixtures.cache_dir.rglob("*")
            if p.is_file() and p.name != ".lock"
        }

    before, said = files(), []
    again = prep.prepare(fixtures.cache_dir, log=said.append)
    assert again == fixtures
    assert said == [] and files() == before


@pytest.mark.real_server
@pytest.mark.parametrize("which", ["single", "split"])
def test_tiny_model_chats_in_real_llama_server(llama_server_dir, tiny_gguf, tiny_split_gguf, tmp_path, which):
    model = tiny_gguf if which == "single" else tiny_split_gguf[0]
    with prep.llama_server(llama_server_dir, model, threads=1, log_dir=tmp_path) as srv:
        reply = prep.chat(srv.url, "Hello there", max_tokens=12)
        assert srv.proc.poll() is None
    choice = reply["choices"][0]
    assert choice["finish_reason"] == "length"  # the tiny model never emits EOS
    assert reply["usage"]["completion_tokens"] == 12
    text = choice["message"]["content"]
    assert text and all(32 <= ord(c) < 127 for c in text)
    assert srv.proc.returncode is not None  # stopped


@pytest.mark.real_server
@pytest.mark.parametrize(
    "kind,needle",
    [
        ("empty", "failed to read magic"),
        ("truncated", "not within the file bounds"),
        ("cut_header", "failed to read"),
        ("random_header", "invalid magic"),
    ],
)
def test_corrupt_models_fail_to_load(llama_server_dir, corrupt_ggufs, tmp_path, kind, needle):
    # llama-server logs from a worker thread and, on a fast exit under CPU load, sometimes loses the tail of
    # its log (seen ~1 in 130 runs with both cores busy). The exit is the contract, the message best effort.
    logs = []
    for _attempt in range(3):
        with pytest.raises(RuntimeError, match="exited 1 while loading") as exc:
            with prep.llama_server(
                llama_server_dir, corrupt_ggufs[kind], threads=1, log_dir=tmp_path, ready_timeout=20
            ):
                pass
        logs.append(str(exc.value))
        if needle in logs[-1]:
            break
    assert needle in logs[-1], logs


# --- release archives ---------------------------------------------------------------------------------------


@pytest.mark.real_server
def test_release_tarball_extracts_and_runs(release_archive, tmp_path):
    archive = release_archive()
    assert archive.name == f"llama-b{prep.LLAMA_SERVER_BUILD}-bin-ubuntu-x64.tar.gz"
    with tarfile.open(archive) as tf:
        members = {m.name: m for m in tf.getmembers()}
        top = f"llama-b{prep.LLAMA_SERVER_BUILD}"
        assert members[f"{top}/libggml.so.0"].issym()
        assert members[f"{top}/libggml.so.0"].linkname == "libggml.so.0.17.0"
        assert members[f"{top}/llama-server"].mode & 0o111
        tf.extractall(tmp_path, filter="data")
    out = prep.llama_server_version(tmp_path / top / "llama-server")
    assert prep.LLAMA_SERVER_VERSION_LINE in out


def test_release_zip_layouts(release_archive, tmp_path):
    copy = release_archive(
        tag="b4000", layout="build-bin", fmt="zip", exclude=["libggml-vulkan.so", "libggml-vulkan.so.0"]
    )
    with zipfile.ZipFile(copy) as zf:
        names = zf.namelist()
        assert "build/bin/llama-server" in names
        assert "build/bin/libggml-vulkan.so" not in names
        info = zf.getinfo("build/bin/libggml-base.so.0")
        assert info.file_size == zf.getinfo("build/bin/libggml-base.so.0.17.0").file_size  # a full copy
    keep = prep.make_release_archive(
        prep.prepare().llama_server_dir,
        "b4001",
        "x.zip",
        tmp_path,
        "top-folder",
        "zip",
        zip_symlinks="keep",
        exclude=["libggml-vulkan.so.0.17.0"],
    )
    with zipfile.ZipFile(keep) as zf:
        info = zf.getinfo("llama-b4001/libggml-base.so.0")
        assert stat.S_ISLNK(info.external_attr >> 16)
        assert zf.read(info) == b"libggml-base.so.0.17.0"


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "symlink-abs", "hardlink"])
def test_malicious_archives_are_really_malicious(tmp_path, kind):
    bad = prep.make_malicious_archive(tmp_path, kind)
    # A careless extractor falls for it ...
    naive = tmp_path / "naive"
    with tarfile.open(bad.path) as tf:
        tf.extractall(naive, filter="fully_trusted")
    assert bad.escapes(naive), f"{kind} did not escape a naive extraction"
    # ... and Python's "data" filter refuses it (an absolute name it rewrites to a relative one instead).
    bad2 = prep.make_malicious_archive(tmp_path / "again", kind)
    safe = tmp_path / "again" / "safe"
    with tarfile.open(bad2.path) as tf:
        if kind == "absolute":
            tf.extractall(safe, filter="data")
        else:
            with pytest.raises(tarfile.FilterError):
                tf.extractall(safe, filter="data")
    assert bad2.escapes(safe) == []


def test_malicious_zip_members(tmp_path):
    for kind in ("dotdot", "absolute", "symlink"):
        bad = prep.make_malicious_archive(tmp_path / kind, kind, fmt="zip")
        with zipfile.ZipFile(bad.path) as zf:
            names = zf.namelist()
        assert any(".." in n or n.startswith("/") or n.endswith("/link") for n in names)


# --- FakeReleases -------------------------------------------------------------------------------------------


def test_releases_api_shapes(fake_releases: FakeReleases):
    gh = fake_releases
    gh.add_release("b100", {"llama-b100-bin-ubuntu-x64.tar.gz": b"old"})
    gh.add_release(
        "b200",
        {"llama-b200-bin-ubuntu-x64.tar.gz": b"new", "other.zip": b"zz"},
        digest_override={"other.zip": "00" * 32},
    )
    gh.add_release("b300-rc", {"a.tar.gz": b"rc"}, prerelease=True, omit_digest={"a.tar.gz"})
    with httpx.Client(timeout=5) as c:
        latest = c.get(gh.base_url + "/latest").json()
        assert latest["tag_name"] == "b200"
        a = latest["assets"][0]
        assert a["name"] == "llama-b200-bin-ubuntu-x64.tar.gz"
        assert a["digest"] == "sha256:" + sha256(b"new")
        assert a["size"] == 3 and a["content_type"] == "application/gzip"
        assert a["browser_download_url"].startswith(gh.origin + "/ggml-org/llama.cpp/releases/download/b200/")
        assert latest["assets"][1]["digest"] == "sha256:" + "00" * 32
        listing = c.get(gh.base_url).json()
        assert [r["tag_name"] for r in listing] == ["b300-rc", "b200", "b100"]
        assert listing[0]["prerelease"] is True and listing[0]["assets"][0]["digest"] is None
        assert c.get(gh.base_url + "/tags/b100").json()["published_at"].endswith("Z")
        nf = c.get(gh.base_url + "/tags/b999")
        assert nf.status_code == 404 and nf.json()["message"] == "Not Found"
        assert c.get(gh.origin + "/nowhere").status_code == 404
        page = c.get(gh.base_url, params={"per_page": 1, "page": 2})
        assert [r["tag_name"] for r in page.json()] == ["b200"]
        assert 'rel="next"' in page.headers["Link"] and "page=3" in page.headers["Link"]
    assert gh.hits("/repos/ggml-org/llama.cpp/releases/latest") == 1


def test_releases_download_redirect_range_and_count(fake_releases: FakeReleases, tmp_path):
    gh = fake_releases
    data = os.urandom(200_000)
    (tmp_path / "a.tar.gz").write_bytes(data)
    rel = gh.add_release("b1", {"a.tar.gz": tmp_path / "a.tar.gz"})
    url = rel["assets"][0]["browser_download_url"]
    with httpx.Client(timeout=5) as c:
        r = c.get(url)
        assert r.status_code == 302 and "/objects/" in r.headers["Location"]
        r = c.get(url, follow_redirects=True)
        assert r.content == data
        r = c.get(url, follow_redirects=True, headers={"Range": "bytes=100-"})
        assert r.status_code == 206 and r.content == data[100:]
        assert r.headers["Content-Range"] == f"bytes 100-{len(data) - 1}/{len(data)}"
        assert c.get(gh.download_url("b1", "missing.zip")).status_code == 404
    assert gh.downloads("a.tar.gz") == 2
    assert gh.hits(gh.download_path("b1", "a.tar.gz")) == 3
    assert gh.bytes_served["a.tar.gz"] == len(data) + len(data) - 100


def test_releases_truncate_throttle_fail_and_rate_limit(tmp_path):
    with FakeReleases(redirect_downloads=False) as gh:
        gh.add_release("b1", {"a.zip": b"x" * 100_000, "b.zip": b"y" * 20_000})
        url = gh.download_url("b1", "a.zip")
        gh.truncate("a.zip", 1000, times=1)
        with httpx.Client(timeout=5) as c:
            with c.stream("GET", url) as r:
                assert r.headers["Content-Length"] == "100000"
                with pytest.raises(httpx.RemoteProtocolError):
                    r.read()
            assert len(c.get(url).content) == 100_000  # only once
            gh.fail("a.zip", 503)
            assert c.get(url).status_code == 503
            gh.throttle(100_000, "b.zip")
            t0 = time.monotonic()
            assert len(c.get(gh.download_url("b1", "b.zip")).content) == 20_000
            assert time.monotonic() - t0 >= 0.15
            gh.rate_limited = True
            r = c.get(gh.base_url + "/latest")
            assert r.status_code == 403 and "rate limit" in r.json()["message"]
            assert r.headers["X-RateLimit-Remaining"] == "0"
        assert not gh.errors


# --- FakeHub with the real huggingface_hub ------------------------------------------------------------------

# huggingface_hub keeps a process-wide session; each test passes endpoint= explicitly and a tmp cache_dir.


@pytest.fixture
def hub_repos(fake_hub: FakeHub, tiny_gguf, tiny_split_gguf):
    fake_hub.add_repo(
        "acme/tiny-GGUF",
        files={
            "tiny.Q8_0.gguf": tiny_gguf,
            "README.md": b"# tiny\n",
            "split/a-00001-of-00002.gguf": tiny_split_gguf[0],
            "split/a-00002-of-00002.gguf": tiny_split_gguf[1],
        },
        downloads=500,
        likes=3,
    )
    fake_hub.add_repo("acme/other-GGUF", files={"o.gguf": b"GGUF" + b"\0" * 60}, downloads=900)
    fake_hub.add_repo("bob/not-gguf", files={"model.safetensors": b"st"}, downloads=10_000)
    fake_hub.add_repo("meta/gated-GGUF", files={"g.gguf": tiny_gguf}, gated="manual", allowed_tokens={"hf_allowed"})
    return fake_hub


def test_hub_list_models(hub_repos: FakeHub):
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub_repos.endpoint)
    ids = [m.id for m in api.list_models(search="gguf", filter="gguf", sort="downloads", limit=10)]
    assert ids == ["acme/other-GGUF", "acme/tiny-GGUF", "meta/gated-GGUF"]
    assert [m.id for m in api.list_models(author="bob")] == ["bob/not-gguf"]
    m = next(iter(api.list_models(search="tiny", filter="gguf", expand=["gguf", "downloads", "siblings"])))
    assert m.downloads == 500 and m.gguf["architecture"] == "llama" and m.gguf["context_length"] == prep.TINY_N_CTX
    assert {s.rfilename for s in m.siblings} >= {"tiny.Q8_0.gguf", "README.md"}
    full = next(iter(api.list_models(search="gated", full=True)))
    assert full.gated == "manual" and full.sha
    # Pagination through Link headers is followed by the client.
    hub_repos.page_size = 1
    assert len(list(api.list_models(filter="gguf"))) == 3


def test_hub_model_info_tree_and_paths(hub_repos: FakeHub, tiny_gguf):
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    api = HfApi(endpoint=hub_repos.endpoint)
    info = api.model_info("acme/tiny-GGUF", files_metadata=True)
    sib = {s.rfilename: s for s in info.siblings}
    assert sib["tiny.Q8_0.gguf"].lfs.sha256 == sha256(tiny_gguf.read_bytes())
    assert sib["tiny.Q8_0.gguf"].size == tiny_gguf.stat().st_size
    assert sib["README.md"].lfs is None and sib["README.md"].size == 7
    assert info.gguf["eos_token"] == "<|im_end|>" and info.gguf["total"] > 0
    assert info.sha == hub_repos.repos["acme/tiny-GGUF"].head.sha and info.downloads == 500
    assert api.model_info("acme/tiny-GGUF", revision=info.sha).sha == info.sha

    root = {e.path: e for e in api.list_repo_tree("acme/tiny-GGUF")}
    assert set(root) == {"split", "README.md", "tiny.Q8_0.gguf"}
    assert type(root["split"]).__name__ == "RepoFolder"
    assert root["tiny.Q8_0.gguf"].lfs.sha256 == sib["tiny.Q8_0.gguf"].lfs.sha256
    rec = [e.path for e in api.list_repo_tree("acme/tiny-GGUF", recursive=True)]
    assert "split/a-00002-of-00002.gguf" in rec
    sub = [e.path for e in api.list_repo_tree("acme/tiny-GGUF", path_in_repo="split")]
    assert sub == ["split/a-00001-of-00002.gguf", "split/a-00002-of-00002.gguf"]

    paths = api.get_paths_info("acme/tiny-GGUF", ["tiny.Q8_0.gguf", "split", "nope.gguf"])
    assert [p.path for p in paths] == ["tiny.Q8_0.gguf", "split"]
    assert paths[0].lfs.size == tiny_gguf.stat().st_size

    with pytest.raises(RepositoryNotFoundError):
        api.model_info("acme/missing")
    with pytest.raises(RevisionNotFoundError):
        api.model_info("acme/tiny-GGUF", revision="f" * 40)

    # A new commit moves main; the old sha stays resolvable.
    old = info.sha
    new = hub_repos.commit("acme/tiny-GGUF", {"README.md": b"# tiny v2\n"})
    assert new != old and api.model_info("acme/tiny-GGUF").sha == new
    assert api.model_info("acme/tiny-GGUF", revision=old, files_metadata=True).siblings


def test_hub_download_metadata_and_token_in_header_only(hub_repos: FakeHub, tiny_gguf, tmp_path):
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url

    ep = hub_repos.endpoint
    url = hf_hub_url("acme/tiny-GGUF", "tiny.Q8_0.gguf", endpoint=ep)
    meta = get_hf_file_metadata(url, token="hf_secret_token")
    expected = sha256(tiny_gguf.read_bytes())
    assert meta.etag == expected and meta.size == tiny_gguf.stat().st_size
    assert meta.commit_hash == hub_repos.repos["acme/tiny-GGUF"].head.sha and meta.xet_file_data is None

    path = hf_hub_download("acme/tiny-GGUF", "tiny.Q8_0.gguf", endpoint=ep, cache_dir=tmp_path, token="hf_secret_token")
    assert Path(path).read_bytes() == tiny_gguf.read_bytes()
    assert hub_repos.served("acme/tiny-GGUF", "tiny.Q8_0.gguf") == tiny_gguf.stat().st_size
    gets = hub_repos.requests_to("acme/tiny-GGUF", "tiny.Q8_0.gguf", "GET")
    assert len(gets) == 1
    assert all(r.header("Authorization") == "Bearer hf_secret_token" for r in hub_repos.requests)
    assert not any("hf_secret_token" in r.target for r in hub_repos.requests)
    # README.md is not LFS: its ETag is the git blob id.
    readme = get_hf_file_metadata(hf_hub_url("acme/tiny-GGUF", "README.md", endpoint=ep))
    assert readme.etag == hashlib.sha1(b"blob 7\0# tiny\n").hexdigest()


def test_hub_gated_repo(hub_repos: FakeHub, tmp_path):
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import GatedRepoError

    ep = hub_repos.endpoint
    with pytest.raises(GatedRepoError) as anon:
        hf_hub_download("meta/gated-GGUF", "g.gguf", endpoint=ep, cache_dir=tmp_path)
    assert anon.value.response.status_code == 401
    with pytest.raises(GatedRepoError) as denied:
        hf_hub_download("meta/gated-GGUF", "g.gguf", endpoint=ep, cache_dir=tmp_path, token="hf_other")
    assert denied.value.response.status_code == 403
    assert hf_hub_download("meta/gated-GGUF", "g.gguf", endpoint=ep, cache_dir=tmp_path, token="hf_allowed")
    # Metadata stays public, as on the Hub.
    assert HfApi(endpoint=ep).model_info("meta/gated-GGUF").gated == "manual"
    hub_repos.add_user("hf_user", "alice")
    assert HfApi(endpoint=ep).whoami(token="hf_user")["name"] == "alice"


def test_hub_range_requests(hub_repos: FakeHub, tiny_gguf):
    data = tiny_gguf.read_bytes()
    url = f"{hub_repos.endpoint}/acme/tiny-GGUF/resolve/main/tiny.Q8_0.gguf"
    with httpx.Client(timeout=5) as c:
        head = c.head(url)
        assert head.headers["Accept-Ranges"] == "bytes"
        assert head.headers["ETag"] == f'"{sha256(data)}"' == head.headers["X-Linked-Etag"]
        assert head.headers["X-Linked-Size"] == str(len(data)) == head.headers["Content-Length"]
        assert "X-Repo-Commit" in head.headers and not any(k.lower().startswith("x-xet") for k in head.headers)
        r = c.get(url, headers={"Range": "bytes=10-19"})
        assert r.status_code == 206 and r.content == data[10:20]
        assert r.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
        assert c.get(url, headers={"Range": "bytes=-5"}).content == data[-5:]
        bad = c.get(url, headers={"Range": f"bytes={len(data)}-"})
        assert bad.status_code == 416 and bad.headers["Content-Range"] == f"bytes */{len(data)}"
        missing = c.get(f"{hub_repos.endpoint}/acme/tiny-GGUF/resolve/main/nope.gguf")
        assert missing.status_code == 404 and missing.headers["X-Error-Code"] == "EntryNotFound"


def test_hub_drop_once_inside_first_chunk_restarts_from_zero(hub_repos: FakeHub, tiny_gguf, tmp_path):
    """huggingface_hub reads 10 MiB chunks: a chunk cut short is lost, so it retries without Range."""
    from huggingface_hub import hf_hub_download

    size = tiny_gguf.stat().st_size
    hub_repos.drop_after("acme/tiny-GGUF", "tiny.Q8_0.gguf", 100_000, times=1)
    path = hf_hub_download("acme/tiny-GGUF", "tiny.Q8_0.gguf", endpoint=hub_repos.endpoint, cache_dir=tmp_path)
    assert Path(path).read_bytes() == tiny_gguf.read_bytes()
    gets = hub_repos.requests_to("acme/tiny-GGUF", "tiny.Q8_0.gguf", "GET")
    assert [g.body_bytes for g in gets] == [100_000, size]
    assert gets[1].header("Range") is None
    assert hub_repos.served("acme/tiny-GGUF", "tiny.Q8_0.gguf") == 100_000 + size


def test_hub_drop_once_is_resumed_with_range(fake_hub: FakeHub, smollm2_gguf, tmp_path):
    from huggingface_hub import hf_hub_download

    size = smollm2_gguf.stat().st_size
    fake_hub.add_repo("acme/smol", files={"smol.gguf": smollm2_gguf})
    cut = 25 * 1024 * 1024
    fake_hub.drop_after("acme/smol", "smol.gguf", cut, times=1)
    path = hf_hub_download("acme/smol", "smol.gguf", endpoint=fake_hub.endpoint, cache_dir=tmp_path)
    assert os.path.getsize(path) == size
    gets = fake_hub.requests_to("acme/smol", "smol.gguf", "GET")
    kept = 20 * 1024 * 1024  # two whole 10 MiB chunks reached the file before the cut
    assert gets[1].header("Range") == f"bytes={kept}-"
    assert [g.status for g in gets] == [200, 206]
    assert fake_hub.served("acme/smol", "smol.gguf") == size + (cut - kept)


def test_hub_drop_every_time_and_fail_status(hub_repos: FakeHub):
    hub_repos.drop_after("acme/tiny-GGUF", "README.md", 3, times=None)
    url = f"{hub_repos.endpoint}/acme/tiny-GGUF/resolve/main/README.md"
    with httpx.Client(timeout=5) as c:
        for _ in range(2):
            with pytest.raises(httpx.RemoteProtocolError):
                c.get(url)
        hub_repos.clear_faults()
        hub_repos.fail("acme/tiny-GGUF", "README.md", 503, times=1)
        assert c.head(url).status_code == 503  # status faults hit HEAD too
        assert c.get(url).content == b"# tiny\n"


def test_hub_tampered_bytes_pass_huggingface_hub_unnoticed(hub_repos: FakeHub, tiny_gguf, tmp_path):
    from huggingface_hub import HfApi, hf_hub_download

    hub_repos.tamper("acme/tiny-GGUF", "tiny.Q8_0.gguf")
    path = hf_hub_download("acme/tiny-GGUF", "tiny.Q8_0.gguf", endpoint=hub_repos.endpoint, cache_dir=tmp_path)
    got = Path(path).read_bytes()
    advertised = HfApi(endpoint=hub_repos.endpoint).model_info("acme/tiny-GGUF", files_metadata=True)
    lfs = next(s.lfs for s in advertised.siblings if s.rfilename == "tiny.Q8_0.gguf")
    assert len(got) == lfs.size and sha256(got) != lfs.sha256  # only our own hash check can catch this


def test_hub_throttle(hub_repos: FakeHub):
    hub_repos.throttle(200_000)
    url = f"{hub_repos.endpoint}/acme/tiny-GGUF/resolve/main/tiny.Q8_0.gguf"
    t0 = time.monotonic()
    with httpx.Client(timeout=5) as c:
        assert len(c.get(url, headers={"Range": "bytes=0-59999"}).content) == 60_000
    assert 0.25 <= time.monotonic() - t0 < 3


def test_hub_lfs_redirect_to_cdn_drops_the_token(tiny_gguf, tmp_path):
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url

    with FakeHub(lfs_redirect=True) as hub:
        hub.add_repo("acme/r", files={"m.gguf": tiny_gguf, "README.md": b"hi"})
        meta = get_hf_file_metadata(hf_hub_url("acme/r", "m.gguf", endpoint=hub.endpoint), token="hf_tok")
        assert meta.location.startswith(hub.cdn.origin) and meta.size == tiny_gguf.stat().st_size
        hub.drop_after("acme/r", "m.gguf", 50_000, times=1)
        path = hf_hub_download("acme/r", "m.gguf", endpoint=hub.endpoint, cache_dir=tmp_path, token="hf_tok")
        assert Path(path).read_bytes() == tiny_gguf.read_bytes()
        assert hub.served("acme/r", "m.gguf") == tiny_gguf.stat().st_size + 50_000  # restarted from 0
        assert hub.cdn.requests and all(r.header("Authorization") is None for r in hub.cdn.requests)
        with httpx.Client(timeout=5) as c:  # a client that forwards the token to the CDN is refused there
            r = c.get(meta.location, headers={"Authorization": "Bearer hf_tok"})
            assert r.status_code == 400
        # Small non-LFS files are served by the hub itself.
        assert hf_hub_download("acme/r", "README.md", endpoint=hub.endpoint, cache_dir=tmp_path)
        assert not hub.errors and not hub.cdn.errors
