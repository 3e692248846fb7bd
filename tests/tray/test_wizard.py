"""The first-run wizard, driven with real clicks on its real buttons: from launch to a model answering in three
screens (the runtime installed from a local releases server, the suggested model downloaded from a local Hub
and verified, the real llama-server started and answering a chat request), a download cancelled and resumed,
a wizard closed mid-download that resumes when opened again, and the token asked for a gated model only.
The machine is a hardware profile (24 GB, no GPU); the suggestion is whatever `recommend` picks first for it,
served by the local Hub under its catalog name with the tiny model's bytes."""

from __future__ import annotations

import json

import httpx
import keyring
import pytest
from PySide6.QtCore import QObject, Qt, Slot
from PySide6.QtGui import QDesktopServices, QGuiApplication
from PySide6.QtWidgets import QWizard

from aidevops_local.core.models import recommend
from aidevops_local.core.serving import server
from aidevops_local.core.system import hardware, secrets
from aidevops_local.tray.app import TrayApp
from aidevops_local.tray.wizard import Pick, Wizard, save_pick
from tests.serving import serving_settings, with_model
from tests.tray.conftest import dispose

TAG = "b10068"
ASSET = f"llama-{TAG}-bin-ubuntu-x64.tar.gz"
MAIN_BUTTONS = (QWizard.WizardButton.CommitButton, QWizard.WizardButton.NextButton, QWizard.WizardButton.FinishButton)


@pytest.fixture
def app(qtbot):
    t = TrayApp(use_tray=False, native_notifications=False)
    t._wizard_offered = True  # the tests open their own wizard: the app's first-launch one would race it
    yield t
    dispose(t)
    server.stop(grace=2)


@pytest.fixture(autouse=True)
def machine(tmp_path, monkeypatch) -> hardware.Hardware:
    """24 GB of memory, no GPU: the machine the issue describes."""
    profile = tmp_path / "machine.json"
    profile.write_text(
        json.dumps({"os": "linux", "arch": "x64", "physical_cores": 8, "ram_gb": 24, "backends": ["cpu"]}),
        encoding="utf-8",
    )
    monkeypatch.setenv("AIDEVOPS_HARDWARE_PROFILE", str(profile))
    return hardware.detect()


@pytest.fixture
def suggested(machine, fake_hub, tiny_gguf, monkeypatch) -> recommend.Recommendation:
    """recommend's first pick for this machine, on the local Hub (the tiny model's bytes under its name)."""
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    first = recommend.recommend(machine).picks[0]
    return first


@pytest.fixture
def releases(fake_releases, release_archive, monkeypatch):
    monkeypatch.setenv("AIDEVOPS_LLAMA_RELEASES_URL", fake_releases.base_url)
    monkeypatch.setenv("AIDEVOPS_BACKEND", "cpu")
    fake_releases.add_release(TAG, {ASSET: release_archive(TAG)})
    return fake_releases


def open_wizard(qtbot, app) -> Wizard:
    w = Wizard(app)  # deletes itself on close, as in the app
    app.windows[f"wizard-{id(w)}"] = w
    w.show()
    qtbot.waitUntil(lambda: w.ready, timeout=15_000)
    return w


def main_button(w: Wizard):
    """The wizard's primary button on this screen (Set up, Resume, Save token…, Done): the one Enter presses."""
    shown = [w.button(b) for b in MAIN_BUTTONS if w.button(b).isVisible()]
    assert len(shown) == 1, [b.text() for b in shown]
    return shown[0]


def click(qtbot, button) -> None:
    assert button.isVisible() and button.isEnabled(), button.text()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def choose_screen(qtbot, w: Wizard):
    page = w.page_named("choose")
    assert w.currentPage() is page
    qtbot.waitUntil(lambda: page.list.count() > 0, timeout=30_000)
    return page


def wait_done(qtbot, w: Wizard, timeout=120_000) -> None:
    setup = w.page_named("setup")
    qtbot.waitUntil(lambda: w.currentPage() is w.page_named("done") or setup.waiting == "retry", timeout=timeout)
    assert w.currentPage() is w.page_named("done"), (setup.checklist.states, setup.result.text())


def chat(endpoint: str) -> dict:
    body = with_model({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8}, endpoint)
    response = httpx.post(f"{endpoint}/chat/completions", json=body, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def test_from_launch_to_a_model_answering_in_three_screens(qtbot, app, releases, suggested, fake_hub, tiny_gguf):
    fake_hub.add_repo(suggested.repo, files={suggested.file: tiny_gguf})
    serving_settings()
    w = open_wizard(qtbot, app)
    page = choose_screen(qtbot, w)
    assert page.machine.text().startswith("24 GB of memory, no graphics card that helps: models up to about ")
    assert page.name.text() == suggested.name and page.heading.text() == "We suggest"
    assert suggested.use in page.facts.text().lower() and "download" in page.facts.text()
    assert "tokens/s" in page.facts.text() and page.why.text()
    click(qtbot, main_button(w))  # Set up

    setup = w.page_named("setup")
    assert w.currentPage() is setup
    wait_done(qtbot, w)
    assert setup.token_box.isHidden()  # not gated: no token asked
    assert w.screens_seen() == ["choose", "setup", "done"]
    assert set(setup.checklist.states.values()) == {"done"}
    done = w.page_named("done")
    endpoint = done.endpoint.text()
    assert endpoint == server.status().endpoint and suggested.name in done.title.text()
    assert chat(endpoint)["choices"][0]["message"]
    assert fake_hub.served(suggested.repo, suggested.file) == tiny_gguf.stat().st_size

    click(qtbot, done.copy)
    assert QGuiApplication.clipboard().text() == endpoint
    assert done.copied.text().startswith("Copied")
    click(qtbot, done.chat)  # offscreen there is no browser: it says so and shows the address
    assert done.chat_note.text() == f"No browser opened. Open {done.chat_url()} in your browser."
    assert "local-model-helper.sh status --json" in done.aidevops.text()
    click(qtbot, main_button(w))  # Done
    qtbot.waitUntil(lambda: not w.isVisible(), timeout=5000)


def test_cancel_stops_the_download_and_resume_continues_it(
    qtbot, app, system_runtime, suggested, fake_hub, smollm2_gguf
):
    fake_hub.add_repo(suggested.repo, files={suggested.file: smollm2_gguf})
    fake_hub.throttle(3_000_000)  # 98 MB: half a minute, so Cancel lands mid-way
    w = open_wizard(qtbot, app)
    choose_screen(qtbot, w)
    click(qtbot, main_button(w))
    setup = w.page_named("setup")
    qtbot.waitUntil(lambda: setup.bar.maximum() == 1000 and setup.bar.value() > 0, timeout=30_000)
    qtbot.waitUntil(lambda: "/s" in setup.detail.text() and "left" in setup.detail.text(), timeout=30_000)
    assert setup.checklist.states == {"runtime": "done", "download": "running", "start": "todo"}
    click(qtbot, setup.cancel)
    qtbot.waitUntil(lambda: setup.job is None, timeout=30_000)
    assert setup.checklist.states["download"] == "paused" and "paused" in setup.result.text()
    assert main_button(w).text() == "Resume"
    fake_hub.clear_faults()
    click(qtbot, main_button(w))
    wait_done(qtbot, w)
    assert fake_hub.served(suggested.repo, suggested.file) < 1.5 * smollm2_gguf.stat().st_size  # not from 0


def test_closed_mid_download_the_wizard_reopens_on_the_progress_screen_and_resumes(
    qtbot, app, system_runtime, suggested, fake_hub, smollm2_gguf
):
    fake_hub.add_repo(suggested.repo, files={suggested.file: smollm2_gguf})
    fake_hub.throttle(3_000_000)
    w = open_wizard(qtbot, app)
    choose_screen(qtbot, w)
    click(qtbot, main_button(w))
    setup = w.page_named("setup")
    qtbot.waitUntil(lambda: setup.bar.maximum() == 1000 and setup.bar.value() > 0, timeout=30_000)
    click(qtbot, w.button(QWizard.WizardButton.CancelButton))  # "Close"
    qtbot.waitUntil(lambda: not app.workers.running(), timeout=30_000)
    fake_hub.clear_faults()

    again = open_wizard(qtbot, app)
    assert again.currentPage() is again.page_named("setup")  # straight on: the choice is kept
    wait_done(qtbot, again)
    assert again.screens_seen() == ["setup", "done"]
    assert fake_hub.served(suggested.repo, suggested.file) < 1.5 * smollm2_gguf.stat().st_size
    again.close()
    third = open_wizard(qtbot, app)
    assert third.currentPage() is third.page_named("done")  # everything done: the endpoint


def test_a_gated_model_asks_for_the_token_on_the_progress_screen(
    qtbot, app, system_runtime, suggested, fake_hub, tiny_gguf
):
    fake_hub.add_repo(suggested.repo, files={suggested.file: tiny_gguf}, gated="manual", allowed_tokens={"hf_ok"})
    fake_hub.add_user("hf_ok", name="alice")
    w = open_wizard(qtbot, app)
    choose_screen(qtbot, w)
    click(qtbot, main_button(w))
    setup = w.page_named("setup")
    qtbot.waitUntil(lambda: not setup.token_box.isHidden(), timeout=30_000)
    assert "gated" in setup.token_text.text() and "huggingface.co/settings/tokens" in setup.token_text.text()
    assert main_button(w).text() == "Save token and continue"
    qtbot.keyClicks(setup.token, "hf_wrong")
    click(qtbot, main_button(w))
    qtbot.waitUntil(lambda: "did not accept" in setup.result.text(), timeout=15_000)
    assert setup.token.text() == "" and secrets.read(secrets.HF_TOKEN) is None
    qtbot.keyClicks(setup.token, "hf_ok")
    click(qtbot, main_button(w))
    wait_done(qtbot, w)
    assert keyring.get_password(secrets.SERVICE, secrets.HF_TOKEN) == "hf_ok"
    secrets.forget(secrets.HF_TOKEN)


def test_a_model_on_disk_is_offered_first_and_is_not_downloaded_again(qtbot, app, system_runtime, local_models):
    w = open_wizard(qtbot, app)
    page = choose_screen(qtbot, w)
    assert "already downloaded" in page.facts.text().lower()
    click(qtbot, page.another)
    assert not page.list.isHidden() and page.list.count() > len(local_models)  # and recommend's picks
    click(qtbot, main_button(w))
    wait_done(qtbot, w)
    assert server.status().model in local_models
    assert w.page_named("setup").checklist.states == {"runtime": "done", "download": "done", "start": "done"}


def test_a_start_failure_says_why_and_retry_works(qtbot, app, system_runtime, local_models):
    import socket

    w = open_wizard(qtbot, app)
    choose_screen(qtbot, w)
    setup = w.page_named("setup")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", system_runtime.port))
        holder.listen()
        click(qtbot, main_button(w))
        qtbot.waitUntil(lambda: main_button(w).text() == "Retry", timeout=60_000)
    assert "already in use" in setup.result.text() and setup.checklist.states["start"] == "failed"
    click(qtbot, main_button(w))
    wait_done(qtbot, w)


def test_open_chat_opens_the_servers_page_in_the_browser(qtbot, app, served):
    class Browser(QObject):
        opened: list[str] = []

        @Slot("QUrl")
        def open(self, url) -> None:
            self.opened.append(url.toString())

    browser = Browser()
    QDesktopServices.setUrlHandler("http", browser, "open")
    try:
        save_pick(Pick(title="Tiny A", name="tiny-a", local=True))  # set up and serving: the wizard opens at the end
        w = open_wizard(qtbot, app)
        page = w.page_named("done")
        assert w.currentPage() is page and page.endpoint.text() == served.endpoint
        click(qtbot, page.chat)
    finally:
        QDesktopServices.unsetUrlHandler("http")
    assert browser.opened == [page.chat_url()] and page.chat_note.text().startswith("Opened")


def test_the_last_page_offers_to_make_this_the_aidevops_frameworks_local_tier(qtbot, app, tmp_path, monkeypatch):
    from tests.test_agents_install import write_framework

    page = open_wizard(qtbot, app).page_named("done")
    page.initializePage()  # no framework under this root: nothing said, nothing offered
    assert page.framework_text.isHidden() and page.add_framework.isHidden()

    framework = write_framework(tmp_path / "agents")
    monkeypatch.setenv("AIDEVOPS_AGENTS_DIR", str(framework))
    page.initializePage()
    assert not page.add_framework.isHidden() and str(framework) in page.framework_text.text()
    qtbot.mouseClick(page.add_framework, Qt.MouseButton.LeftButton)
    helper = framework / "scripts" / "local-model-helper.sh"
    assert "CREATE TABLE model_usage" in helper.read_text(encoding="utf-8")
    assert page.add_framework.isHidden() and page.framework_text.text().startswith("Added to the aidevops framework")

    page.initializePage()
    assert page.add_framework.isHidden() and "uses this as its local tier" in page.framework_text.text()
