"""The tray icon, drawn with QPainter at every size it is asked for, so it is crisp at 16-48 px and on HiDPI.

Shapes, not colours, carry the state, so the monochrome template icon on macOS says as much as the coloured
one on Linux: stopped = an empty ring, starting = a ring with an open arc, running = a filled disc,
error = a ring crossed by a bar. High memory pressure adds a triangle badge at the bottom right.
On Linux the glyph is light or dark to suit the panel; colour marks only the state.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QGuiApplication, QIcon, QPainter, QPainterPath, QPen, QPixmap

STATES = ("stopped", "starting", "running", "error")
SIZES = (16, 20, 22, 24, 32, 40, 44, 48, 64)
ACCENT = {"stopped": None, "starting": "#e0a100", "running": "#2da44e", "error": "#d1242f"}
BADGE = "#f28c28"


@dataclass(frozen=True)
class IconSpec:
    state: str
    pressure: bool = False
    variant: str = "dark"  # "dark" glyph for light panels, "light" for dark panels, "template" (macOS)


def default_variant() -> str:
    if sys.platform == "darwin":
        return "template"
    app = QGuiApplication.instance()
    if app is not None and app.styleHints().colorScheme() == Qt.ColorScheme.Light:
        return "dark"
    return "light"  # panels are dark on most Linux desktops, and when the scheme is unknown


def paint(painter: QPainter, size: float, spec: IconSpec) -> None:
    """Draw the glyph into a size x size square at the origin."""
    template = spec.variant == "template"
    ink = QColor("#000000" if template or spec.variant == "dark" else "#f0f0f0")
    accent = ink if template or ACCENT[spec.state] is None else QColor(ACCENT[spec.state])
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    stroke = max(1.5, size / 9)
    margin = stroke / 2 + size * 0.06
    ring = QRectF(margin, margin, size - 2 * margin, size - 2 * margin)
    pen = QPen(ink if spec.state in ("stopped", "starting") else accent, stroke)
    pen.setCapStyle(Qt.PenCapStyle.RoundCap)
    painter.setPen(pen)
    painter.setBrush(Qt.BrushStyle.NoBrush)
    if spec.state == "running":
        painter.setBrush(accent)
        painter.drawEllipse(ring)
        # A light core keeps "running" readable as a shape in the monochrome template.
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_Clear)
        core = size * 0.14
        painter.drawEllipse(ring.center(), core, core)
        painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_SourceOver)
    elif spec.state == "starting":
        painter.drawArc(ring, 90 * 16, 270 * 16)  # three quarters: a ring still closing
        painter.setPen(QPen(accent, stroke))
        painter.drawPoint(QPointF(ring.center().x(), ring.top()))
    elif spec.state == "error":
        painter.drawEllipse(ring)
        c, r = ring.center(), ring.width() / 2 * 0.72
        painter.drawLine(QPointF(c.x() - r, c.y() + r), QPointF(c.x() + r, c.y() - r))
    else:
        painter.drawEllipse(ring)
    if spec.pressure:
        _badge(painter, size, ink if template else QColor(BADGE), template)


def _badge(painter: QPainter, size: float, colour: QColor, template: bool) -> None:
    side = size * 0.5
    x, y = size - side, size - side
    path = QPainterPath()
    path.moveTo(x + side / 2, y)
    path.lineTo(x + side, y + side)
    path.lineTo(x, y + side)
    path.closeSubpath()
    # Clear a rim around the badge so it stays separate from the glyph beneath at 16 px.
    painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_Clear)
    painter.setPen(QPen(Qt.GlobalColor.black, max(1.0, size / 16)))
    painter.drawPath(path)
    painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_SourceOver)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(colour)
    painter.drawPath(path)


def pixmap(spec: IconSpec, size: int, device_pixel_ratio: float = 1.0) -> QPixmap:
    pm = QPixmap(round(size * device_pixel_ratio), round(size * device_pixel_ratio))
    pm.setDevicePixelRatio(device_pixel_ratio)
    pm.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pm)
    paint(painter, size, spec)
    painter.end()
    return pm


@lru_cache(maxsize=32)
def icon(spec: IconSpec) -> QIcon:
    result = QIcon()
    for size in SIZES:
        result.addPixmap(pixmap(spec, size, 1.0))
        result.addPixmap(pixmap(spec, size, 2.0))
    if spec.variant == "template":
        result.setIsMask(True)  # macOS tints it for light and dark menu bars
    return result


def app_icon_path() -> Path:
    """The application icon (windows, notifications, the autostart entry), shipped in resources/."""
    return Path(__file__).resolve().parent.parent / "resources" / "app-icon.svg"


def state_icon(state: str, *, pressure: bool = False, variant: str | None = None) -> QIcon:
    return icon(IconSpec(state if state in STATES else "error", pressure, variant or default_variant()))
