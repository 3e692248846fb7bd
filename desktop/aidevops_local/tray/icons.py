"""The tray icon, drawn with QPainter at every size it is asked for, so it is crisp at 16-48 px and on HiDPI.

The mark is the app icon's chip: a rounded body with two pins on each side. Shapes, not colours, carry the
state, so the monochrome template icon on macOS says as much as the coloured one on Linux:
stopped = an empty chip, starting = a chip filling from the bottom, running = a solid chip with a hollow core,
stopping = a chip around a small "stop" square, error = a chip with a cross. Memory pressure adds a round
badge ("!" from 20 px up).

Panels differ: a dark glyph for a light panel, a light one for a dark panel. Where the desktop does not say
which it has (or says light while its panel is dark, as GNOME's is), the "halo" glyph reads on both: light
lines with a dark one-pixel rim on a dark plate, and state colours of middling luminance (3:1 against white
and black alike). tests/tray/test_icons.py holds every state to WCAG's 3:1 on light and dark panels.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QGuiApplication, QIcon, QImage, QPainter, QPen, QPixmap

from ..core.system.errors import LocalModelsError

log = logging.getLogger(__name__)

STATES = ("stopped", "starting", "running", "stopping", "error")
SIZES = (16, 20, 22, 24, 32, 40, 44, 48, 64)
VARIANTS = ("dark", "light", "halo", "template")
INK = {"dark": "#1b1b1b", "light": "#f2f2f2", "halo": "#f2f2f2", "template": "#000000"}
HALO = "#141414"
# Each accent keeps 3:1 against the panel its variant is for: darker on light panels, lighter on dark ones.
ACCENT = {
    "dark": {
        "stopping": INK["dark"],
        "starting": "#9a6700",
        "running": "#1a7f37",
        "error": "#cf222e",
        "pressure": "#bc4c00",
    },
    "light": {
        "stopping": INK["light"],
        "starting": "#e3b341",
        "running": "#3fb950",
        "error": "#ff7b72",
        "pressure": "#f0883e",
    },
    # Mid-tones (relative luminance near 0.2) for the halo glyph: 3:1 against light and dark panels alike.
    "halo": {
        "stopping": INK["halo"],
        "starting": "#b87400",
        "running": "#218a3e",
        "error": "#e0302f",
        "pressure": "#d9480f",
    },
}
# Desktops whose panel follows the light/dark colour scheme; elsewhere (GNOME's bar is dark in either) a light
# scheme says nothing about the panel.
SCHEME_FOLLOWING_PANELS = ("KDE", "LXQT")


@dataclass(frozen=True)
class IconSpec:
    state: str
    pressure: bool = False
    variant: str = "halo"  # "dark" glyph for light panels, "light" for dark ones, "halo" for either, "template"


def default_variant() -> str:
    if sys.platform == "darwin":
        return "template"
    app = QGuiApplication.instance()
    scheme = app.styleHints().colorScheme() if app is not None else Qt.ColorScheme.Unknown
    return variant_for(scheme, os.environ.get("XDG_CURRENT_DESKTOP", ""))


def variant_for(scheme: Qt.ColorScheme, desktop: str) -> str:
    """The glyph for a panel, from what the desktop says about its colours (Linux)."""
    if scheme == Qt.ColorScheme.Dark:
        return "light"  # a dark theme has a dark panel
    if scheme == Qt.ColorScheme.Light and any(d in desktop.upper() for d in SCHEME_FOLLOWING_PANELS):
        return "dark"
    return "halo"


def _colour(spec: IconSpec, part: str) -> QColor:
    if spec.variant == "template":
        return QColor(INK["template"])
    return QColor(ACCENT[spec.variant][part])


def paint(painter: QPainter, size: float, spec: IconSpec) -> None:
    """Draw the glyph into a size x size square at the origin (no halo: see image())."""
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    ink = QColor(INK[spec.variant])
    stroke = max(1.5, size / 10)
    pin = size * 0.17  # how far the pins reach out of the body
    body = QRectF(pin, pin, size - 2 * pin, size - 2 * pin)
    _pins(painter, body, pin, stroke, ink)
    outline = QPen(ink, stroke)
    outline.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
    radius = size * 0.1
    inside = body.adjusted(stroke / 2, stroke / 2, -stroke / 2, -stroke / 2)
    painter.setPen(Qt.PenStyle.NoPen)
    if spec.variant == "halo":  # a dark plate: the light marks inside read on a light panel too
        painter.setBrush(QColor(HALO))
        painter.drawRoundedRect(body, radius, radius)
    if spec.state == "running":
        painter.setBrush(_colour(spec, "running"))
        painter.drawRoundedRect(body, radius, radius)
        _clear(painter, lambda: painter.drawEllipse(body.center(), size * 0.11, size * 0.11))
    elif spec.state == "starting":
        painter.setBrush(_colour(spec, "starting"))
        painter.drawRect(inside.adjusted(0, inside.height() / 2, 0, 0))
    elif spec.state == "error":
        cross = QPen(_colour(spec, "error"), max(2.2, stroke * 1.2))
        cross.setCapStyle(Qt.PenCapStyle.RoundCap)
        painter.setPen(cross)
        corners = inside.adjusted(stroke * 0.7, stroke * 0.7, -stroke * 0.7, -stroke * 0.7)
        painter.drawLine(corners.topLeft(), corners.bottomRight())
        painter.drawLine(corners.bottomLeft(), corners.topRight())
    elif spec.state == "stopping":  # a "stop" square: a dashed outline would blur into a whole one at 16 px
        painter.setBrush(_colour(spec, "stopping"))
        half = inside.width() * 0.3
        painter.drawRect(QRectF(body.center().x() - half, body.center().y() - half, 2 * half, 2 * half))
    painter.setPen(outline)
    painter.setBrush(Qt.BrushStyle.NoBrush)
    painter.drawRoundedRect(body, radius, radius)
    if spec.pressure:
        _badge(painter, size, _colour(spec, "pressure"))


def _pins(painter: QPainter, body: QRectF, length: float, stroke: float, ink: QColor) -> None:
    pen = QPen(ink, stroke * 0.9)
    pen.setCapStyle(Qt.PenCapStyle.FlatCap)
    painter.setPen(pen)
    for share in (0.32, 0.68):
        x = body.left() + body.width() * share
        y = body.top() + body.height() * share
        painter.drawLine(QPointF(x, body.top() - length), QPointF(x, body.top()))
        painter.drawLine(QPointF(x, body.bottom()), QPointF(x, body.bottom() + length))
        painter.drawLine(QPointF(body.left() - length, y), QPointF(body.left(), y))
        painter.drawLine(QPointF(body.right(), y), QPointF(body.right() + length, y))


def _clear(painter: QPainter, draw) -> None:
    """Punch a hole: the panel shows through, so the shape stays a shape in a one-colour template."""
    painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_Clear)
    painter.setBrush(Qt.GlobalColor.black)
    draw()
    painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_SourceOver)


def _badge(painter: QPainter, size: float, colour: QColor) -> None:
    """A round badge at the bottom right with an "!" cut out of it, set apart from the chip by a clear rim."""
    r = size * 0.24
    c = QPointF(size - r, size - r)
    rim = max(1.0, size / 16)
    painter.setPen(Qt.PenStyle.NoPen)
    _clear(painter, lambda: painter.drawEllipse(c, r + rim, r + rim))
    painter.setBrush(colour)
    painter.drawEllipse(c, r, r)
    bar = max(1.2, r * 0.38)

    def mark() -> None:
        if size < 20:  # no room for an "!" that reads (it turns into an "0"): a plain badge
            return
        painter.drawRoundedRect(QRectF(c.x() - bar / 2, c.y() - r * 0.66, bar, r * 0.8), bar / 2, bar / 2)
        painter.drawEllipse(QPointF(c.x(), c.y() + r * 0.47), bar * 0.55, bar * 0.55)

    _clear(painter, mark)


def image(spec: IconSpec, size: int, device_pixel_ratio: float = 1.0) -> QImage:
    """The glyph as an image; the halo variant gets a dark rim (the glyph's own shape, grown by a pixel), cut
    off only at the pins' tips, where the image ends."""
    side = round(size * device_pixel_ratio)
    glyph = QImage(side, side, QImage.Format.Format_ARGB32_Premultiplied)
    glyph.fill(Qt.GlobalColor.transparent)
    painter = QPainter(glyph)
    painter.scale(device_pixel_ratio, device_pixel_ratio)
    paint(painter, size, spec)
    painter.end()
    if spec.variant == "halo":
        glyph = _with_halo(glyph, _halo_width(side))
    glyph.setDevicePixelRatio(device_pixel_ratio)
    return glyph


def _halo_width(side: int) -> int:
    """One pixel at tray sizes: a wider rim would fill the gaps that tell the states apart."""
    return max(1, side // 32)


def _with_halo(glyph: QImage, grow: int) -> QImage:
    shadow = QImage(glyph)
    painter = QPainter(shadow)
    painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_SourceIn)
    painter.fillRect(shadow.rect(), QColor(HALO))
    painter.end()
    result = QImage(glyph.size(), glyph.format())
    result.fill(Qt.GlobalColor.transparent)
    painter = QPainter(result)
    for dx in (-grow, 0, grow):
        for dy in (-grow, 0, grow):
            painter.drawImage(dx, dy, shadow)
    painter.drawImage(0, 0, glyph)
    painter.end()
    return result


def pixmap(spec: IconSpec, size: int, device_pixel_ratio: float = 1.0) -> QPixmap:
    return QPixmap.fromImage(image(spec, size, device_pixel_ratio))


@lru_cache(maxsize=48)
def icon(spec: IconSpec) -> QIcon:
    result = QIcon()
    for size in SIZES:
        result.addPixmap(pixmap(spec, size, 1.0))
        result.addPixmap(pixmap(spec, size, 2.0))
    if spec.variant == "template":
        result.setIsMask(True)  # macOS tints it for light and dark menu bars
    return result


def state_icon(state: str, *, pressure: bool = False, variant: str | None = None) -> QIcon:
    return icon(IconSpec(state if state in STATES else "error", pressure, variant or default_variant()))


def app_icon_path() -> Path:
    """The application icon (windows, the autostart entry, the bundles), shipped in resources/."""
    return Path(__file__).resolve().parent.parent / "resources" / "app-icon.svg"


def app_icon_png(cache_dir: Path, size: int = 128) -> Path:
    """The app icon as a PNG, for notification daemons that cannot draw SVG (dunst without librsvg shows
    none). Rendered once per version of the SVG into the cache; the SVG itself if it cannot be rendered."""
    svg = app_icon_path()
    try:
        data = svg.read_bytes()
        target = cache_dir / f"app-icon-{hashlib.sha256(data).hexdigest()[:12]}-{size}.png"
        if target.is_file():
            return target
        from PySide6.QtCore import QByteArray
        from PySide6.QtSvg import QSvgRenderer

        from ..core.system.files import write_atomically

        renderer = QSvgRenderer(QByteArray(data))
        picture = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
        picture.fill(Qt.GlobalColor.transparent)
        painter = QPainter(picture)
        renderer.render(painter)
        painter.end()
        write_atomically(target, _png_bytes(picture))
        return target
    except (OSError, ImportError, ValueError, LocalModelsError) as exc:  # a full disk, say: the SVG will do
        log.warning("Could not render the app icon to PNG (%s); notifications get the SVG", exc)
        return svg


def _png_bytes(picture: QImage) -> bytes:
    from PySide6.QtCore import QBuffer, QIODevice

    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not picture.save(buffer, "PNG"):
        raise ValueError("Qt could not encode the PNG")
    return bytes(buffer.data())
