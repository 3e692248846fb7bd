"""A repo's model card in facts a person weighs before a download: parameters, trained context, licence,
architecture, dates, gated or not. All come from the Hub's model info (its ``gguf`` block, which the Hub
reads from the repo's first GGUF header, and the card's metadata); a fact the Hub does not give is left
empty rather than guessed. Apart from hub.py, which searches and lists files."""

from __future__ import annotations

from dataclasses import dataclass

from ..system.untrusted import printable
from .hub import _api, _date, hub_token
from .hub_failures import check_online, check_repo_id, hub_errors, parsed
from .hub_records import info_summary

_EXPAND = ["gguf", "cardData", "createdAt", "lastModified", "gated", "downloads", "likes"]


@dataclass(frozen=True)
class ModelCard:
    repo_id: str
    parameters: int | None = None  # total parameters, as the GGUF header counts them
    context_length: int | None = None  # the context the model was trained for
    architecture: str = ""
    licence: str = ""
    created: str = ""  # ISO date
    last_modified: str = ""
    gated: bool | str = False
    downloads: int = 0
    likes: int = 0


def model_card(repo_id: str, *, token: str | None = None) -> ModelCard:
    """The facts above for ``repo_id`` (one Hub request)."""
    check_repo_id(repo_id)
    check_online()
    with hub_errors(repo_id), parsed(f"the record of {repo_id}"):
        m = _api(token or hub_token()).model_info(repo_id, expand=_EXPAND)
    summary = info_summary(m, repo_id)  # the counts, date and gating checked like a search result's
    gguf = m.gguf if isinstance(m.gguf, dict) else {}
    card = m.card_data.to_dict() if m.card_data is not None and hasattr(m.card_data, "to_dict") else {}
    licence = card.get("license_name") or card.get("license") or ""
    return ModelCard(
        repo_id=m.id,
        parameters=_positive(gguf.get("total")),
        context_length=_positive(gguf.get("context_length")),
        architecture=printable(str(gguf.get("architecture") or "")),
        licence=printable(", ".join(licence) if isinstance(licence, list) else str(licence)),
        created=_date(m.created_at),
        last_modified=summary.last_modified,
        gated=summary.gated,
        downloads=summary.downloads,
        likes=summary.likes,
    )


def parameters_text(count: int | None) -> str:
    """1_240_000_000 -> "1.2B", 135_000_000 -> "135M" ("" when unknown)."""
    if not count:
        return ""
    if count >= 1e9:
        return f"{count / 1e9:.1f}B".replace(".0B", "B")
    if count >= 1e6:
        return f"{count / 1e6:.0f}M"
    return f"{count:,}"


def _positive(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
