"""The frozen app's one executable: the `aidevops-local` command, and the tray when a bundle is opened.

- With arguments it is the CLI, exactly as `pip install` gives it (`aidevops-local status --json`).
- With none inside a macOS .app (Finder, Launchpad, `open`), it starts the tray. On Linux the AppImage's
  AppRun makes the same choice, so a bare one-folder bundle run with no arguments prints the CLI's help.
- `--bundle-info` (hidden; for the packaging tests and bug reports) prints JSON: the version, the keyring
  backend that was chosen and those that were discoverable, and which packages made it into the bundle.
"""

from __future__ import annotations

import os
import sys


def _in_macos_app() -> bool:
    return sys.platform == "darwin" and ".app/Contents/MacOS/" in sys.executable


def _module_version(dist: str, module: str) -> dict:
    import importlib
    from importlib.metadata import PackageNotFoundError, version

    try:
        loaded = importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - reported, not raised: this is a diagnostic
        return {"importable": False, "error": f"{type(exc).__name__}: {exc}"}
    try:
        found = version(dist)
    except PackageNotFoundError:  # only some packages' metadata is bundled
        top = importlib.import_module(module.split(".")[0])
        found = getattr(top, "__version__", None)
    return {"importable": True, "version": found, "file": getattr(loaded, "__file__", None)}


def bundle_info() -> dict:
    import keyring
    import keyring.backend
    from keyring.backends.chainer import ChainerBackend

    from aidevops_local import __version__
    from aidevops_local.core.system import secrets

    ring = keyring.get_keyring()
    chosen = list(ring.backends) if isinstance(ring, ChainerBackend) else [ring]
    status = secrets.keyring_status()
    discovered = sorted(f"{type(b).__module__}.{type(b).__name__}" for b in keyring.backend.get_all_keyring())
    return {
        "version": __version__,
        "frozen": bool(getattr(sys, "frozen", False)),
        "executable": sys.executable,
        # What subprocesses inherit: PyInstaller points LD_LIBRARY_PATH at the bundle and keeps the user's own
        # value in LD_LIBRARY_PATH_ORIG; a child that is not ours (llama-server, a browser) needs it restored.
        "library_path": {
            k: os.environ.get(k) for k in ("LD_LIBRARY_PATH", "LD_LIBRARY_PATH_ORIG", "DYLD_LIBRARY_PATH")
        },
        "keyring": {
            "backend": status.backend,
            "usable": status.usable,
            "classes": [f"{type(b).__module__}.{type(b).__name__}" for b in chosen],
            "discovered": discovered,
        },
        "packages": {
            "keyring": _module_version("keyring", "keyring.backends.SecretService"),
            "huggingface_hub": _module_version("huggingface_hub", "huggingface_hub.file_download"),
            "gguf_meta": _module_version("aidevops-local", "aidevops_local.core.models.gguf_meta"),
            "httpx": _module_version("httpx", "httpx"),
            "PySide6": _module_version("PySide6-Essentials", "PySide6.QtWidgets"),
            "numpy": _module_version("numpy", "numpy"),
        },
    }


def main(argv: list[str]) -> int:
    argv = [a for a in argv if not a.startswith("-psn_")]  # old Finder launches add a process serial number
    if argv[:1] == ["--bundle-info"]:
        import json

        print(json.dumps(bundle_info(), indent=2))
        return 0
    if argv[:1] == ["--host-guard"]:  # the server's Host-checking front (core/serving/host_guard.py), run by serve
        from aidevops_local.core.serving import host_guard

        return host_guard.main(argv[2:])  # argv[1] is the marker that tells stop the process is ours
    if not argv and _in_macos_app():
        argv = ["tray"]
    from aidevops_local.cli.main import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
