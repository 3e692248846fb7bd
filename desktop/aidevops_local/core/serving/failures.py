"""Why a start failed, read from the server's log, and the log's tail for error messages. Kept apart from the
start itself: the list of known causes grows with each llama.cpp message worth explaining."""

from __future__ import annotations

import os
import time
from pathlib import Path

from ..accounting import request_log
from ..models import gguf_meta
from ..system.errors import CorruptModel, LocalModelsError, PortInUse, ServerStartFailed
from .state import ServerState

LOG_TAIL_LINES = 12
_LOAD_FAILED = (
    "llama-server could not load the model.",
    "The file may be damaged or of an architecture this llama.cpp build does not know: "
    "pull it again, or run `update` for a newer runtime.",
)
# Lines in llama-server's log that explain a failed start, and what they mean for the user.
_START_FAILURES = (
    (
        "couldn't bind",
        PortInUse,
        "The port is already in use by another program.",
        "Stop that program, or choose another port with --port.",
    ),
    ("failed to load model", CorruptModel, *_LOAD_FAILED),
    (
        "unknown model architecture",
        CorruptModel,
        "This llama.cpp build does not support the model's architecture.",
        "Run `update` to get a newer llama.cpp build.",
    ),
    (
        "out of memory",
        ServerStartFailed,
        "The model does not fit in memory.",
        "Try a smaller quant or model, or a smaller context (--ctx).",
    ),
    (
        "failed to allocate",
        ServerStartFailed,
        "The model does not fit in memory.",
        "Try a smaller quant or model, or a smaller context (--ctx).",
    ),
)


def start_failure(state: ServerState, returncode: int) -> ServerStartFailed:
    """Why a start failed, from the log: the server exited, or a router's model instance did. The line
    that says why can trail the exit (a router relays its instance's output), so it is waited for a moment.
    A taken port is not among the causes: the front binds it before llama-server starts."""
    deadline = time.monotonic() + 2.0
    while True:
        # A router logs its own shutdown after its instance's error: look further back than the tail we show,
        # and show the lines that end with the one that explains.
        lines = log_tail(Path(state.log_path), lines=4 * LOG_TAIL_LINES).splitlines()
        for needle, kind, message, hint in _START_FAILURES:  # in order: the first kind found explains
            found = [i for i, line in enumerate(lines) if needle in line.lower()]
            if found:
                tail = "\n".join(lines[max(0, found[-1] + 1 - LOG_TAIL_LINES) : found[-1] + 1])
                return kind(f"{message} (llama-server exited with status {returncode})", hint=hint, details=tail)
        tail = "\n".join(lines[-LOG_TAIL_LINES:])
        if time.monotonic() > deadline:
            unreadable = _unreadable_model(Path(state.model_path))
            if unreadable is not None:
                message, hint = _LOAD_FAILED
                return CorruptModel(
                    f"{message} (llama-server exited with status {returncode})",
                    hint=hint,
                    details=f"{unreadable}\n{tail}".strip(),
                )
            return ServerStartFailed(
                f"llama-server exited during start with status {returncode}.",
                hint=f"Its log is {state.log_path}.",
                details=tail,
            )
        time.sleep(0.1)


def _unreadable_model(path: Path) -> str | None:
    """Why the model's file cannot be read now, or None. A router's instance can die before its last lines
    reach the router's log (they are relayed, and the router drops what is pending when it exits), so a start
    the log leaves unexplained checks the file itself: it may have changed since the start's checks."""
    try:
        if not path.is_file():
            return None  # a name, not a file: nothing to read here
        for part in gguf_meta.split_parts(path):
            gguf_meta.read_header(part)  # uncached: the cache may hold the header from before the change
    except LocalModelsError as exc:
        return exc.message
    except (OSError, ValueError):
        return None  # unreadable for another reason (a folder we may not search, a file cut short): no verdict
    return None


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a server log, for error messages. Our own header line is left out."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    kept = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith(request_log.HEADER_PREFIX)]
    return "\n".join(kept[-lines:])
