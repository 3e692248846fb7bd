"""The first-run wizard, step by step with the real parts: install the runtime from a local releases server
(a failure, then Retry), the token checked against a local Hub and kept in the real keyring, the server
started and healthy, and a wizard closed half-way that resumes at the first step not done."""

from __future__ import annotations

import keyring
import pytest

from aidevops_local.core.serving import server
from aidevops_local.core.system import secrets
from aidevops_local.tray import wizard as wizard_mod
from aidevops_local.tray.app import TrayApp
from aidevops_local.tray.wizard import Pick, Wizard
from tests.tray.conftest import dispose

TAG = "b10068"
ASSET = f"llama-{TAG}-bin-ubuntu-x64.tar.gz"


@pytest.fixture
def app(qtbot):
    t = TrayApp(use_tray=False, native_notifications=False)
    yield t
    dispose(t)


def open_wizard(qtbot, app) -> Wizard:
    w = Wizard(app)  # deletes itself on close, as in the app
    app.windows[f"wizard-{id(w)}"] = w
    w.show()
    qtbot.waitUntil(lambda: w.ready, timeout=15_000)
    return w


@pytest.fixture
def releases(fake_releases, release_archive, monkeypatch):
    monkeypatch.setenv("AIDEVOPS_LLAMA_RELEASES_URL", fake_releases.base_url)
    monkeypatch.setenv("AIDEVOPS_BACKEND", "cpu")
    fake_releases.add_release(TAG, {ASSET: release_archive(TAG)})
    return fake_releases


def test_fresh_machine_starts_at_hardware_and_installs_the_runtime_after_a_retry(qtbot, app, releases, release_archive):
    w = open_wizard(qtbot, app)
    assert w.currentId() == wizard_mod.PAGE_ID["hardware"]
    summary = w.page_named("hardware").summary.text()
    assert "cores" in summary and "memory" in summary and "backend: cpu" in summary
    w.next()
    page = w.page_named("runtime")
    assert w.currentPage() is page and not page.isComplete()
    assert "Backend: cpu" in page.intro.text()

    releases.truncate(ASSET, after_bytes=release_archive(TAG).stat().st_size // 3, times=1)
    page.action.click()
    qtbot.waitUntil(lambda: page.action.text() == "Retry", timeout=60_000)
    assert ASSET in page.result.text() and not page.isComplete()

    page.action.click()
    qtbot.waitUntil(page.isComplete, timeout=120_000)
    assert page.result.text() == f"Installed: {TAG} (cpu)"
    assert w.button(Wizard.WizardButton.NextButton).isEnabled()


def test_closed_wizard_resumes_at_the_first_step_not_done(qtbot, app, system_runtime, local_models):
    wizard_mod.save_pick(Pick(name="tiny-b", local=True))
    w = open_wizard(qtbot, app)
    assert w.currentPage() is w.page_named("start")  # runtime, choice and model are done already
    page = w.page_named("start")
    page.action.click()
    qtbot.waitUntil(page.isComplete, timeout=60_000)
    assert server.status().model == "tiny-b"
    w.next()
    assert w.currentPage() is w.page_named("done")
    assert w.page_named("done").endpoint.text() == server.status().endpoint
    w.close()

    again = open_wizard(qtbot, app)
    assert again.currentPage() is again.page_named("done")
    server.stop(grace=2)


def test_start_failure_shows_the_reason_and_retry_works(qtbot, app, system_runtime, local_models):
    import socket

    wizard_mod.save_pick(Pick(name="tiny-a", local=True))
    w = open_wizard(qtbot, app)
    page = w.page_named("start")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", system_runtime.port))
        holder.listen()
        page.action.click()
        qtbot.waitUntil(lambda: page.action.text() == "Retry", timeout=60_000)
    assert "already in use" in page.result.text()
    page.action.click()
    qtbot.waitUntil(page.isComplete, timeout=60_000)
    server.stop(grace=2)


def test_token_step_checks_with_the_hub_and_stores_in_the_keyring(qtbot, app, fake_hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    fake_hub.add_user("hf_good", name="alice")
    page = wizard_mod.TokenPage(Wizard(app))
    qtbot.addWidget(page)
    page.token.setText("hf_bad")
    page.save.click()
    qtbot.waitUntil(lambda: "did not accept" in page.note.text(), timeout=15_000)
    assert page.token.text() == ""  # the secret left the widget at once
    assert secrets.read(secrets.HF_TOKEN) is None
    page.token.setText("hf_good")
    page.save.click()
    qtbot.waitUntil(lambda: "alice" in page.note.text(), timeout=15_000)
    assert keyring.get_password(secrets.SERVICE, secrets.HF_TOKEN) == "hf_good"
    assert page.isComplete()  # optional step: Next always works
    secrets.forget(secrets.HF_TOKEN)


def test_download_step_cancel_then_resume(qtbot, app, system_runtime, fake_hub, smollm2_gguf, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    repo, file = "org/SmolLM2-135M-Instruct-GGUF", "SmolLM2-135M-Instruct.Q4_1.gguf"
    fake_hub.add_repo(repo, files={file: smollm2_gguf})
    fake_hub.throttle(2_000_000)  # 98 MB: about a minute, so Cancel lands mid-way
    wizard_mod.save_pick(Pick(name="SmolLM2-135M-Instruct", repo=repo, file=file, quant="Q4_1"))
    w = open_wizard(qtbot, app)
    page = w.page_named("download")
    assert w.currentPage() is page
    page.action.click()
    qtbot.waitUntil(lambda: page.bar.maximum() == 1000 and page.bar.value() > 0, timeout=30_000)
    page.cancel.click()
    qtbot.waitUntil(lambda: page.job is None, timeout=30_000)
    assert page.action.text() == "Resume", (page.action.text(), page.result.text(), page.isComplete())
    assert "paused" in page.result.text()
    fake_hub.clear_faults()
    page.action.click()
    qtbot.waitUntil(page.isComplete, timeout=60_000)
    assert fake_hub.served(repo, file) < 1.5 * smollm2_gguf.stat().st_size  # resumed, not started over


def test_recommendations_show_memory_and_speed_and_the_choice_is_kept(qtbot, app, system_runtime):
    w = open_wizard(qtbot, app)
    assert w.currentPage() is w.page_named("recommend")  # runtime there, no model yet
    page = w.page_named("recommend")
    qtbot.waitUntil(lambda: page.list.count() > 0, timeout=15_000)
    labels = [page.list.item(i).text() for i in range(page.list.count())]
    assert all("needs" in label and "tokens/s" in label for label in labels), labels
    page.list.setCurrentRow(page.list.count() - 1)
    chosen = page.list.currentItem().data(0x0100)
    w.next()
    assert w.currentPage() is w.page_named("token")
    qtbot.waitUntil(lambda: wizard_mod.load_pick() == chosen, timeout=5000)
    w.next()
    assert w.currentPage() is w.page_named("download")
    assert chosen.repo in w.page_named("download").intro.text()


def test_token_step_shows_the_hubs_account_name_without_control_characters(qtbot, app, fake_hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    fake_hub.add_user("hf_good", name="al\x1b[2J\u202eice")
    page = wizard_mod.TokenPage(Wizard(app))
    qtbot.addWidget(page)
    page.token.setText("hf_good")
    page.save.click()
    qtbot.waitUntil(lambda: "knows it as" in page.note.text(), timeout=15_000)
    assert page.note.text().endswith("knows it as al[2Jice.")
    secrets.forget(secrets.HF_TOKEN)


def test_the_last_page_offers_to_make_this_the_aidevops_frameworks_local_tier(qtbot, app, tmp_path, monkeypatch):
    from PySide6.QtCore import Qt

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
