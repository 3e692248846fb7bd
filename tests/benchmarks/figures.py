"""The one shape every benchmark reports in, so that tests/benchmarks/run.py can print them in one table.

A benchmark module exposes ``run(quick: bool) -> list[Figure]``: ``quick`` is the runner's default and must
keep the whole set under 10 minutes on a 2-core machine; the full run may take longer for tighter figures.
Each figure carries its baseline measured in the same run (None when the figure is absolute, such as a
memory size against a fixed goal), the ratio value/baseline, the goal in words and whether it was met.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Figure:
    name: str  # what was measured, e.g. "serve: cold start to first token"
    value: float | None  # None when it could not be measured (see note)
    unit: str  # "s", "ms", "tok/s", "MiB", "%", "x", "rows/requests"
    baseline: float | None = None  # the same quantity for the thing compared against, same run
    ratio: float | None = None  # value / baseline
    goal: str = ""  # in words: "ratio <= 1.10", "< 100 MiB", "= 1.000"
    ok: bool | None = None  # None: no goal, or not measured
    note: str = ""  # the baseline's name, spread, sample count; or why it is missing

    def as_dict(self) -> dict:
        return asdict(self)


def ratio_figure(name: str, value: float, baseline: float, *, unit: str, goal: str, ok: bool, note: str = "") -> Figure:
    """A figure compared with its baseline: the ratio is computed here, once, the same way for everyone."""
    ratio = value / baseline if baseline else None
    return Figure(name=name, value=value, unit=unit, baseline=baseline, ratio=ratio, goal=goal, ok=ok, note=note)


def missing(name: str, why: str) -> Figure:
    """A benchmark that did not run (not written yet, or it failed): shown in the table, never dropped."""
    return Figure(name=name, value=None, unit="", goal="", ok=None, note=f"missing: {why}")


def spread(values: Sequence[float]) -> str:
    """min-max and count, for the note: how far a median can be trusted."""
    return f"n={len(values)}, range {min(values):.3g}-{max(values):.3g}"
