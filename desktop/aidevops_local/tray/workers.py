"""Jobs run on a thread pool, never on the GUI thread; results, errors and progress come back as signals.

A job is a function of the job itself, so it can hand core its progress callback and cancel event:

    workers.submit(lambda job: runtime.install_release(progress=job.report, cancel=job.cancel),
                   on_done=..., on_error=..., on_progress=...)

Signals are emitted from the pool thread; Qt queues them to the receivers, which live on the GUI thread.
Progress is throttled so a download's thousands of chunk reports do not flood the GUI's event queue.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from ..core.system.errors import Cancelled, LocalModelsError
from ..core.system.progress import Progress

log = logging.getLogger(__name__)
PROGRESS_INTERVAL_S = 0.05


class JobSignals(QObject):
    progress = Signal(object)  # core.progress.Progress
    done = Signal(object)  # the function's result
    failed = Signal(object)  # the exception (LocalModelsError for expected failures)
    cancelled = Signal()
    ended = Signal()  # after any of the three above


class Job(QRunnable):
    def __init__(self, fn: Callable[[Job], Any], name: str = ""):
        super().__init__()
        self.setAutoDelete(False)  # the pool must not delete it while Python still holds it
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "job")
        self.cancel = threading.Event()
        self.signals = JobSignals()
        self._last_report = 0.0
        self.running = True

    def report(self, progress: Progress) -> None:
        """Core's progress callback. Drops reports closer than PROGRESS_INTERVAL_S, except the last."""
        now = time.monotonic()
        final = progress.total is not None and progress.done >= progress.total
        if final or now - self._last_report >= PROGRESS_INTERVAL_S:
            self._last_report = now
            self.signals.progress.emit(progress)

    def run(self) -> None:
        try:
            result = self.fn(self)
        except Cancelled:
            self.signals.cancelled.emit()
        except LocalModelsError as exc:
            log.info("%s failed: %s", self.name, exc.message)
            self.signals.failed.emit(exc)
        except Exception as exc:
            log.exception("%s crashed", self.name)
            self.signals.failed.emit(exc)
        else:
            if self.cancel.is_set():
                self.signals.cancelled.emit()
            else:
                self.signals.done.emit(result)
        finally:
            self.running = False
            self.signals.ended.emit()


class Workers(QObject):
    """The tray's thread pool and the jobs it runs; keeps each job alive until it has ended."""

    def __init__(self, parent: QObject | None = None, max_threads: int = 4):
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(max_threads)
        self.pool.setExpiryTimeout(30_000)  # idle threads go away: nothing ticks while the tray idles
        self._jobs: set[Job] = set()

    def submit(
        self,
        fn: Callable[[Job], Any],
        *,
        name: str = "",
        on_done: Callable[[Any], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        on_cancelled: Callable[[], None] | None = None,
    ) -> Job:
        job = Job(fn, name)
        if on_done:
            job.signals.done.connect(on_done)
        if on_error:
            job.signals.failed.connect(on_error)
        if on_progress:
            job.signals.progress.connect(on_progress)
        if on_cancelled:
            job.signals.cancelled.connect(on_cancelled)
        job.signals.ended.connect(lambda: self._jobs.discard(job))
        self._jobs.add(job)
        self.pool.start(job)
        return job

    def running(self) -> list[Job]:
        return [j for j in self._jobs if j.running]

    def cancel_all(self) -> None:
        for job in list(self._jobs):
            job.cancel.set()

    def wait(self, timeout_s: float) -> bool:
        return self.pool.waitForDone(int(timeout_s * 1000))
