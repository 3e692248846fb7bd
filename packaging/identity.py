"""Who the app is, in one place: the PyInstaller spec, the build script, the .desktop file, the AppStream
metainfo and the macOS Info.plist all read these. The version is not here: it comes from the installed
package's metadata (pyproject.toml), the same place `aidevops-local --version` reads it from."""

import re
from importlib.metadata import distributions

from aidevops_local import APP_ID  # noqa: F401 - reverse-DNS id: bundle identifier, desktop file, icon

NAME = "aidevops Local Models"  # what a person sees: menu entries, Finder, the About box
EXE = "aidevops-local"  # the executable inside every bundle, the one-folder bundle's folder name
DIST_NAME = "aidevops-local"  # the Python distribution whose metadata holds the version
SUMMARY = "Run local LLMs with llama.cpp as a zero-cost tier beside cloud models"
HOMEPAGE = ""  # the project's public page, once it has one: AppStream and About show it when set
LICENSE = "MIT"
CATEGORIES = ("Development",)  # one main category, or menus list the app twice
# LSMinimumSystemVersion comes from the bundled Qt wheels (macos_minimum); this is the answer where no macOS
# wheel is installed (a Linux build, where the plist is not made): PySide6-Essentials 6.10+ is macosx_13_0.
MACOS_MIN_FALLBACK = "13.0"
ICON_SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)  # hicolor sizes installed in the AppDir

QT_DISTS = ("PySide6_Essentials", "shiboken6")  # the wheels whose binaries the .app carries
_MACOS_TAG = re.compile(r"-macosx_(\d+)_(\d+)_\w+$")


def macos_minimum(path: list[str] | None = None) -> str:
    """The oldest macOS the bundled Qt runs on, from its wheels' platform tags (``macosx_13_0_universal2``),
    so Finder refuses the app cleanly on an older system instead of it crashing at start. Each wheel counts
    its lowest tag (one per architecture); the app needs the highest of the wheels'."""
    lowest_per_wheel = []
    for name in QT_DISTS:
        for dist in distributions(name=name, **({"path": path} if path is not None else {})):
            tags = [
                line.split(":", 1)[1].strip()
                for line in (dist.read_text("WHEEL") or "").splitlines()
                if line.startswith("Tag:")
            ]
            found = [(int(m[1]), int(m[2])) for t in tags if (m := _MACOS_TAG.search(t))]
            if found:
                lowest_per_wheel.append(min(found))
            break  # the first one found is the one imported
    if not lowest_per_wheel:
        return MACOS_MIN_FALLBACK
    major, minor = max(lowest_per_wheel)
    return f"{major}.{minor}"
