"""The memory estimate against the real llama-server. Prints; asserts nothing.

    python -m tests.benchmarks.bench_fit                 # about 1 minute on 2 cores
    python -m tests.benchmarks.bench_fit --threads 1 --models smollm2

For each real model here (the tiny random llama, SmolLM2-135M Q4_1, Gemma 3 270M Q4_K_M) at several context
sizes, llama-server is started the way `serve` starts it (-c from the list, -np as the plan would choose,
flash attention auto), and its resident memory (psutil RSS) is measured:

  load:  after /health answers 200 and one short request;
  busy:  after one more request whose prompt fills a 512-token batch (the compute buffer is then touched).

Each is printed beside fit.estimate_memory's prediction (resident_at_load and ram_bytes) with the error in %;
the goal is every prediction within 10%. Then, per term, what llama.cpp's own log says it allocated
(`model buffer size`, `CPU_REPACK`, `KV buffer size`, `compute buffer size`, `output buffer size`) beside
the estimate's term, so a miss can be traced to the term that caused it. And speed: the busy request's
prompt tokens/s and a 64-token generation's tokens/s beside speed.estimate_speed's (goal: within 25%).

``run(quick)`` (for tests/benchmarks/run.py) measures the same way with the defaults, every model and context
in quick and full runs alike, prints the same tables and returns one figure per model: its worst prediction.
"""

from __future__ import annotations

import argparse
import re
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
from tests.benchmarks.figures import Figure, ratio_figure
from tests.fixtures.prepare import prepare

from aidevops_local.core.models import fit, gguf_meta, speed
from aidevops_local.core.system import hardware

MIB = 1 << 20
CONTEXTS = {"tiny": (2048, 8192), "smollm2": (2048, 4096, 8192), "gemma3": (2048, 8192, 32768)}
THREADS = 2
GOAL_PCT = 10.0  # every prediction within 10% of the measured RSS
SPEED_GOAL_PCT = 25.0  # and every speed within 25% of the measured


@dataclass(frozen=True)
class Case:
    """One model at one context: the estimate beside what llama-server used."""

    model: str
    ctx: int
    parallel: int
    est: fit.MemoryEstimate
    rss_load: int  # bytes, after /health and one short request
    rss_busy: int  # bytes, after a request that fills a 512-token batch
    log: dict[str, float]  # MiB per term, from llama.cpp's own log
    tok_s: float = 0.0  # generated, measured by llama-server
    prompt_s: float = 0.0  # prompt tokens read per second (the busy request's ~500-token prompt)
    speed: speed.SpeedEstimate | None = None

    @property
    def err_load(self) -> float:
        return 100 * (self.est.resident_at_load - self.rss_load) / self.rss_load

    @property
    def err_busy(self) -> float:
        return 100 * (self.est.ram_bytes - self.rss_busy) / self.rss_busy


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(base: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llama-server exited with {proc.returncode}")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError("llama-server did not become healthy")


def _complete(base: str, prompt: str, n_predict: int = 8, **extra) -> dict:
    # The raw completion endpoint: the tiny model's random output would not parse as a chat reply.
    body = {"prompt": prompt, "n_predict": n_predict, "cache_prompt": True, **extra}
    r = httpx.post(f"{base}/completion", json=body, timeout=300)
    r.raise_for_status()
    return r.json().get("timings") or {}


def _log_terms(log: str) -> dict[str, float]:
    def total(pattern: str) -> float:
        return sum(float(x) for x in re.findall(pattern + r" buffer size = +([\d.]+) MiB", log))

    return {
        "model": total(r"CPU_Mapped model"),
        "repack": total(r"CPU_REPACK model"),
        "kv": total(r"KV"),
        "compute": total(r"compute"),
        "output": total(r"output"),
    }


def measure(binary: Path, model: Path, ctx: int, parallel: int, threads: int) -> dict:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [
                str(binary),
                "-m",
                str(model),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "-c",
                str(ctx),
                "-np",
                str(parallel),
                "-t",
                str(threads),
                "--jinja",
                "--no-webui",
                "-lv",
                "4",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_healthy(base, proc)
            _complete(base, "Hello there, how are you today?")
            rss_load = psutil.Process(proc.pid).memory_info().rss
            slot = ctx // parallel
            words = max(16, min(560, slot - 64) // 3)  # about 3 tokens a word here: a batch of ~500 tokens
            busy = _complete(base, " ".join(f"item{i} is" for i in range(words)))
            rss_busy = psutil.Process(proc.pid).memory_info().rss
            gen = _complete(base, "Tell me a story.", 64, ignore_eos=True, cache_prompt=False)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        log.seek(0)
        text = log.read().decode("utf-8", "replace")
    return {
        "rss_load": rss_load,
        "rss_busy": rss_busy,
        "log": _log_terms(text),
        "tok_s": gen.get("predicted_per_second") or 0.0,
        "prompt_s": busy.get("prompt_per_second") or 0.0,
    }


def run(quick: bool = True) -> list[Figure]:
    """One figure per model: its worst prediction, at load or busy, over its contexts (quick and full alike:
    every model and context takes about a minute)."""
    build, cases = measure_all(list(CONTEXTS), threads=THREADS)
    report(cases, build=build, threads=THREADS)
    figures = []
    for model in dict.fromkeys(c.model for c in cases):
        mine = [c for c in cases if c.model == model]
        checks = [(abs(c.err_load), c.est.resident_at_load, c.rss_load, c.ctx, "load") for c in mine]
        checks += [(abs(c.err_busy), c.est.ram_bytes, c.rss_busy, c.ctx, "busy") for c in mine]
        err, predicted, measured, ctx, which = max(checks)
        contexts = "/".join(str(c.ctx) for c in mine)
        figures.append(
            ratio_figure(
                f"fit: {model} memory, worst of -c {contexts}",
                predicted / MIB,
                measured / MIB,
                unit="MiB",
                goal=f"within {GOAL_PCT:.0f}%",
                ok=err <= GOAL_PCT,
                note=f"predicted vs measured RSS; worst case -c {ctx} {which} ({err:.1f}% off)",
            )
        )
    return figures + speed_figures(cases)


def measure_all(models: list[str], *, threads: int) -> tuple[int, list[Case]]:
    """Every context of each model, measured; with the llama-server build they ran on."""
    fx = prepare()
    paths = {"tiny": fx.tiny_gguf, "smollm2": fx.smollm2_gguf, "gemma3": fx.gemma3_gguf}
    cases = []
    for name in models:
        header = gguf_meta.read_model(paths[name])
        for ctx in CONTEXTS[name]:
            parallel = fit.auto_parallel(ctx)
            est = fit.estimate_memory(header, ctx=ctx, parallel=parallel)
            got = measure(fx.llama_server, paths[name], ctx, parallel, threads)
            predicted = speed.estimate_speed(fit.shape_from_header(header), hardware=hardware.detect(), threads=threads)
            cases.append(
                Case(
                    name,
                    ctx,
                    parallel,
                    est,
                    got["rss_load"],
                    got["rss_busy"],
                    got["log"],
                    got["tok_s"],
                    got["prompt_s"],
                    predicted,
                )
            )
            print(f"  measured {name} at -c {ctx} -np {parallel}", file=sys.stderr, flush=True)
    return fx.llama_build, cases


def report(cases: list[Case], *, build: int, threads: int) -> None:
    print(f"\nllama-server {build}, -t {threads}; RSS in MiB (predicted vs measured, error %)")
    print(
        f"{'model':8} {'ctx':>6} {'np':>3} | {'load pred':>9} {'meas':>7} {'err%':>6} | "
        f"{'busy pred':>9} {'meas':>7} {'err%':>6}"
    )
    for c in cases:
        print(
            f"{c.model:8} {c.ctx:>6} {c.parallel:>3} | {c.est.resident_at_load / MIB:9.1f} {c.rss_load / MIB:7.1f} "
            f"{c.err_load:+6.1f} | {c.est.ram_bytes / MIB:9.1f} {c.rss_busy / MIB:7.1f} {c.err_busy:+6.1f}"
        )
    print("\nper term, MiB: estimate / llama.cpp's log (overhead is the estimate's process + tokenizer share)")
    print(
        f"{'model':8} {'ctx':>6} | {'weights':>15} {'repack':>13} {'kv':>15} {'compute':>13} {'output':>11} "
        f"{'overhead':>8}"
    )
    for c in cases:
        est, log = c.est, c.log
        print(
            f"{c.model:8} {c.ctx:>6} | {est.weights_ram / MIB:7.2f}/{log['model']:<7.2f} "
            f"{est.repack_ram / MIB:6.2f}/{log['repack']:<6.2f} {est.kv_ram / MIB:7.2f}/{log['kv']:<7.2f} "
            f"{est.compute_ram / MIB:6.2f}/{log['compute']:<6.2f} {est.output_ram / MIB:5.2f}/{log['output']:<5.2f} "
            f"{est.overhead_ram / MIB:8.1f}"
        )
    worst = max((max(abs(c.err_load), abs(c.err_busy)) for c in cases), default=0.0)
    print(f"\nworst error: {worst:.1f}% (goal: within {GOAL_PCT:.0f}%)")
    print(f"\nspeed, tokens/s: predicted / measured (error %), goal within {SPEED_GOAL_PCT:.0f}%")
    print(f"{'model':8} {'ctx':>6} | {'generated':>24} | {'prompt':>26}")
    for c in cases:
        if c.speed is not None:
            gen, prompt = c.speed.tokens_per_s, c.speed.prompt_tokens_per_s
            print(
                f"{c.model:8} {c.ctx:>6} | {gen:8.1f} / {c.tok_s:7.1f} ({_pct(gen, c.tok_s):+5.1f}) | "
                f"{prompt:8.1f} / {c.prompt_s:8.1f} ({_pct(prompt, c.prompt_s):+5.1f})"
            )


def _pct(predicted: float, measured: float) -> float:
    return 100 * (predicted - measured) / measured if measured else float("nan")


def speed_figures(cases: list[Case]) -> list[Figure]:
    """Per model: predicted vs measured generation and prompt speed (the median over its contexts)."""
    figures = []
    for model in dict.fromkeys(c.model for c in cases):
        mine = [c for c in cases if c.model == model and c.speed is not None and c.tok_s and c.prompt_s]
        if not mine:
            continue
        for what, pred, meas in (
            ("generated", [c.speed.tokens_per_s for c in mine], [c.tok_s for c in mine]),
            ("prompt", [c.speed.prompt_tokens_per_s for c in mine], [c.prompt_s for c in mine]),
        ):
            p, m = sorted(pred)[len(pred) // 2], sorted(meas)[len(meas) // 2]
            figures.append(
                ratio_figure(
                    f"fit: {model} {what} tokens/s, predicted vs measured",
                    p,
                    m,
                    unit="tok/s",
                    goal=f"within {SPEED_GOAL_PCT:.0f}%",
                    ok=abs(_pct(p, m)) <= SPEED_GOAL_PCT,
                    note=f"{THREADS} threads; median over -c {'/'.join(str(c.ctx) for c in mine)}",
                )
            )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=THREADS)
    parser.add_argument("--models", nargs="*", default=list(CONTEXTS), choices=list(CONTEXTS))
    args = parser.parse_args(argv)
    build, cases = measure_all(args.models, threads=args.threads)
    report(cases, build=build, threads=args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
