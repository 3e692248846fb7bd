"""Settings for tests that run a real server."""

from __future__ import annotations

from aidevops_local.core import config


def serving_settings(**changes) -> None:
    """Settings for a real server on these 2-core machines: one thread, a small context, one slot."""
    base = {"threads": 1, "ctx_size": 2048, "parallel": 1, "stop_grace_s": 5.0}
    config.save_settings(config.Settings(**{**base, **changes}))
