"""aidevops Local Models: llama.cpp and Hugging Face as a $0 local tier beside cloud models."""

from importlib.metadata import PackageNotFoundError, version

# Reverse-DNS identity: macOS bundle identifier, the .desktop file's name (Wayland app id, notifications),
# the AppStream id and the icon name. The bundles and the tray read it from here.
APP_ID = "com.aidevops.LocalModels"

try:
    __version__ = version("aidevops-local")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
