"""Every benchmark, one table: each figure, its baseline measured in the same run, the ratio and the goal.

    .venv/bin/python -m tests.benchmarks.run                 # quick: under 10 minutes on a 2-core machine
    .venv/bin/python -m tests.benchmarks.run --full          # each benchmark's own full length
    .venv/bin/python -m tests.benchmarks.run --only bench_serve bench_fit --json figures.json

Each benchmark runs in a process of its own (they set environment variables, start Qt, servers and fake
Hubs) under a fresh AIDEVOPS_HOME, with a time cap; its output goes to a log file named at the end. Each
module exposes ``run(quick) -> list[Figure]`` (tests/benchmarks/figures.py) and is called as is. A benchmark
that is absent, fails or runs out of time is a "missing" row with the reason, never a silent gap. The runner
exits 1 when a goal is not met or a figure is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.benchmarks.figures import Figure, missing

ROOT = Path(__file__).resolve().parents[2]
BUDGET_S = 570.0  # the whole quick run, with a margin under 10 minutes


@dataclass(frozen=True)
class Bench:
    module: str
    what: str
    quick_cap_s: float  # the most it may take in a quick run
    full_cap_s: float


BENCHES = (
    Bench("bench_serve", "serve vs bare llama-server: cold start, tokens/s", 150, 600),
    Bench("bench_host_guard", "Host-checking front vs direct: streamed tok/s, first token, RSS", 60, 240),
    Bench("bench_usage", "usage logging: rows per request, tokens/s on vs off", 150, 900),
    Bench("bench_nudge", "session-start nudge: the helper's sqlite3 path vs the Python CLI", 30, 120),
    Bench("bench_fit", "fit: predicted vs measured memory", 120, 600),
    Bench("bench_pull", "pull vs hf download: throughput, resume", 90, 300),
    Bench("bench_rpc", "workers: tok/s and start through loopback RPC servers vs local", 60, 300),
    Bench("bench_tray", "tray: cold start, idle memory and CPU, menu", 150, 300),
    Bench("bench_bundle", "bundle: size, frozen vs unfrozen start", 200, 900),
)


# ---- the parent: run each benchmark in its own process, print one table ----------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="each benchmark's full length (tens of minutes)")
    parser.add_argument("--only", nargs="+", metavar="MODULE", help="run only these (e.g. bench_serve)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write every figure as JSON here")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: the child process for one benchmark
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        # A timeout's SIGTERM unwinds the benchmark, so its `finally` stops the servers it started: `serve` puts
        # them in sessions of their own, out of reach of the group kill that follows.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        return _child(args.one, quick=not args.full, out=args.out)

    benches = [b for b in BENCHES if not args.only or b.module in args.only]
    logs = Path(tempfile.mkdtemp(prefix="aidevops-bench-"))
    started = time.monotonic()
    load_before = os.getloadavg()
    results: list[tuple[Bench, list[Figure], float]] = []
    for bench in benches:
        left = BUDGET_S - (time.monotonic() - started)
        cap = bench.full_cap_s if args.full else min(bench.quick_cap_s, left)
        if not args.full and cap < 20:
            results.append((bench, [missing(bench.module, "not run: the 10-minute budget was spent")], 0.0))
            continue
        print(f"[bench] {bench.module}: {bench.what} (at most {cap:.0f} s) ...", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        figures = _run_child(bench, quick=not args.full, cap=cap, log=logs / f"{bench.module}.log")
        results.append((bench, figures, time.monotonic() - t0))
        print(f"[bench] {bench.module}: {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    total = time.monotonic() - started
    _print_table(results, total=total, load=(load_before, os.getloadavg()), logs=logs, full=args.full)
    everything = [f for _, figures, _ in results for f in figures]
    if args.json:
        args.json.write_text(json.dumps([f.as_dict() for f in everything], indent=2), encoding="utf-8")
    return 0 if all(f.ok is not False and f.value is not None for f in everything) else 1


def _run_child(bench: Bench, *, quick: bool, cap: float, log: Path) -> list[Figure]:
    out = log.with_suffix(".json")
    argv = [sys.executable, "-m", "tests.benchmarks.run", "--one", bench.module, "--out", str(out)]
    env = dict(os.environ, AIDEVOPS_HOME=tempfile.mkdtemp(prefix=f"{bench.module}-home-"), PYTHONUNBUFFERED="1")
    if not quick:
        argv.append("--full")
    with open(log, "wb") as sink:
        # Its own session: on a timeout the whole group goes (servers, trays, Xvfb it started).
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            proc.wait(cap)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            return [missing(bench.module, f"timed out after {cap:.0f} s (log: {log})")]
    if out.exists():
        return [Figure(**d) for d in json.loads(out.read_text(encoding="utf-8"))]
    tail = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()][-1:] or ["no output"]
    return [missing(bench.module, f"exited {proc.returncode}: {tail[0][:160]} (log: {log})")]


def _kill_group(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(10)
            return
        except subprocess.TimeoutExpired:
            continue


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    text = f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{text} {unit}".strip()


def _print_table(results, *, total: float, load, logs: Path, full: bool) -> None:
    rows = [("figure", "value", "baseline", "ratio", "goal", "met")]
    notes = []
    for _bench, figures, _ in results:
        for f in figures:
            met = "MISSING" if f.value is None else {True: "yes", False: "NO", None: "-"}[f.ok]
            rows.append(
                (
                    f.name,
                    _fmt(f.value, f.unit) if f.value is not None else "missing",
                    _fmt(f.baseline, f.unit),
                    _fmt(f.ratio),
                    f.goal or "-",
                    met,
                )
            )
            if f.note:
                notes.append(f"{len(rows) - 1:>2}. {f.note}")
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(
        f"\nbenchmarks ({'full' if full else 'quick'}), {os.cpu_count()} CPUs, load average "
        f"{load[0][0]:.1f} at start, {load[1][0]:.1f} at end; {total:.0f} s in all"
    )
    for i, row in enumerate(rows):
        prefix = "   " if i == 0 else f"{i:>2} "
        print(
            prefix
            + "  ".join(
                cell.ljust(w) if c in (0, 4) else cell.rjust(w) for c, (cell, w) in enumerate(zip(row, widths))
            ).rstrip()
        )
        if i == 0:
            print("   " + "  ".join("-" * w for w in widths))
    print("\nnotes:")
    for line in notes:
        print(line)
    print("\nper benchmark: " + ", ".join(f"{b.module} {seconds:.0f} s" for b, _, seconds in results))
    print(f"logs: {logs}")


# ---- the child: one benchmark, its figures written as JSON --------------------------------------------------


def _child(name: str, *, quick: bool, out: Path) -> int:
    try:
        module = importlib.import_module(f"tests.benchmarks.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"tests.benchmarks.{name}":
            raise  # the benchmark exists but needs something absent: its traceback is the reason
        figures = [missing(name, "the benchmark module does not exist yet")]
    else:
        figures = (
            module.run(quick=quick)
            if hasattr(module, "run")
            else [missing(name, "the module has no run(quick) -> list[Figure]")]
        )
    out.write_text(json.dumps([f.as_dict() for f in figures], indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
