"""aidevops Local Models: llama.cpp and Hugging Face as a $0 local tier beside cloud models."""

# Reverse-DNS identity: macOS bundle identifier, the .desktop file's name (Wayland app id, notifications),
# the AppStream id and the icon name. The bundles and the tray read it from here.
APP_ID = "com.aidevops.LocalModels"


def __getattr__(name: str) -> str:
    # __version__ is read from the installed metadata when first asked for: importlib.metadata costs the idle
    # tray memory and every process start time, and most never show the version.
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("aidevops-local")
    except PackageNotFoundError:  # running from a source tree that was never installed
        found = "0+unknown"
    globals()["__version__"] = found
    return found
