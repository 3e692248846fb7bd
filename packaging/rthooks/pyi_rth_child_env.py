"""Runtime hook: give the frozen app's children the user's own library path back.

The bootloader points LD_LIBRARY_PATH at the bundle's _internal/ (keeping the user's value in
LD_LIBRARY_PATH_ORIG) and every child would inherit it: llama-server would load our libstdc++ instead of its
own, and a browser opened from the tray our Qt-era GLib and OpenSSL. The dynamic loader read the variable when
this process started, so changing it now affects only the children. A child that is this same executable gets
it set afresh by its own bootloader.
"""

import os


def _restore(key: str) -> None:
    original = os.environ.pop(f"{key}_ORIG", None)
    if original is not None:
        os.environ[key] = original
    else:
        os.environ.pop(key, None)


_restore("LD_LIBRARY_PATH")
