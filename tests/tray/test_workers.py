"""Jobs run off the GUI thread and report back through signals: result, typed failure, cancel, progress."""

from __future__ import annotations

import threading

from PySide6.QtCore import QThread

from aidevops_local.core.system.errors import ServerStartFailed
from aidevops_local.core.system.progress import Progress, check_cancelled
from aidevops_local.tray.workers import Workers


def test_result_arrives_on_the_gui_thread_from_another_thread(qtbot):
    workers = Workers()
    threads, results = {}, []

    def work(job):
        threads["job"] = QThread.currentThread()
        return 42

    def done(value):
        threads["done"] = QThread.currentThread()
        results.append(value)

    workers.submit(work, on_done=done)  # connected before the job starts: nothing can be missed
    qtbot.waitUntil(lambda: results == [42], timeout=5000)
    assert threads["job"] is not QThread.currentThread()
    assert threads["done"] is QThread.currentThread()


def test_typed_failure_is_delivered(qtbot):
    workers = Workers()

    def work(job):
        raise ServerStartFailed("no", hint="why")

    errors = []
    workers.submit(work, on_error=errors.append)
    qtbot.waitUntil(lambda: bool(errors), timeout=5000)
    assert isinstance(errors[0], ServerStartFailed) and errors[0].hint == "why"


def test_cancel_reaches_core_through_the_event(qtbot):
    workers = Workers()
    started = threading.Event()

    def work(job):
        started.set()
        while True:
            check_cancelled(job.cancel)
            job.cancel.wait(0.01)

    job = workers.submit(work)
    assert started.wait(5)
    with qtbot.waitSignal(job.signals.cancelled, timeout=5000):
        job.cancel.set()
    qtbot.waitUntil(lambda: not workers.running(), timeout=5000)


def test_progress_is_throttled_but_the_last_report_always_arrives(qtbot):
    workers = Workers()
    seen = []

    def work(job):
        for i in range(1, 20001):
            job.report(Progress("Downloading x", i, 20000))
        return "ok"

    finished = []
    workers.submit(work, on_progress=seen.append, on_done=finished.append)
    qtbot.waitUntil(lambda: finished == ["ok"], timeout=10_000)
    qtbot.wait(50)
    assert 1 <= len(seen) < 200
    assert seen[-1].done == 20000
