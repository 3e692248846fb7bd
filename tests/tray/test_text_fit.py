"""Every window and wizard screen the screenshots show (packaging/screenshots.py), built from the same fixed
data: no label, button or check box is cut or elided at the default font size; and the script writes a valid,
small PNG of every scene, menus included, on the light and the dark theme."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QApplication, QMenu

from tests.tray.text_fit import cut_texts

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "packaging"))

import screenshots  # noqa: E402 - from packaging/, put on sys.path just above

SCENES = dict(screenshots.scenes())
WINDOWS = [name for name in SCENES if not name.startswith("menu-")]  # a menu sizes itself to its items


@pytest.fixture
def own_theme():
    """The screenshots switch the application's style and palette: put back what the other tests expect."""
    app = QApplication.instance()
    style, palette = app.style().name(), app.palette()
    yield
    app.setStyle(style)
    app.setPalette(palette)


@pytest.mark.parametrize("name", WINDOWS)
def test_no_text_is_cut(name):
    window = screenshots.shown(SCENES[name]())
    try:
        assert window.isVisible() and cut_texts(window) == []
    finally:
        screenshots.close(window)


def test_every_scene_has_a_small_png_on_each_theme(tmp_path, own_theme):
    out = tmp_path / "shots"
    written = screenshots.render_all(out)
    expected = {f"{name}-{theme}.png" for name in SCENES for theme in screenshots.THEMES}
    assert {p.name for p in written} == expected == {p.name for p in out.iterdir()}
    for path in written:
        image = QImage(str(path))
        assert not image.isNull(), path.name
        assert 150 <= image.width() <= 1200 and 80 <= image.height() <= 900, (path.name, image.size())
        assert 1_000 < path.stat().st_size < 150_000, path.name
    assert sum(p.stat().st_size for p in written) < 3_000_000
    assert len(WINDOWS) > 10 and isinstance(screenshots.menu_scene("running"), QMenu)
