"""Is the server answering requests now, and how fast does it write: read from the growth of its own log.

llama-server writes a task's lines as it works and, when a request ends, its generation speed ("eval time =
52.01 ms / 8 tokens"). Each poll stats the log (no read while it has not grown); when it has, only the new
bytes are read (at most TAIL_BYTES), so a busy server costs one small read per poll and an idle one nothing.
Qt-free, like snapshot.py, which calls it from the refresh worker.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

TAIL_BYTES = 16 * 1024
_EVAL = re.compile(r"(?<!prompt )eval time =\s*([\d.]+) ms /\s*(\d+) tokens")
_TASK = re.compile(r"\| task -?\d+ \|")  # a slot working on a request (health probes write no such line)


@dataclass(frozen=True)
class Activity:
    log_path: str = ""
    log_size: int = 0
    active: bool = False  # requests were being answered since the last look
    tokens_per_s: float | None = None  # the latest finished request's generation speed

    @property
    def text(self) -> str:
        """ "Answering a request · 42 tokens/s" while busy; "" when idle."""
        if not self.active:
            return ""
        speed = f" · {self.tokens_per_s:.0f} tokens/s" if self.tokens_per_s else ""
        return f"Answering requests{speed}"


def activity(status, previous: Activity | None) -> Activity:
    """The server's activity now, from ``previous`` (the last poll's) and the log's new bytes."""
    path = status.log_path if status.running else None
    if not path:
        return Activity()
    try:
        size = os.stat(path).st_size
    except OSError:
        return Activity()
    if previous is None or previous.log_path != path or size < previous.log_size:
        return Activity(path, size)  # a first look (or a new log): what came before is not "now"
    if size == previous.log_size:
        return Activity(path, size, False, previous.tokens_per_s)
    new = _read(path, max(previous.log_size, size - TAIL_BYTES), size)
    speed = latest_speed(new)
    active = bool(_TASK.search(new)) or speed is not None
    return Activity(path, size, active, speed if speed is not None else previous.tokens_per_s)


def latest_speed(text: str) -> float | None:
    """The last request's tokens per second in ``text`` (a stretch of the log), None when none ended there."""
    found = _EVAL.findall(text)
    if not found:
        return None
    ms, tokens = float(found[-1][0]), int(found[-1][1])
    return tokens * 1000.0 / ms if ms > 0 and tokens > 0 else None


def _read(path: str, start: int, end: int) -> str:
    try:
        with open(path, "rb") as log:
            log.seek(start)
            return log.read(end - start).decode("utf-8", errors="replace")
    except OSError:
        return ""
