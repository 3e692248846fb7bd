"""Workers (llama.cpp's RPC backend): what the network hop costs. Prints; asserts nothing.

    python -m tests.benchmarks.bench_rpc            # quick: about a minute on 2 cores
    python -m tests.benchmarks.bench_rpc --full

The same model (SmolLM2-135M Q4_1), served by `serve` with every layer on one loopback worker (2 threads,
against local on 2 threads) and split between two (1 thread each, two small machines on this 2-core box,
against local on 1 thread). The workers are the runtime's own RPC servers on this machine, so the figures
are the protocol's cost with no network in between, the best case a LAN can approach. Each way is started
fresh per round (the rounds rotate the order), timed from serve() to healthy, then asked for a fixed number
of tokens a few times; the figure is the server-measured generation speed, the median per way.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

import httpx
from tests.benchmarks.bench_serve import PROMPT, _fresh_root
from tests.benchmarks.figures import Figure, ratio_figure, spread
from tests.fixtures.prepare import free_port, prepare

# (way, threads of the main server and of each worker): one worker gets the machine's 2 cores, like the
# local run; two workers get one core each (two small machines on one box), compared with local on 1 thread.
WAYS = (("local", 2), ("1 worker", 2), ("local, 1 thread", 1), ("2 workers", 1))
BASELINE = {"1 worker": "local", "2 workers": "local, 1 thread"}


def _workers(server_dir, n: int, threads: int) -> tuple[list[str], list[subprocess.Popen]]:
    from aidevops_local.core.rpc import worker

    endpoints, procs = [], []
    for _ in range(n):
        port = free_port()
        argv = [
            str(server_dir / "ggml-rpc-server"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--threads",
            str(threads),
        ]
        procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 10
        while not worker.answers("127.0.0.1", port) and time.monotonic() < deadline:
            time.sleep(0.02)
        endpoints.append(f"127.0.0.1:{port}")
    return endpoints, procs


def _one_way(model, workers: list[str], threads: int, requests: int, tokens: int) -> tuple[float, list[float]]:
    """(seconds from serve() to healthy, generated tok/s per request)."""
    from aidevops_local.core.serving import server
    from aidevops_local.core.system import config

    config.save_settings(config.Settings(threads=threads, ctx_size=2048, parallel=1, port=free_port(), workers=workers))
    started = time.perf_counter()
    status = server.serve(str(model))
    start_s = time.perf_counter() - started
    speeds = []
    try:
        for _ in range(requests):
            body = {"model": status.model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": tokens}
            body |= {"temperature": 0, "ignore_eos": True, "cache_prompt": False}
            answer = httpx.post(f"{status.endpoint}/chat/completions", json=body, timeout=120).json()
            speeds.append(answer["timings"]["predicted_per_second"])
    finally:
        server.stop(grace=5)
    return start_s, speeds


def run(quick: bool = True) -> list[Figure]:
    fixtures = prepare()
    _fresh_root(fixtures.llama_server_dir)
    rounds, requests, tokens = (2, 4, 48) if quick else (5, 6, 96)
    alone, procs = _workers(fixtures.llama_server_dir, 1, threads=2)
    pair, more = _workers(fixtures.llama_server_dir, 2, threads=1)
    procs += more
    workers = {"1 worker": alone, "2 workers": pair}
    starts: dict[str, list[float]] = {w: [] for w, _ in WAYS}
    speeds: dict[str, list[float]] = {w: [] for w, _ in WAYS}
    try:
        for r in range(rounds):
            for way, threads in WAYS[r % 4 :] + WAYS[: r % 4]:
                start_s, got = _one_way(fixtures.smollm2_gguf, workers.get(way, []), threads, requests, tokens)
                starts[way].append(start_s)
                speeds[way] += got
    finally:
        for proc in procs:
            proc.kill()
    figures = []
    for way, base in BASELINE.items():
        value, local = statistics.median(speeds[way]), statistics.median(speeds[base])
        print(f"{way}: {value:.1f} tok/s ({spread(speeds[way])}) vs {base} {local:.1f}; start {starts[way]}")
        figures.append(
            ratio_figure(
                f"workers: generated tok/s, {way} on loopback vs {base}",
                value,
                local,
                unit="tok/s",
                goal="-",
                ok=None,
                note=f"SmolLM2-135M Q4_1, every layer on the worker(s); {tokens} tokens, {spread(speeds[way])}",
            )
        )
        figures.append(
            ratio_figure(
                f"workers: serve to healthy, {way} vs {base}",
                statistics.median(starts[way]),
                statistics.median(starts[base]),
                unit="s",
                goal="-",
                ok=None,
                note=f"includes asking the workers' memory and sending them the weights; {spread(starts[way])}",
            )
        )
    return figures


if __name__ == "__main__":
    for figure in run(quick="--full" not in sys.argv):
        print(figure)
