"""A release API or download host that lies: sizes it does not keep to, answers too large to hold, rate-limit
headers that are not times. Each ends in one line and an exit code, never a traceback, a full disk or memory."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from aidevops_local.cli.main import main
from aidevops_local.core.llamacpp import releases, runtime
from aidevops_local.core.system.errors import ExitCode, VerificationFailed
from tests.fakes import FakeHTTPServer

TAG = "b10100"
NAME = f"llama-{TAG}-bin-ubuntu-x64.tar.gz"
LISTED = 1024  # what the API says the asset weighs
SENT = 64 << 20  # what the download host has to send


@pytest.fixture
def gh(fake_releases, monkeypatch):
    monkeypatch.setenv("AIDEVOPS_LLAMA_RELEASES_URL", fake_releases.base_url)
    monkeypatch.setenv("AIDEVOPS_BACKEND", "cpu")
    return fake_releases


@pytest.fixture
def oversized(gh, tmp_path):
    """A release whose asset is listed at 1 KiB while its host holds 64 MiB (sparse, outside AIDEVOPS_HOME)."""
    big = tmp_path / "served-bytes"
    with open(big, "wb") as out:
        out.truncate(SENT)
    gh.add_release(TAG, {NAME: big}, asset_fields={NAME: {"size": LISTED}}, digest_override={NAME: "a" * 64})
    return gh


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return " ".join(err.split())  # the renderer wraps long lines


def largest_file(root: Path) -> int:
    return max((p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink()), default=0)


def test_a_content_length_that_disagrees_with_the_listed_size_is_refused_up_front(oversized, capsys):
    assert main(["install"]) == ExitCode.VERIFY_FAILED

    err = one_line_error(capsys)
    assert NAME in err and f"{LISTED:,} bytes" in err and f"{SENT:,}" in err
    assert largest_file(Path(os.environ["AIDEVOPS_HOME"])) <= LISTED
    assert oversized.bytes_served[NAME] < SENT  # it stopped reading at the headers
    assert runtime.installed_runtime() is None


def test_a_host_that_sends_more_than_listed_is_cut_off_at_the_listed_size(oversized, capsys):
    oversized.chunked = True  # no Content-Length: only counting the bytes catches it
    seen: list[int] = []

    with pytest.raises(VerificationFailed) as caught:
        runtime.install_release(progress=lambda p: seen.append(p.done) if p.task.startswith("Downloading") else None)
    assert "\n" not in caught.value.message
    assert NAME in caught.value.message and f"{LISTED:,} bytes" in caught.value.message
    assert max(seen) <= LISTED

    assert main(["install"]) == ExitCode.VERIFY_FAILED
    err = one_line_error(capsys)
    assert NAME in err and "sent more" in err
    assert largest_file(Path(os.environ["AIDEVOPS_HOME"])) <= LISTED
    assert oversized.bytes_served[NAME] < SENT  # two installs, each stopped long before the end


def test_an_honest_download_without_content_length_installs(gh, release_archive):
    gh.chunked = True
    name = f"llama-{TAG}-bin-ubuntu-x64.tar.gz"
    gh.add_release(TAG, {name: release_archive(TAG)})

    assert runtime.install_release().tag == TAG


@pytest.mark.parametrize("size", [None, 0])
def test_an_asset_listed_without_a_size_is_not_downloaded(gh, capsys, size):
    gh.add_release(TAG, {NAME: b"x" * 100}, asset_fields={NAME: {"size": size}})

    assert main(["install"]) == ExitCode.VERIFY_FAILED
    err = one_line_error(capsys)
    assert NAME in err and "size" in err
    assert gh.downloads(NAME) == 0


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_api_answer_too_large_to_hold_is_refused(gh, capsys, chunked):
    gh.chunked = chunked
    notes = "x" * (2 * releases._JSON_LIMIT)
    gh.add_release(TAG, {NAME: b"x"}, body=notes)

    assert main(["update", "--check"]) == ExitCode.NETWORK
    err = one_line_error(capsys)
    assert "too large" in err and "latest llama.cpp release" in err
    answer = [r for r in gh.requests if r.path.endswith("/latest")][-1]
    assert answer.body_bytes < len(notes)  # the client stopped reading


def test_an_api_answer_nested_too_deep_is_not_json(monkeypatch, capsys):
    class Nested(FakeHTTPServer):
        def handle(self, req):
            req.send(200, b"[" * 100_000)

    with Nested() as api:
        monkeypatch.setenv("AIDEVOPS_LLAMA_RELEASES_URL", f"{api.origin}/repos/ggml-org/llama.cpp/releases")
        assert main(["update", "--check"]) == ExitCode.NETWORK
    assert "not JSON" in one_line_error(capsys)


@pytest.mark.parametrize("reset", ["\u00b2", "9" * 20, "1" * 5000, "-1", "12:00"])
def test_a_rate_limit_reset_that_is_not_a_time_is_left_out(gh, capsys, reset):
    gh.rate_limited = True
    gh.rate_limit_reset = reset

    assert main(["update", "--check"]) == ExitCode.NETWORK
    err = one_line_error(capsys)
    assert "rate limit is used up." in err and "resets at" not in err and "GITHUB_TOKEN" in err


def test_a_rate_limit_reset_within_the_hour_is_shown(gh, capsys):
    gh.rate_limited = True
    reset = int(time.time()) + 600
    gh.rate_limit_reset = str(reset)

    assert main(["update", "--check"]) == ExitCode.NETWORK
    assert time.strftime("resets at %H:%M", time.localtime(reset)) in one_line_error(capsys)
