"""Screenshots of every window, wizard screen and menu state, on a light and a dark theme, for the README and
for review: run with the project's virtual environment, offline, no server needed:

    .venv/bin/python packaging/screenshots.py [--out docs/screenshots]

Each scene is built from the tray's own widgets fed with screenshot_data's fixed data, shown off screen and
grabbed to PNG (palette-reduced, so the set stays small). tests/tray/test_text_fit.py renders the same scenes
and fails when a text is cut.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "desktop"))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # headless, and the same pictures on any desktop

import screenshot_data as data
from PySide6.QtCore import Qt, qInstallMessageHandler
from PySide6.QtGui import QColor, QImage, QPalette
from PySide6.QtWidgets import QApplication, QMenu, QStyleFactory, QWidget

THEMES = ("light", "dark")
OUT = ROOT / "docs" / "screenshots"
Scene = tuple[str, Callable[[], QWidget]]


# ---- the scenes ---------------------------------------------------------------------------------------------


def menu_scene(state: str) -> QMenu:
    from aidevops_local.tray import menu

    snap, kw = data.MENU_STATES[state]
    m = QMenu()
    m.setObjectName(f"menu_{state}")
    m._app = data.FakeApp(snap, **kw)  # kept alive with the menu: its actions call it
    menu.build(m, m._app)
    return m


def control(no_tray: bool) -> QWidget:
    from aidevops_local.tray.control_window import ControlWindow

    snap = data.stopped() if no_tray else data.running()
    return ControlWindow(data.FakeApp(snap), no_tray=no_tray)


def models() -> QWidget:
    from aidevops_local.tray.models_window import ModelsWindow

    window = ModelsWindow(data.FakeApp(data.running(), {"models": data.library_rows}))
    window.table.setCurrentItem(window.table.topLevelItem(2))
    return window


def download() -> QWidget:
    from aidevops_local.tray.download_window import DownloadWindow

    app = data.FakeApp(data.running(), {"suggest": data.suggestions, "hub-files": data.hub_listing})
    window = DownloadWindow(app)
    window.repos.setCurrentItem(window.repos.topLevelItem(0))
    window.files.setCurrentItem(window.files.topLevelItem(2))  # Q5_K_M: not on disk yet, so Download is on
    return window


def usage() -> QWidget:
    from aidevops_local.tray.usage_window import UsageWindow

    return UsageWindow(data.FakeApp(data.running(), {"usage": data.usage_data}))


def cleanup() -> QWidget:
    from aidevops_local.tray.cleanup_window import CleanupWindow

    return CleanupWindow(data.FakeApp(data.running(), {"stale": data.stale_plan}))


def settings() -> QWidget:
    from aidevops_local.tray.settings_window import SettingsWindow

    return SettingsWindow(data.FakeApp(data.running(), {"settings": data.settings_loaded}))


def log() -> QWidget:
    from aidevops_local.tray.dialogs import LogWindow

    window = LogWindow()
    window.set_text(Path(data.crashed().status.log_path), data.LOG_TEXT)
    return window


def confirm() -> QWidget:
    from aidevops_local.tray import cleanup_texts
    from aidevops_local.tray.dialogs import ConfirmDialog

    question = cleanup_texts.removal_question(data.stale_plan()[1][:2])
    return ConfirmDialog(None, question.title, question.text, question.details, confirm="Delete", keep="Keep")


def about() -> QWidget:
    from aidevops_local.tray.commands import about_box

    return about_box(data.running())


@contextmanager
def _framework_offer():
    """The last screen's word on the aidevops framework, as on a machine that has it (not this one's)."""
    from aidevops_local.tray import wizard_done

    real = wizard_done.framework_offer
    wizard_done.framework_offer = lambda: (
        "The aidevops framework is on this machine (~/.aidevops/agents). Add this local tier to it, so its "
        "agents can route private and cost-free work here?",
        True,
    )
    try:
        yield
    finally:
        wizard_done.framework_offer = real


def wizard(screen: str) -> QWidget:
    from aidevops_local.core.system.progress import Progress
    from aidevops_local.tray.wizard import Wizard

    results = {"wizard-progress": lambda: data.wizard_progress(screen), "wizard-suggest": data.wizard_suggestions}
    app = data.FakeApp(data.running() if screen == "done" else data.stopped(), results)
    with _framework_offer():
        w = Wizard(app)
    if screen == "setup":  # the download half-way, at a steady speed
        page, total = w.page_named("setup"), int(2.0 * data.GB)
        page.rate.clock = iter(range(100)).__next__
        for second in range(5):
            page._progress(Progress("download", int(total * (0.38 + 0.02 * second)), total, "B"))
    return w


def scenes() -> Iterator[Scene]:
    """(name, a function that builds it) for every picture, menus first; the windows are top-level widgets."""
    for state in data.MENU_STATES:
        yield f"menu-{state}", lambda state=state: menu_scene(state)
    yield "control", lambda: control(False)
    yield "control-no-tray", lambda: control(True)
    yield from (("models", models), ("download", download), ("usage", usage), ("cleanup", cleanup))
    yield from (("settings", settings), ("log", log), ("confirm", confirm), ("about", about))
    for i, screen in enumerate(("choose", "setup", "done"), start=1):
        yield f"wizard-{i}-{screen}", lambda screen=screen: wizard(screen)


# ---- themes and rendering -------------------------------------------------------------------------------------


def dark_palette() -> QPalette:
    p = QPalette()
    roles = {
        QPalette.ColorRole.Window: "#2b2b2e",
        QPalette.ColorRole.WindowText: "#e8e8ea",
        QPalette.ColorRole.Base: "#1f1f22",
        QPalette.ColorRole.AlternateBase: "#2f2f33",
        QPalette.ColorRole.Text: "#e8e8ea",
        QPalette.ColorRole.Button: "#3a3a3f",
        QPalette.ColorRole.ButtonText: "#e8e8ea",
        QPalette.ColorRole.ToolTipBase: "#3a3a3f",
        QPalette.ColorRole.ToolTipText: "#e8e8ea",
        QPalette.ColorRole.PlaceholderText: "#9a9aa2",
        QPalette.ColorRole.Highlight: "#3d7dd8",
        QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.Link: "#79b0ff",
        QPalette.ColorRole.BrightText: "#ff6b6b",
        QPalette.ColorRole.Light: "#4a4a50",
        QPalette.ColorRole.Midlight: "#404046",
        QPalette.ColorRole.Mid: "#5a5a60",
        QPalette.ColorRole.Dark: "#18181a",
        QPalette.ColorRole.Shadow: "#000000",
    }
    for role, colour in roles.items():
        p.setColor(role, QColor(colour))
    disabled = QPalette.ColorGroup.Disabled
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
        p.setColor(disabled, role, QColor("#8a8a92"))
    return p


def set_theme(theme: str) -> None:
    """Fusion everywhere (the same look on any machine), with its light palette or a dark one."""
    app = QApplication.instance()
    style = QStyleFactory.create("Fusion")
    app.setStyle(style)
    app.setPalette(style.standardPalette() if theme == "light" else dark_palette())


def shown(widget: QWidget) -> QWidget:
    """The widget shown (off screen) at its own size, its layouts settled."""
    if isinstance(widget, QMenu):
        widget.popup(widget.pos())
    else:
        widget.show()
    for _ in range(3):
        QApplication.processEvents()
    return widget


def close(widget: QWidget) -> None:
    widget.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    widget.close()
    QApplication.processEvents()


def reduced(image: QImage) -> QImage:
    """The picture in at most 256 colours (palette()), each pixel drawn in the nearest: a window has a few
    hundred colours at most, mostly text antialiasing, so nothing a reader sees changes and the PNG shrinks
    several times. Qt's own conversion maps to a fixed colour cube instead, which turns greys blue."""
    import numpy as np

    rgb = image.convertToFormat(QImage.Format.Format_RGB32)
    w, h = rgb.width(), rgb.height()
    pixels = np.frombuffer(rgb.constBits(), np.uint32).reshape(h, rgb.bytesPerLine() // 4)[:, :w].ravel()
    colours, inverse, counts = np.unique(pixels, return_inverse=True, return_counts=True)
    rgb_of = np.stack([(colours >> 16) & 255, (colours >> 8) & 255, colours & 255], axis=-1).astype(np.int64)
    kept = palette(rgb_of, counts)
    nearest = ((rgb_of[:, None, :] - rgb_of[None, kept, :]) ** 2).sum(-1).argmin(1)
    index = np.ascontiguousarray(nearest.astype(np.uint8)[inverse.ravel()].reshape(h, w))
    out = QImage(index.data, w, h, w, QImage.Format.Format_Indexed8).copy()  # copy: owns its bytes
    out.setColorTable([int(c) for c in colours[kept]])
    return out


def palette(rgb, counts, size: int = 256) -> list[int]:
    """Which colours to keep: the most used half, then, one at a time, the colour whose pixels would be drawn
    furthest off (pixels times distance to the nearest kept), so a small red word stays red."""
    import numpy as np

    order = list(np.argsort(counts)[::-1])
    if len(order) <= size:
        return order
    kept = order[: size // 2]
    far = ((rgb[:, None, :] - rgb[None, kept, :]) ** 2).sum(-1).min(1)
    while len(kept) < size and (score := counts * far).max() > 0:
        best = int(score.argmax())
        kept.append(best)
        far = np.minimum(far, ((rgb - rgb[best]) ** 2).sum(-1))
    return kept


def render(name: str, build: Callable[[], QWidget], path: Path) -> Path:
    widget = shown(build())
    image = reduced(widget.grab().toImage())
    close(widget)
    if not image.save(str(path), "PNG", 0):  # 0: the smallest file
        raise OSError(f"cannot write {path}")
    return path


def render_all(out: Path, only: str = "") -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for theme in THEMES:
        set_theme(theme)
        for name, build in scenes():
            if only in name:
                written.append(render(name, build, out / f"{name}-{theme}.png"))
    return written


def _quiet(kind, context, message: str) -> None:
    """The offscreen platform's notes on what it cannot do (raise a window, grab the keyboard) are noise here."""
    if "This plugin does not support" not in message:
        print(message, file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help="folder for the PNGs (default: docs/screenshots)")
    parser.add_argument("--only", default="", help="only the scenes whose name contains this")
    args = parser.parse_args(argv)
    qInstallMessageHandler(_quiet)
    os.environ["AIDEVOPS_HOME"] = tempfile.mkdtemp(prefix="screenshots-")  # never the user's own settings
    _app = QApplication.instance() or QApplication([sys.argv[0]])
    written = render_all(args.out, args.only)
    size = sum(p.stat().st_size for p in written)
    print(f"{len(written)} screenshots, {size // 1024} KB, in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
