"""Stale models: the menu line, the review window, removal, and the once-a-day nudge as a real notification
whose "Review" opens the window. Usage: the per-model table and per-day chart from core.usage."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import timedelta

import pytest

from aidevops_local.core.database import store
from aidevops_local.core.system import clock, config
from aidevops_local.tray import snapshot


@pytest.fixture
def stale_models(isolated_home, tiny_gguf):
    models = isolated_home / "models"
    models.mkdir(exist_ok=True)
    store.database()
    old = clock.now() - timedelta(days=40)
    paths = {}
    for name in ("old-a", "old-b"):
        path = models / f"{name}.gguf"
        shutil.copy(tiny_gguf, path)
        store.ModelInventory.create(
            model=name,
            path=str(path),
            files=[str(path)],
            source="pulled",
            size_bytes=path.stat().st_size,
            downloaded=old,
            last_used=old,
        )
        paths[name] = path
    return paths


def test_stale_models_show_in_the_snapshot_and_the_window_removes_them(qtbot, app, stale_models):
    snap = snapshot.collect(full=True)
    assert snap.stale == snapshot.StaleSummary(2, sum(p.stat().st_size for p in stale_models.values()))
    app.open_cleanup()
    window = app.windows["cleanup"]
    qtbot.waitUntil(lambda: window.tree.topLevelItemCount() == 2, timeout=10_000)
    assert window.remove_button.isEnabled()
    window.remove(confirmed=True)
    qtbot.waitUntil(lambda: window.note.text().startswith("Removed 2"), timeout=10_000)
    assert not any(p.exists() for p in stale_models.values())
    qtbot.waitUntil(lambda: window.tree.topLevelItemCount() == 0, timeout=10_000)


def test_nudge_is_a_notification_once_a_day_and_review_opens_the_window(qtbot, app, stale_models, desktop):
    config.save_settings(replace(config.load_settings(), stale_nudge_gb=0.0))
    app.check_nudge()
    call = desktop.wait_notification("Unused local models")
    assert call.actions["review"] == "Review" and call.actions["later"] == "Later"
    assert "2 local models" in call.body

    desktop.choose_action("Unused local models", "Review")
    qtbot.waitUntil(lambda: "cleanup" in app.windows, timeout=10_000)

    sent = len([n for n in desktop.notifications() if n.summary == "Unused local models"])
    app.check_nudge()  # the same day: nothing
    qtbot.wait(1000)
    assert len([n for n in desktop.notifications() if n.summary == "Unused local models"]) == sent


def test_usage_table_lists_each_model(qtbot, app, isolated_home):
    store.database()
    now = clock.now()
    for i, (model, tin, tout) in enumerate([("tiny-a", 100, 20), ("tiny-a", 50, 10), ("tiny-b", 7, 3)]):
        store.ModelUsage.create(
            model=model,
            timestamp=now - timedelta(days=i),
            tokens_in=tin,
            tokens_out=tout,
            duration_ms=100,
            tok_per_sec=50.0,
            request_key=f"s:{i}",
        )
    from aidevops_local.tray.usage_window import UsageWindow

    window = UsageWindow(app)
    app.windows["usage"] = window
    qtbot.waitUntil(lambda: window.data is not None, timeout=10_000)
    rows = {window.table.item(r, 0).text(): window.table.item(r, 3).text() for r in range(window.table.rowCount())}
    assert rows == {"tiny-a": "30", "tiny-b": "3"}
    assert sum(sum(v) for v in window.data.series.values()) == 190
    assert "3 requests" in window.note.text()
