"""A hostile or broken Hub: a listing whose next page is on another host, on itself or never ends, and JSON of
the wrong type. Each ends in one typed error (one line and its hint from the CLI), never a traceback, and the
token goes nowhere but the Hub's own origin."""

from __future__ import annotations

import hashlib
import itertools
import os
import subprocess
import sys

import pytest

from aidevops_local.core.models import hub, hub_card
from aidevops_local.core.system.errors import NetworkError
from tests.fakes import FakeHTTPServer
from tests.fakes.hf_hub import FakeHub

TOKEN = "hf_hostiletestAbCdEf0123456789"
REPO = "org/tiny-GGUF"
TREE = f"/api/models/{REPO}/tree/main"
DATA = b"GGUF" + b"\0" * 60
SHA = hashlib.sha256(DATA).hexdigest()
GOOD_FILE = {"type": "file", "oid": "1" * 40, "size": len(DATA), "path": "tiny-Q8_0.gguf", "lfs": {"oid": SHA}}
GOOD_REPO = {"id": "org/good-GGUF", "downloads": 5, "likes": 1, "lastModified": "2025-01-02T00:00:00.000Z"}
ENOUGH = 200  # pages after which a looping fake stops linking, so that a Hub client without a cap still returns


class OtherHost(FakeHTTPServer):
    """Another origin: it records whatever reaches it."""

    def handle(self, req) -> None:
        req.send_json(200, [])


@pytest.fixture
def other_host():
    with OtherHost() as server:
        yield server


@pytest.fixture
def hub_env(fake_hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    fake_hub.add_user(TOKEN)
    fake_hub.add_repo(REPO, {"tiny-Q8_0.gguf": DATA})
    fake_hub.add_repo("org/tiny2-GGUF", {"tiny2-Q8_0.gguf": DATA})
    return fake_hub


def _list(listing: str):
    return hub.list_files(REPO) if listing == "tree" else hub.search("tiny")


def test_pages_on_the_hubs_own_origin_are_followed(monkeypatch):
    with FakeHub(page_size=2) as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.endpoint)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        fake.add_repo(REPO, {f"m{i}-Q{i}_0.gguf": DATA for i in range(5)})
        for i in range(5):
            fake.add_repo(f"org/tiny{i}-GGUF", {"m-Q8_0.gguf": DATA}, downloads=i)
        assert len(hub.repo_files(REPO)) == 5 and fake.hits(TREE) == 3
        assert [r.downloads for r in hub.search("tiny", limit=5)] == [4, 3, 2, 1, 0]
        assert fake.hits("/api/models") == 3
        assert all(r.header("Authorization") == f"Bearer {TOKEN}" for r in fake.requests)


@pytest.mark.parametrize("listing", ["tree", "models"])
@pytest.mark.parametrize("where", ["another port", "another scheme", "another host name"])
def test_a_next_page_on_another_origin_is_never_asked_for(hub_env, other_host, listing, where):
    target = {
        "another port": other_host.origin,
        "another scheme": hub_env.origin.replace("http:", "https:"),
        "another host name": hub_env.origin.replace("127.0.0.1", "localhost"),
    }[where]
    hub_env.rewrite(listing, lambda req, items, _next: ([], f"{target}/collect?cursor=2"))
    with pytest.raises(NetworkError, match="next page to another host") as info:
        _list(listing)
    assert "token" in info.value.hint
    assert other_host.requests == []
    assert len([r for r in hub_env.requests if r.path in (TREE, "/api/models")]) == 1


def test_a_search_that_has_read_enough_asks_for_no_next_page(hub_env, other_host):
    hub_env.rewrite("models", lambda req, items, _next: (items, f"{other_host.origin}/collect"))
    assert len(hub.search("tiny", limit=1)) == 1
    assert other_host.requests == []


def _looping(fake: FakeHub, path: str, items: list, *, fresh: bool):
    """Pages that link to the same next page (or, ``fresh``, to a new one each time) until ENOUGH were served."""
    cursors = itertools.count(1)

    def answer(req, _items, _next):
        more = fake.hits(path) < ENOUGH
        return items, (f"{fake.origin}{path}?cursor={next(cursors) if fresh else 1}" if more else None)

    return answer


@pytest.mark.parametrize("listing", ["tree", "models"])
def test_a_listing_that_links_back_to_a_page_already_read_is_refused(hub_env, listing):
    path = TREE if listing == "tree" else "/api/models"
    hub_env.rewrite(listing, _looping(hub_env, path, [], fresh=False))
    with pytest.raises(NetworkError, match="links back to a page already read"):
        _list(listing)
    assert hub_env.hits(path) == 2


@pytest.mark.parametrize("listing", ["tree", "models"])
def test_a_listing_that_never_ends_is_refused_at_the_page_cap(hub_env, monkeypatch, listing):
    path = TREE if listing == "tree" else "/api/models"
    monkeypatch.setattr(hub, "TREE_PAGES", 5)
    monkeypatch.setattr(hub, "SEARCH_PAGES", 5)
    hub_env.rewrite(listing, _looping(hub_env, path, [], fresh=True))
    with pytest.raises(NetworkError, match="runs past 5 pages"):
        _list(listing)
    assert hub_env.hits(path) == 5


def test_a_file_listing_of_too_many_entries_is_refused(hub_env, monkeypatch):
    monkeypatch.setattr(hub, "TREE_ENTRIES", 4)
    hub_env.add_repo("org/many-GGUF", {f"m{i}-Q8_0.gguf": DATA for i in range(5)})
    with pytest.raises(NetworkError, match="runs past 4 entries"):
        hub.list_files("org/many-GGUF")
    assert len(hub.list_files(REPO)) == 1


@pytest.mark.parametrize(
    "body",
    [
        [{**GOOD_FILE, "size": str(len(DATA))}],
        [{**GOOD_FILE, "size": 224.5}],
        [{**GOOD_FILE, "size": -5}],
        [{**GOOD_FILE, "size": True}],
        [{k: v for k, v in GOOD_FILE.items() if k != "type"}],
        [{k: v for k, v in GOOD_FILE.items() if k != "size"}],
        [{**GOOD_FILE, "lfs": "x"}],
        [{**GOOD_FILE, "lfs": {"oid": 5}}],
        [{**GOOD_FILE, "lfs": {}}],
        [{**GOOD_FILE, "path": 7}],
        [{**GOOD_FILE, "path": ""}],
        [{"type": "file", "oid": [1], "size": 1, "path": "a-Q8_0.gguf"}],
        ["tiny-Q8_0.gguf"],
        [None],
        {"entries": []},
    ],
)
def test_a_file_listing_of_the_wrong_shape_is_refused(hub_env, body):
    hub_env.rewrite("tree", lambda req, items, _next: (body, None))
    with pytest.raises(NetworkError, match="malformed answer"):
        hub.list_files(REPO)


@pytest.mark.parametrize(
    "bad",
    [
        {**GOOD_REPO, "id": "org/bad-GGUF", "downloads": "many"},
        {**GOOD_REPO, "id": "org/bad-GGUF", "likes": -1},
        {**GOOD_REPO, "id": "org/bad-GGUF", "lastModified": "yesterday"},
        {**GOOD_REPO, "id": "org/bad-GGUF", "gated": "sometimes"},
        {**GOOD_REPO, "id": "org/bad-GGUF", "tags": "gguf"},
        {**GOOD_REPO, "id": 7},
        {**GOOD_REPO, "id": "../../etc-GGUF"},
        "org/bad-GGUF",
        None,
    ],
)
def test_a_search_result_of_the_wrong_shape_is_left_out(hub_env, bad):
    hub_env.rewrite("models", lambda req, items, _next: ([bad, GOOD_REPO], None))
    found = hub.search("GGUF")
    assert [(r.repo_id, r.downloads, r.last_modified) for r in found] == [("org/good-GGUF", 5, "2025-01-02")]


@pytest.mark.parametrize("body", [[{**GOOD_REPO, "id": 7}, "x"], {"models": [GOOD_REPO]}, "[]"])
def test_a_search_listing_with_nothing_well_formed_is_refused(hub_env, body):
    hub_env.rewrite("models", lambda req, items, _next: (body, None))
    with pytest.raises(NetworkError, match="malformed answer"):
        hub.search("GGUF")


@pytest.mark.parametrize(
    "command, listing, answer",
    [
        (["pull", REPO], "tree", lambda other: ([GOOD_FILE], f"{other}/collect")),
        (["search", "tiny"], "models", lambda other: ([], f"{other}/collect")),
        (["pull", REPO], "tree", lambda other: ([{**GOOD_FILE, "size": "224"}], None)),
        (["search", "--repo", REPO], "tree", lambda other: ({"entries": []}, None)),
        (["search", "tiny"], "models", lambda other: ([{**GOOD_REPO, "lastModified": "yesterday"}], None)),
    ],
)
def test_the_cli_says_one_line_and_sends_the_token_nowhere_else(hub_env, other_host, command, listing, answer):
    hub_env.rewrite(listing, lambda req, items, _next: answer(other_host.origin))
    done = subprocess.run(
        [sys.executable, "-m", "aidevops_local", *command],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "300"},
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 7, done.stderr
    assert [line.split(":")[0] for line in done.stderr.splitlines()] == ["error", "hint"], done.stderr
    assert TOKEN not in done.stdout + done.stderr
    assert other_host.requests == []


@pytest.mark.parametrize(
    "change",
    [{"lastModified": "yesterday"}, {"downloads": "many"}, {"gated": "weird"}, {"likes": -1}, {"createdAt": 5}],
)
def test_a_repos_record_of_the_wrong_shape_is_one_line(hub_env, change):
    """The one-repo record (the wizard's gated check, the download window's card) is checked like a search
    result: a malformed one is a NetworkError, not a TypeError from a later format or huggingface_hub's parse."""
    hub_env.rewrite("info", lambda req, record, _next: (record | change, None))
    for read in (hub.repo_info, hub_card.model_card):
        with pytest.raises(NetworkError) as caught:
            read(REPO)
        assert "sent a malformed answer: the record of" in caught.value.message
        assert "\n" not in caught.value.message
