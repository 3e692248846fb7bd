"""The session-start nudge: the framework runs `local-model-helper.sh nudge` at the start of every agent
session, so its usual answer (nothing to say) must cost milliseconds. Prints; asserts nothing.

    python -m tests.benchmarks.bench_nudge

A database with twenty models, one of them stale but small (the usual case: silent), is asked through the
helper (sqlite3 only, with aidevops-local installed beside it, as a user has it) and through
`aidevops-local nudge` (Python), alternating, each timed from process start to exit. The goal is the
helper's median under 20 ms.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.benchmarks.figures import Figure, ratio_figure, spread

REPO = Path(__file__).resolve().parents[2]
HELPER = REPO / ".agents" / "scripts" / "local-model-helper.sh"
TOOL = Path(sys.executable).parent / "aidevops-local"
GOAL_MS = 20.0


def _home(root: Path) -> Path:
    home = root / "home"
    env = {**os.environ, "AIDEVOPS_HOME": str(home)}
    subprocess.run([str(TOOL), "usage"], env=env, check=True, capture_output=True)
    conn = sqlite3.connect(home / ".agent-workspace" / "memory" / "local-models.db")
    for n in range(20):
        path = home / "models" / "org" / f"model-{n}.gguf"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"GGUF")
        idle = 40 if n == 0 else n
        conn.execute(
            "INSERT INTO model_inventory (model, path, size_bytes, last_used, source) "
            "VALUES (?, ?, ?, datetime('now', ?), 'pulled')",
            (f"model-{n}", str(path), (n + 1) * 100_000_000, f"-{idle} days"),
        )
    conn.commit()
    conn.close()
    return home


def _time_ms(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    elapsed = (time.perf_counter() - started) * 1000
    if done.returncode != 0 or done.stdout:
        raise RuntimeError(f"{argv[-1]} said {done.stdout!r} {done.stderr!r} (exit {done.returncode})")
    return elapsed


def run(quick: bool = True) -> list[Figure]:
    rounds = 15 if quick else 50
    with tempfile.TemporaryDirectory(prefix="bench-nudge-") as tmp:
        home = _home(Path(tmp))
        env = {**os.environ, "AIDEVOPS_HOME": str(home), "AIDEVOPS_LOCAL_BIN": str(TOOL)}
        helper = [shutil.which("bash") or "bash", str(HELPER), "nudge"]
        tool = [str(TOOL), "nudge"]
        helper_ms, tool_ms = [], []
        for _ in range(rounds):
            helper_ms.append(_time_ms(helper, env))
            tool_ms.append(_time_ms(tool, env))
    value, baseline = statistics.median(helper_ms), statistics.median(tool_ms)
    print(f"helper nudge {value:.1f} ms ({spread(helper_ms)}); aidevops-local nudge {baseline:.1f} ms")
    return [
        ratio_figure(
            "nudge at session start (helper, nothing to say)",
            value,
            baseline,
            unit="ms",
            goal=f"< {GOAL_MS:.0f} ms",
            ok=value < GOAL_MS,
            note=f"baseline: aidevops-local nudge (Python); {spread(helper_ms)}",
        )
    ]


if __name__ == "__main__":
    for figure in run(quick=False):
        print(figure)
