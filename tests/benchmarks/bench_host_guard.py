"""What the Host-checking front (core/serving/host_guard.py) costs: the same server, asked through the front
and directly.

    python -m tests.benchmarks.bench_host_guard            # quick: about 40 s on 2 cores
    python -m tests.benchmarks.bench_host_guard --full     # more sweeps
    python -m tests.benchmarks.bench_host_guard --tiny     # a tiny random model: thousands of chunks/s

`serve` starts SmolLM2-135M Q4_1 with the tool's defaults; the front listens on 127.0.0.1:PORT and
llama-server on its private UNIX socket. Each request is a streamed chat completion (SSE) on a fresh
connection, as a client of the framework makes it, generating a fixed number of tokens (ignore_eos,
temperature 0, no prompt cache). Requests alternate F D D F (front, direct to the socket) so neighbours in time
share the machine's load, and the figures are medians of each sweep's pair: generated tokens/s (first to last
token, as the client sees them arrive) as a ratio, and time to first token as a difference. Direct goes to the
same llama-server process over its UNIX socket, which is itself a little quicker than TCP: the figure is the
front's whole cost, if anything overstated. Also the front's own memory (RSS) after the run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass

import httpx
import psutil
from tests.benchmarks.bench_serve import PROMPT, _fresh_root
from tests.benchmarks.figures import Figure, ratio_figure, spread
from tests.fixtures.prepare import free_port, prepare

TOKENS_GOAL = 0.99  # generated tokens/s through the front, over direct
FIRST_TOKEN_GOAL_MS = 2.0  # extra time to first token
RSS_GOAL_MIB = 40.0


@dataclass(frozen=True)
class Stream:
    first_token_s: float  # from sending the request to the first content delta
    tokens_per_s: float  # content deltas after the first, over the time they took to arrive


def run(quick: bool = True, *, tiny: bool = False, threads: int | None = None) -> list[Figure]:
    """``tiny``: the tiny random model instead, thousands of tokens/s: the front's per-chunk cost at its worst.
    ``threads``: llama-server's, below the machine's cores, to see the front with a core to spare."""
    from aidevops_local.core.serving import server
    from aidevops_local.core.serving import state as server_state

    fixtures = prepare()
    _fresh_root(fixtures.llama_server_dir)
    sweeps, tokens = (10, 48) if quick else (30, 96)
    if tiny:
        tokens *= 4
    status = server.serve(str(fixtures.tiny_gguf if tiny else fixtures.smollm2_gguf), port=free_port(), threads=threads)
    try:
        state = server_state.read()
        return measure(
            f"http://127.0.0.1:{state.port}",
            state.upstream,
            model=status.model,
            front_pid=state.guard_pid,
            sweeps=sweeps,
            tokens=tokens,
            what=f"{status.model}; ",
            upstream_pid=state.pid,
        )
    finally:
        server.stop(grace=5)


def measure(
    front_url: str,
    upstream: str,
    *,
    model: str,
    front_pid: int,
    sweeps: int,
    tokens: int,
    what: str = "",
    upstream_pid: int = 0,
) -> list[Figure]:
    """The comparison itself, for any running front and socket (``what`` names the model in the figures)."""
    routes = {"front": (front_url, None), "direct": ("http://localhost", upstream)}
    # A router takes the key of its run (the front adds it): the direct route sends it itself.
    direct_key = psutil.Process(upstream_pid).environ().get("LLAMA_API_KEY") if upstream_pid else None
    keys = {"front": None, "direct": {"Authorization": f"Bearer {direct_key}"} if direct_key else None}
    for who in routes:
        _stream(*routes[who], model=model, tokens=8, headers=keys[who])  # warm-up
    results: dict[str, list[Stream]] = {"front": [], "direct": []}
    for s in range(sweeps):
        for who in ("front", "direct", "direct", "front") if s % 2 == 0 else ("direct", "front", "front", "direct"):
            results[who].append(_stream(*routes[who], model=model, tokens=tokens, headers=keys[who]))
    front_rss = psutil.Process(front_pid).memory_info().rss / 2**20
    front, direct = results["front"], results["direct"]
    tps_ratios = _pairs(front, direct, lambda a, b: sum(x.tokens_per_s for x in a) / sum(x.tokens_per_s for x in b))
    ttft_diffs = _pairs(
        front, direct, lambda a, b: 1000 * (sum(x.first_token_s for x in a) - sum(x.first_token_s for x in b)) / 2
    )
    tps_ratio, ttft_diff = statistics.median(tps_ratios), statistics.median(ttft_diffs)
    front_ttft = 1000 * statistics.median(x.first_token_s for x in front)
    direct_ttft = 1000 * statistics.median(x.first_token_s for x in direct)
    runs = f"{what}{tokens} tokens per streamed request, {len(front)} requests each way, one server"
    return [
        Figure(
            name="host guard: generated tok/s, streamed, through the front vs direct to llama-server",
            value=statistics.median(x.tokens_per_s for x in front),
            unit="tok/s",
            baseline=statistics.median(x.tokens_per_s for x in direct),
            ratio=tps_ratio,
            goal=f"ratio >= {TOKENS_GOAL}",
            ok=tps_ratio >= TOKENS_GOAL,
            note=f"ratio: median of {len(tps_ratios)} sweep ratios ({spread(tps_ratios)}); {runs}",
        ),
        ratio_figure(
            "host guard: time to first token, streamed, through the front vs direct",
            front_ttft,
            direct_ttft,
            unit="ms",
            goal=f"front - direct <= {FIRST_TOKEN_GOAL_MS:.0f} ms",
            ok=ttft_diff <= FIRST_TOKEN_GOAL_MS,
            note=f"front - direct: {ttft_diff:+.2f} ms, median of {len(ttft_diffs)} sweep differences "
            f"({spread(ttft_diffs)} ms); new connection per request; {runs}",
        ),
        Figure(
            name="host guard: the front process's memory (RSS)",
            value=front_rss,
            unit="MiB",
            goal=f"< {RSS_GOAL_MIB:.0f} MiB",
            ok=front_rss < RSS_GOAL_MIB,
            note="after the run; a Python process with asyncio and the standard library only",
        ),
    ]


def _pairs(front: list[Stream], direct: list[Stream], compare) -> list[float]:
    """Each sweep holds two of each, side by side in time: one comparison per sweep."""
    return [compare(front[i : i + 2], direct[i : i + 2]) for i in range(0, len(front), 2)]


def _stream(base: str, uds: str | None, *, model: str, tokens: int, headers: dict | None = None) -> Stream:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": tokens,
        "stream": True,
        "temperature": 0,
        "ignore_eos": True,
        "cache_prompt": False,
    }
    transport = httpx.HTTPTransport(uds=uds) if uds else None
    arrivals: list[float] = []
    with httpx.Client(timeout=120.0, transport=transport, headers=headers or {}) as http:
        t0 = time.perf_counter()
        with http.stream("POST", f"{base}/v1/chat/completions", json=body) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    for choice in json.loads(line[6:]).get("choices") or []:
                        if (choice.get("delta") or {}).get("content"):
                            arrivals.append(time.perf_counter())
    if len(arrivals) < 2:
        raise RuntimeError("the stream carried fewer than two tokens")
    return Stream(first_token_s=arrivals[0] - t0, tokens_per_s=(len(arrivals) - 1) / (arrivals[-1] - arrivals[0]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="more sweeps (about 2 minutes)")
    parser.add_argument("--tiny", action="store_true", help="the tiny random model: the most chunks per second")
    parser.add_argument("--threads", type=int, help="llama-server's threads (default: the tool's choice)")
    args = parser.parse_args(argv)
    for figure in run(quick=not args.full, tiny=args.tiny, threads=args.threads):
        verdict = {True: "met", False: "NOT met", None: "no goal"}[figure.ok]
        baseline = f" vs {figure.baseline:.3f}" if figure.baseline is not None else ""
        ratio = f" (ratio {figure.ratio:.3f})" if figure.ratio is not None else ""
        print(
            f"{figure.name}: {figure.value:.3f} {figure.unit}{baseline}{ratio}; goal {figure.goal or '-'}: "
            f"{verdict} [{figure.note}]"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
