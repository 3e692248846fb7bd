"""What the cloud tiers of model routing charge, in US dollars per million tokens: the one table to update.

Each tier is named by the model it stands for in routing. Standard (non-batch, uncached) list prices; where a
provider charges more for long prompts, the price for prompts under 200k tokens. Update AS_OF with the rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

AS_OF = date(2025, 11, 24)


@dataclass(frozen=True)
class TierPrice:
    tier: str  # routing tier: haiku, flash, sonnet, pro, opus
    model: str  # the model the tier stands for, as priced
    input_per_m: float  # USD per million input (prompt) tokens
    output_per_m: float  # USD per million output (completion) tokens


PRICES: tuple[TierPrice, ...] = (
    TierPrice("haiku", "Claude Haiku 4.5", 1.00, 5.00),
    TierPrice("flash", "Gemini 2.5 Flash", 0.30, 2.50),
    TierPrice("sonnet", "Claude Sonnet 4.5", 3.00, 15.00),
    TierPrice("pro", "Gemini 2.5 Pro", 1.25, 10.00),
    TierPrice("opus", "Claude Opus 4.5", 5.00, 25.00),
)


def cloud_costs(*, tokens_in: int, tokens_out: int) -> dict[str, float]:
    """What these tokens would have cost on each tier, in USD, rounded to the cent's hundredth."""
    return {p.tier: round((tokens_in * p.input_per_m + tokens_out * p.output_per_m) / 1e6, 4) for p in PRICES}


def format_usd(value: float) -> str:
    """A cost as the CLI and the tray show it: cents above a dollar, four decimals below."""
    return f"${value:,.2f}" if value >= 1 else f"${value:.4f}"
