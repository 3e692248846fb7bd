"""Progress reporting for long work (downloads, installs, server start).

Core functions take an optional ``progress`` callback; the CLI renders it as a progress bar, the tray as a
dialog or a menu line. Cancellation is a ``threading.Event`` the caller sets; core code checks it between
chunks and raises ``Cancelled``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from .errors import Cancelled


@dataclass(frozen=True)
class Progress:
    task: str  # what is happening, for a label: "Downloading llama-b1234-bin-ubuntu-x64.tar.gz"
    done: int = 0
    total: int | None = None  # None: unknown (a spinner)
    unit: str = "B"


ProgressCallback = Callable[[Progress], None]


def report(
    callback: ProgressCallback | None, task: str, done: int = 0, total: int | None = None, unit: str = "B"
) -> None:
    if callback is not None:
        callback(Progress(task, done, total, unit))


def check_cancelled(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("Cancelled.", hint="Run the same command again to continue.")
