"""Who the app is, in one place: the PyInstaller spec, the build script, the .desktop file, the AppStream
metainfo and the macOS Info.plist all read these. The version is not here: it comes from the installed
package's metadata (pyproject.toml), the same place `aidevops-local --version` reads it from."""

from aidevops_local import APP_ID  # noqa: F401 - reverse-DNS id: bundle identifier, desktop file, icon

NAME = "aidevops Local Models"  # what a person sees: menu entries, Finder, the About box
EXE = "aidevops-local"  # the executable inside every bundle, the one-folder bundle's folder name
DIST_NAME = "aidevops-local"  # the Python distribution whose metadata holds the version
SUMMARY = "Run local LLMs with llama.cpp as a zero-cost tier beside cloud models"
HOMEPAGE = ""  # the project's public page, once it has one: AppStream and About show it when set
LICENSE = "MIT"
CATEGORIES = ("Development",)  # one main category, or menus list the app twice
MACOS_MIN = "12.0"  # Monterey: Qt 6.8+ (PySide6-Essentials>=6.8) supports nothing older
ICON_SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)  # hicolor sizes installed in the AppDir
