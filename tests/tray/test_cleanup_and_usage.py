"""Stale models: the menu line, the review window, removal, and the once-a-day nudge as a real notification
that names what it is about ("Llama 3.2 3B Instruct unused for 40 days (2.0 GB). Clean up?") and whose
"Clean up…" opens the window. Usage: the per-model table and per-day chart from core.usage."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from PySide6.QtCore import Qt

from aidevops_local.core.database import store
from aidevops_local.core.system import clock, config
from aidevops_local.tray import snapshot

GIB = 1024**3
# Catalog files, so the tray calls them what the catalog does; sparse, so they are big without using the disk.
LLAMA = ("Llama-3.2-3B-Instruct-Q4_K_M.gguf", 2 * GIB, 40)
QWEN = ("Qwen2.5-Coder-1.5B-Instruct-Q4_K_M.gguf", GIB, 35)


def pulled(home: Path, tiny_gguf: Path, file_name: str, size: int, idle_days: int) -> Path:
    """A model this tool downloaded, last used ``idle_days`` ago: the tiny GGUF grown (sparse) to ``size``."""
    models = home / "models"
    models.mkdir(exist_ok=True)
    path = models / file_name
    shutil.copy(tiny_gguf, path)
    with open(path, "r+b") as handle:
        handle.truncate(size)
    store.database()
    when = clock.now() - timedelta(days=idle_days)
    store.ModelInventory.create(
        model=path.stem,
        path=str(path),
        files=[str(path)],
        source="pulled",
        size_bytes=size,
        downloaded=when,
        last_used=when,
    )
    return path


@pytest.fixture
def stale_models(isolated_home, tiny_gguf) -> dict[str, Path]:
    return {spec[0]: pulled(isolated_home, tiny_gguf, *spec) for spec in (LLAMA, QWEN)}


def test_stale_models_show_in_the_snapshot_and_the_window_removes_them(qtbot, app, stale_models):
    snap = snapshot.collect(full=True)
    assert snap.stale == snapshot.StaleSummary(2, 3 * GIB)
    app.open_cleanup()
    window = app.windows["cleanup"]
    qtbot.waitUntil(lambda: window.tree.topLevelItemCount() == 2, timeout=10_000)
    shown = [[window.tree.topLevelItem(i).text(c) for c in range(4)] for i in range(2)]
    assert shown == [
        ["Llama 3.2 3B Instruct", "2.0 GB", "40 days", "Downloaded by aidevops-local"],
        ["Qwen2.5 Coder 1.5B Instruct", "1.0 GB", "35 days", "Downloaded by aidevops-local"],
    ]
    assert window.remove_button.isEnabled() and window.remove_button.text() == "Remove selected (3.0 GB)"
    window.remove(confirmed=True)
    qtbot.waitUntil(lambda: window.note.text().startswith("Removed 2 models"), timeout=10_000)
    assert not any(p.exists() for p in stale_models.values())
    qtbot.waitUntil(lambda: window.tree.topLevelItemCount() == 0, timeout=10_000)


def test_nudge_for_one_model_names_it_and_its_size_with_a_png_icon(qtbot, app, isolated_home, tiny_gguf, desktop):
    pulled(isolated_home, tiny_gguf, *LLAMA)
    config.save_settings(replace(config.load_settings(), stale_nudge_gb=0.0))
    app.check_nudge()
    call = desktop.wait_notification("Unused local model", timeout=20)
    assert call.body == "Llama 3.2 3B Instruct unused for 40 days (2.0 GB). Clean up?"
    assert (call.actions["review"], call.actions["later"]) == ("Clean up…", "Later")
    icon = Path(unquote(urlparse(call.icon).path))
    # A PNG in the app's cache: dunst here has no SVG loader and showed no icon for the SVG.
    assert icon.suffix == ".png" and icon.parent == config.paths().cache_dir and icon.is_file()
    assert f"No icon found in path: '{icon}'" not in (desktop.root / "dunst.log").read_text(errors="replace")


def test_nudge_for_several_names_the_biggest_once_a_day_and_clean_up_opens_the_window(
    qtbot, app, stale_models, desktop
):
    config.save_settings(replace(config.load_settings(), stale_nudge_gb=0.0))
    app.check_nudge()
    body = "2 models unused for 30+ days take 3.0 GB, the biggest Llama 3.2 3B Instruct (2.0 GB). Clean up?"
    call = desktop.wait_notification("Unused local models", containing=body, timeout=20)
    assert call.body == body

    desktop.choose_action("Unused local models", "Clean up…")
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
    assert rows == {"tiny-a": "30", "tiny-b": "3", "all": "33"}  # the total too, as the CLI prints it
    assert sum(sum(v) for v in window.data.series.values()) == 190
    assert "3 requests" in window.note.text()


def _usage_rows(days_ago_tokens):
    store.database()
    now = clock.now()
    for i, (model, days_ago, tin, tout) in enumerate(days_ago_tokens):
        store.ModelUsage.create(
            model=model,
            timestamp=now - timedelta(days=days_ago),
            tokens_in=tin,
            tokens_out=tout,
            duration_ms=100,
            tok_per_sec=50.0,
            request_key=f"s:{i}",
        )


def _open_usage(qtbot, app, days: int = 7):
    from aidevops_local.tray.usage_window import PERIODS, UsageWindow

    window = UsageWindow(app)
    app.windows["usage"] = window
    window.period.setCurrentIndex([d for _, d in PERIODS].index(days))
    qtbot.waitUntil(lambda: window.data is not None and len(window.data.days) == days, timeout=10_000)
    return window


def test_usage_shows_the_cloud_cost_table_the_cli_prints(qtbot, app, isolated_home, capsys, monkeypatch):
    """The same figures as `aidevops-local usage`, model by model and the total."""
    import re

    from aidevops_local.cli.main import main as cli

    _usage_rows([("tiny-a", 0, 120_000, 30_000), ("tiny-a", 1, 5_000, 2_000), ("tiny-b", 3, 1_000_000, 250_000)])
    monkeypatch.setenv("COLUMNS", "250")
    assert cli(["usage"]) == 0
    printed = re.findall(r"\$[\d,]+\.\d+", capsys.readouterr().out)
    window = _open_usage(qtbot, app, 7)
    table = window.cost_table
    shown = [table.item(r, c).text() for r in range(table.rowCount()) for c in range(1, table.columnCount())]
    assert [table.item(r, 0).text() for r in range(table.rowCount())] == ["tiny-a", "tiny-b", "all"]
    assert [table.horizontalHeaderItem(c).text() for c in range(1, table.columnCount())] == list(
        window.data.report.price_models
    )
    assert shown == printed and len(shown) == 3 * len(window.data.report.price_models)
    assert window.prices_note.text().startswith("List prices as of ")


def test_usage_chart_shows_empty_days_as_zero_and_labels_the_newest_day(qtbot, app, isolated_home):
    import pyqtgraph as pg

    _usage_rows([("tiny-a", 0, 100, 20), ("tiny-a", 2, 50, 10)])
    window = _open_usage(qtbot, app, 7)
    totals = [sum(v[i] for v in window.data.series.values()) for i in range(7)]
    assert totals[-1] == 120 and totals[-3] == 60 and totals.count(0) == 5
    zeros = [item for item in window.plot.getPlotItem().items if isinstance(item, pg.TextItem)]
    assert sorted(round(z.pos().x()) for z in zeros) == [i for i, t in enumerate(totals) if t == 0]
    assert all(z.toPlainText() == "0" for z in zeros)
    ticks = window.plot.getAxis("bottom")._tickLevels[0]
    assert ticks[-1] == (6, window.data.days[-1].strftime("%b %d"))  # the newest day has its label
    assert len(ticks) == 7

    month = _open_usage(qtbot, app, 30)
    ticks = month.plot.getAxis("bottom")._tickLevels[0]
    assert ticks[-1][0] == 29 and len(ticks) <= 10


def test_usage_window_keys_and_no_text_cut(qtbot, app, isolated_home):
    from tests.tray.text_fit import cut_texts

    _usage_rows([("tiny-a", 0, 100, 20), ("tiny-b", 1, 7, 3)])
    window = _open_usage(qtbot, app, 7)
    window.show()
    qtbot.waitExposed(window)
    assert cut_texts(window) == []
    assert window.period.accessibleName() == "Period" and window.cost_table.accessibleName()
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5_000)
    qtbot.keyClick(window, Qt.Key.Key_Escape)
    assert not window.isVisible()
