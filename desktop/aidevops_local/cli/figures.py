"""Predicted beside measured for `models --json` and `status --json` (core/models/prediction.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..core.system.errors import LocalModelsError


def refresh_measurements() -> None:
    """Account for requests served since the last ingest, with the served model's memory, so the measured
    figures shown are current. A failure only leaves them as they were (usage says why, when asked)."""
    from ..core.accounting import usage
    from ..core.serving import health
    from ..core.serving import state as server_state

    try:
        usage.ingest(live_log=server_state.live_log(), memory_of=health.model_memory)
    except LocalModelsError:
        pass


def beside(path: str | Path, *, ctx: int | None = None) -> dict:
    """{"predicted": ..., "measured": ..., "speed": ...} for one model file on this machine, predicted for the
    context (``ctx``, else the setting's) and slots a start would ask for."""
    from ..core.models import prediction
    from ..core.system import config

    try:
        settings = config.load_settings()
        side = prediction.side_by_side(
            Path(path),
            ctx=ctx or settings.ctx_size or None,
            parallel=settings.parallel or None,
            threads=settings.threads or None,
        )
        return dataclasses.asdict(side)
    except LocalModelsError:
        return {"predicted": None, "measured": None, "speed": None}
