"""`doctor` names the installed app's version and where newer releases are published: the package metadata's
`Releases` project URL (the release workflow stamps it), or AIDEVOPS_APP_RELEASES_URL."""

from __future__ import annotations

import json

from aidevops_local import __version__
from aidevops_local.cli.main import main as cli
from aidevops_local.core.maintenance import doctor
from aidevops_local.core.system import config


def app_check() -> doctor.Check:
    found = [c for c in doctor.run().checks if c.name == "app"]
    assert len(found) == 1, [c.name for c in doctor.run().checks]
    return found[0]


def test_doctor_names_the_version_and_the_releases_page_from_the_environment(monkeypatch, capsys):
    monkeypatch.setenv("AIDEVOPS_APP_RELEASES_URL", "https://github.com/example/aidevops-local/releases")

    found = app_check()

    assert found.status == doctor.OK
    assert found.summary == (
        f"aidevops-local {__version__}; newer releases are published at "
        "https://github.com/example/aidevops-local/releases"
    )
    cli(["doctor", "--json"])
    report = json.loads(capsys.readouterr().out)
    shown = [c for c in report["checks"] if c["name"] == "app"]
    assert shown and shown[0]["summary"] == found.summary


def test_the_releases_page_comes_from_the_package_metadata():
    urls = ["Homepage, https://example.org", "Releases, https://github.com/example/aidevops-local/releases"]

    assert config.releases_page_from(urls) == "https://github.com/example/aidevops-local/releases"
    assert config.releases_page_from(["Homepage, https://example.org"]) is None
    assert config.releases_page_from([]) is None


def test_without_a_releases_page_doctor_says_how_to_name_one(monkeypatch):
    monkeypatch.delenv("AIDEVOPS_APP_RELEASES_URL", raising=False)
    monkeypatch.setattr(config, "_project_urls", lambda: [])

    found = app_check()

    assert found.status == doctor.OK
    assert found.summary == (f"aidevops-local {__version__}; where newer releases are published is not configured")
    assert "AIDEVOPS_APP_RELEASES_URL" in found.details[0] and "[project.urls]" in found.details[0]


def test_a_releases_page_that_is_not_a_web_address_is_a_warning(monkeypatch):
    monkeypatch.setenv("AIDEVOPS_APP_RELEASES_URL", "javascript:alert(1)")

    found = app_check()

    assert found.status == doctor.WARN
    assert found.summary == (
        f"aidevops-local {__version__}; AIDEVOPS_APP_RELEASES_URL is not an http(s) address: 'javascript:alert(1)'"
    )
    assert "AIDEVOPS_APP_RELEASES_URL" in found.fix
