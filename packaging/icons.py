"""Application icons for the bundles, rendered from the package's resources/app-icon.svg.

    python packaging/icons.py OUT_DIR      # OUT_DIR/hicolor/<N>x<N>/apps/<APP_ID>.png and OUT_DIR/<APP_ID>.icns

PNGs at the freedesktop hicolor sizes for the AppDir, and a macOS .icns written here in pure Python (iconutil
exists only on macOS): an .icns is a header and a list of (type, length, PNG bytes) entries, and macOS reads
PNG data in every type used below. Rendering uses Qt's own SVG renderer (QtSvg is in PySide6-Essentials), on
the offscreen platform so that no display is needed.
"""

from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import identity

SVG = HERE.parent / "desktop" / "aidevops_local" / "resources" / "app-icon.svg"

# .icns entry types holding PNG data, by pixel size; the @2x entries reuse the next size up.
ICNS_TYPES = (
    (b"icp4", 16),
    (b"icp5", 32),
    (b"ic11", 32),  # 16, 32, 16@2x
    (b"ic12", 64),
    (b"ic07", 128),
    (b"ic13", 256),  # 32@2x, 128, 128@2x
    (b"ic08", 256),
    (b"ic14", 512),
    (b"ic09", 512),
    (b"ic10", 1024),  # 256, 256@2x, 512, 512@2x
)


def render_pngs(svg: Path, sizes: list[int]) -> dict[int, bytes]:
    """PNG bytes for each size, drawn straight from the vector at that size (not scaled from one bitmap)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    app = QGuiApplication.instance() or QGuiApplication([sys.argv[0]])  # noqa: F841 - Qt needs one alive
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"icons: {svg} is not a valid SVG")
    out = {}
    for size in sizes:
        image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
        image.fill(0)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        renderer.render(painter)
        painter.end()
        data = QByteArray()
        buffer = QBuffer(data)
        buffer.open(QIODevice.OpenModeFlag.WriteOnly)
        image.save(buffer, "PNG")
        buffer.close()
        out[size] = bytes(data)
    return out


def icns_bytes(pngs: dict[int, bytes]) -> bytes:
    entries = b"".join(kind + struct.pack(">I", 8 + len(pngs[size])) + pngs[size] for kind, size in ICNS_TYPES)
    return b"icns" + struct.pack(">I", 8 + len(entries)) + entries


def read_icns(data: bytes) -> dict[bytes, bytes]:
    """The entries of an .icns file (for the tests): type -> payload."""
    if data[:4] != b"icns" or struct.unpack(">I", data[4:8])[0] != len(data):
        raise ValueError("not an icns file")
    entries, pos = {}, 8
    while pos < len(data):
        kind, length = data[pos : pos + 4], struct.unpack(">I", data[pos + 4 : pos + 8])[0]
        if length < 8 or pos + length > len(data):
            raise ValueError(f"bad icns entry {kind!r}")
        entries[kind] = data[pos + 8 : pos + length]
        pos += length
    return entries


def build(out_dir: Path, svg: Path = SVG) -> dict[str, Path]:
    """Write the hicolor PNGs and the .icns under out_dir; returns their paths by name."""
    sizes = sorted(set(identity.ICON_SIZES) | {size for _, size in ICNS_TYPES})
    pngs = render_pngs(svg, sizes)
    written = {}
    for size in identity.ICON_SIZES:
        path = out_dir / "hicolor" / f"{size}x{size}" / "apps" / f"{identity.APP_ID}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pngs[size])
        written[f"png{size}"] = path
    icns = out_dir / f"{identity.APP_ID}.icns"
    icns.write_bytes(icns_bytes(pngs))
    written["icns"] = icns
    return written


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python packaging/icons.py OUT_DIR")
    for name, path in build(Path(sys.argv[1])).items():
        print(f"{name}\t{path}")
