"""What the download window says beside its lists, kept free of widgets: the model card's facts in one line,
which of a repo's files are on disk already, and a download's speed and time left."""

from __future__ import annotations

import time
from collections import deque

from ..core.system.units import human_bytes

SPEED_WINDOW_S = 5.0  # the speed is over the last few seconds: a stall shows soon, a burst does not mislead


def card_text(card) -> str:
    """ "1.2B parameters · 128K context (trained) · llama · licence: llama3.2 · created 2024-09-25" ("" for
    None); a fact the Hub did not give is left out."""
    if card is None:
        return ""
    from ..core.models.hub_card import parameters_text

    facts = []
    if card.parameters:
        facts.append(f"{parameters_text(card.parameters)} parameters")
    if card.context_length:
        facts.append(f"{context_text(card.context_length)} context (trained)")
    if card.architecture:
        facts.append(card.architecture)
    facts.append(f"licence: {card.licence}" if card.licence else "licence not stated")
    if card.created:
        facts.append(f"created {card.created}")
    if card.last_modified and card.last_modified != card.created:
        facts.append(f"updated {card.last_modified}")
    if card.gated:
        facts.append("gated: accept its terms on the Hub first")
    return " · ".join(facts)


def context_text(tokens: int) -> str:
    """131072 -> "128K", 8192 -> "8K", 500 -> "500"."""
    return f"{tokens // 1024}K" if tokens >= 1024 and tokens % 1024 == 0 else f"{tokens:,}"


def on_disk_names(repo_id: str) -> frozenset[str]:
    """For a worker: the file names of this repo's models already on this machine (pulled or found
    elsewhere), so the window marks them and does not offer to download them again."""
    from ..core.models import library

    names = set()
    for model in library.list_models():
        if model.repo in (None, repo_id):
            names.update(f.name for f in model.files)
    return frozenset(names)


def duration_text(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class RateMeter:
    """Bytes per second over the last SPEED_WINDOW_S, from the progress reports as they come."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.samples: deque[tuple[float, int]] = deque()

    def rate(self, done: int) -> float | None:
        now = self.clock()
        self.samples.append((now, done))
        while len(self.samples) > 2 and now - self.samples[0][0] > SPEED_WINDOW_S:
            self.samples.popleft()
        first_t, first_done = self.samples[0]
        if now - first_t < 0.2 or done < first_done:
            return None  # too soon to say (or a resumed download started over)
        return (done - first_done) / (now - first_t)

    def describe(self, done: int, total: int) -> str:
        """ "Downloading: 12 MB of 98 MB · 3.4 MB/s · 25 s left"."""
        text = f"Downloading: {human_bytes(done)} of {human_bytes(total)}"
        speed = self.rate(done)
        if speed is None:
            return text
        if speed <= 0:
            return f"{text} · stalled"
        return f"{text} · {human_bytes(speed)}/s · {duration_text((total - done) / speed)} left"
