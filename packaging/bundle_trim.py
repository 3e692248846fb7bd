"""What the bundles leave out.

Qt first. PyInstaller's Qt hooks take every plugin of each kind a module could use
(and the libraries those plugins link), which for a tray app is mostly dead weight: QML, PDF, the virtual
keyboard, embedded-Linux platforms, SQL drivers, printing, and 14 MB of translations the app never loads.

The app uses QtCore, QtGui, QtWidgets and QtNetwork (QLocalSocket: one instance per user); pyqtgraph (the
usage chart) imports QtOpenGL/QtOpenGLWidgets when it loads, and QtSvg for its SVG export. Every other Qt
module is excluded; each rule below names a path prefix inside the bundle.

Then, on Linux, the system libraries that only a dropped file linked: PyInstaller resolves every collected
binary's dependencies before the spec can drop the binary, so without this the GTK3 theme plugin alone would
leave GTK, GDK, ATK, Cairo and Pango (20 MB) behind it. A library at the bundle's top level stays only while
something kept still names it in its DT_NEEDED entries.
"""

from __future__ import annotations

import re
import struct
import sys
from pathlib import Path

EXCLUDED_QT_MODULES = [
    f"PySide6.{m}"
    for m in (
        "QtConcurrent",
        "QtDBus",
        "QtDesigner",
        "QtHelp",
        "QtPrintSupport",
        "QtQml",
        "QtQuick",
        "QtQuickControls2",
        "QtQuickTest",
        "QtQuickWidgets",
        "QtSql",
        "QtSvgWidgets",
        "QtTest",
        "QtUiTools",
        "QtXml",
        "Qt3DCore",
        "QtCharts",
        "QtGraphs",
        "QtMultimedia",
        "QtWebEngineCore",
        "QtWebEngineWidgets",
        "QtBluetooth",
        "QtPositioning",
        "QtSerialPort",
        "QtPdf",
        "QtPdfWidgets",
    )
]

_PLUGINS = r"PySide6/Qt/plugins/"
_DROP = [
    # Plugin kinds the app never needs.
    (
        _PLUGINS + r"(designer|egldeviceintegrations|generic|qmllint|qmltooling|sqldrivers|printsupport|"
        r"vectorimageformats|networkinformation|tls|wayland-graphics-integration-server)/"
    ),
    # Platforms: keep xcb and wayland (desktops), offscreen and minimal (headless runs, tests).
    _PLUGINS + r"platforms/lib(qeglfs|qlinuxfb|qminimalegl|qvkkhrdisplay|qvnc)\.",
    # The GTK3 theme plugin would drag the build machine's GTK into the bundle; the portal theme stays.
    _PLUGINS + r"platformthemes/libqgtk3\.",
    # The virtual keyboard is built on Qt Quick.
    _PLUGINS + r"platforminputcontexts/libqtvirtualkeyboard",
    # Image formats: keep png (built in), svg, ico, gif, jpeg.
    _PLUGINS + r"imageformats/libq(pdf|tiff|webp|tga|wbmp|icns)\.",
    # English only: the app installs no QTranslator.
    r"PySide6/Qt/translations/",
    # Libraries only the plugins and modules above link.
    (
        r"PySide6/Qt/lib/(lib)?Qt6?(Quick|Qml|Pdf|VirtualKeyboard|Designer|Help|Sql|Test|UiTools|Labs|Lottie|"
        r"WaylandCompositor|WaylandEgl|EglFs|EglFS|Concurrent|Xml|ShaderTools|PrintSupport|SvgWidgets)"
    ),
    # macOS frameworks of the same.
    (
        r"PySide6/Qt/lib/Qt(Quick|Qml|Pdf|VirtualKeyboard|Designer|Help|Sql|Test|UiTools|Labs|Lottie|Concurrent|"
        r"Xml|ShaderTools|PrintSupport|SvgWidgets)[A-Za-z0-9]*\.framework/"
    ),
]
_DROP_RE = re.compile("|".join(f"(?:{p})" for p in _DROP))


def dropped(dest: str) -> bool:
    return bool(_DROP_RE.match(dest.replace("\\", "/")))


def filter_toc(toc):
    """A PyInstaller TOC (dest, source, typecode) without the entries the rules above drop, nor the symlinks
    that pointed at them."""
    kept = [e for e in toc if not dropped(e[0])]
    return [e for e in kept if not (e[2] == "SYMLINK" and dropped(e[1]))]


def elf_needed(path: str) -> list[str]:
    """The DT_NEEDED names of a 64-bit little-endian ELF file ([] for anything else)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return []
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names = []
    for _name, kind, _flags, _addr, offset, size, link, _info, _align, entsize in sections:
        if kind != 6:  # SHT_DYNAMIC
            continue
        strtab = sections[link][4]
        for pos in range(offset, offset + size, entsize or 16):
            tag, val = struct.unpack_from("<qQ", data, pos)
            if tag == 0:
                break
            if tag == 1:  # DT_NEEDED
                names.append(data[strtab + val : data.index(b"\0", strtab + val)].decode())
    return names


def prune_orphan_libraries(binaries):
    """Drop top-level libraries that nothing kept links any more (Linux; elsewhere the TOC is returned)."""
    if not sys.platform.startswith("linux"):
        return binaries
    top = {e[0]: e for e in binaries if "/" not in e[0] and e[2] in ("BINARY", "SYMLINK")}
    wanted: set[str] = set()
    todo = [e for e in binaries if e[0] not in top or e[0].startswith("libpython")]
    while todo:
        entry = todo.pop()
        if entry[2] == "SYMLINK":
            continue
        for name in elf_needed(entry[1]):
            if name in top and name not in wanted:
                wanted.add(name)
                todo.append(top[name])
    return [e for e in binaries if e[0] not in top or e[0] in wanted or e[0].startswith("libpython")]


def strip_system_libraries(bundle: Path) -> int:
    """Strip the build machine's own libraries in a finished Linux bundle; returns the bytes saved.

    Only those: libpython, the stdlib's extension modules and the system libraries at the top of _internal/
    (Debian's libpython alone carries 17 MB of symbols). Wheels' libraries are left as they are: auditwheel
    patched them with patchelf, and strip then breaks them (numpy's OpenBLAS: "ELF load command
    address/offset not page-aligned"), which is why the spec's own strip option stays off.
    """
    import shutil
    import subprocess

    if not sys.platform.startswith("linux") or shutil.which("strip") is None:
        return 0
    internal = Path(bundle) / "_internal"
    files = [p for p in internal.glob("lib*.so*") if p.is_file() and not p.is_symlink()]
    dynload = internal / f"python{sys.version_info.major}.{sys.version_info.minor}" / "lib-dynload"
    files += sorted(dynload.glob("*.so"))
    before = sum(p.stat().st_size for p in files)
    subprocess.run(["strip", "--strip-unneeded", *map(str, files)], check=True)
    return before - sum(p.stat().st_size for p in files)
