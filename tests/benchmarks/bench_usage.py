"""Usage accounting under load, and what it costs the request path. Prints; asserts nothing.

    python -m tests.benchmarks.bench_usage                  # both parts (about 2-3 minutes on 2 cores)
    python -m tests.benchmarks.bench_usage --requests 200 --rounds 3

1. Load: N requests (default 1000) to the real llama-server running the tiny real-format model, once with the
   product's log flags and once at trace verbosity: mixed streaming (with include_usage) and not, 4 at a time
   in 4 slots, short max_tokens, some prompts repeated so the prompt cache serves part of them; then one
   ingest. Prints rows found / requests sent, whether the rows' tokens equal the usage the clients received
   (as a multiset: a client cannot know its request's task id), the ingest time and the log bytes per
   request.
2. On/off: SmolLM2-135M served three times at once: without usage logging (no log flags, output discarded),
   with it (the product's flags, a log file, an ingest every second as the tray's timer would run it), and
   with it at trace verbosity. Requests go to them one at a time in ABC CBA order, each generating a fixed 96
   tokens, in rounds of freshly started servers; prints the ratio of tokens/s, on over off, as the clients
   measured it and as the servers did, and of tokens per CPU second of the server (which load from other
   programs on the machine disturbs least).

``run(quick)`` (for tests/benchmarks/run.py) runs both parts, quick as ``--requests 500 --rounds 4
--per-round 2`` and full with the defaults, prints the same report and returns its figures: rows per request
for each load test, and the clients' tokens/s with logging on (and on at trace verbosity) against off.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tests.benchmarks.figures import Figure, ratio_figure
from tests.fixtures.prepare import prepare

REQUESTS, CONCURRENCY, ROUNDS, PER_ROUND = 1000, 4, 6, 2  # the full run's settings, and the CLI's defaults
ON_OFF_GOAL = 0.99  # tokens/s with the product's logging, over without it


@dataclass(frozen=True)
class Load:
    """One load test: usage rows found against requests sent."""

    label: str
    requests: int
    rows: int
    all_equal: bool  # one row per request, and the rows' tokens equal the clients' usage (as a multiset)


@dataclass(frozen=True)
class Ratio:
    """on/off over requests paired in time."""

    median: float
    mean: float
    se: float  # standard error of the mean


@dataclass(frozen=True)
class OnOff:
    off_client_tps: float  # mean client tokens/s without logging
    client: dict[str, Ratio]  # "on", "on, trace" -> client tokens/s over off


def run(quick: bool = True) -> list[Figure]:
    loads, on_off = measure(
        requests=500 if quick else REQUESTS, concurrency=CONCURRENCY, rounds=4 if quick else ROUNDS, per_round=PER_ROUND
    )
    figures = [
        ratio_figure(
            f"usage: rows / requests ({load.label})",
            load.rows,
            load.requests,
            unit="rows",
            goal="= 1.000, tokens equal",
            ok=load.rows == load.requests and load.all_equal,
            note=f"{load.requests} requests under load; rows' tokens {_verdict(load)}",
        )
        for load in loads
    ]
    baseline = on_off.off_client_tps
    for name, goal in (("on", f">= {ON_OFF_GOAL}"), ("on, trace", "")):
        ratio = on_off.client[name]
        figures.append(
            Figure(
                name=f"usage: tokens/s, logging {name} vs off (client)",
                value=ratio.median * baseline,
                unit="tok/s",
                baseline=baseline,
                ratio=ratio.median,
                goal=goal,
                ok=ratio.median >= ON_OFF_GOAL if goal else None,
                note=f"value: the off mean times the ratio; ratio: median of requests paired in time "
                f"(mean {ratio.mean:.3f} +- {ratio.se:.3f})"
                + ("" if goal else "; trace is used only with speculative decoding"),
            )
        )
    return figures


def measure(
    *, requests: int, concurrency: int, rounds: int, per_round: int, load: bool = True, ratio: bool = True
) -> tuple[list[Load], OnOff | None]:
    """Both parts (or the ones asked for), each printing its report; their numbers."""
    fixtures = prepare()
    from aidevops_local.core.accounting import usage

    loads = []
    if load:
        loads.append(
            load_test(
                fixtures, requests=requests, concurrency=concurrency, log_args=None, label="the product's log flags"
            )
        )
        loads.append(
            load_test(
                fixtures,
                requests=requests,
                concurrency=concurrency,
                log_args=[*usage.BASE_LOG_ARGS, "--log-verbosity", "4"],
                label="trace verbosity (-lv 4)",
            )
        )
    on_off = on_off_ratio(fixtures, rounds=rounds, per_round=per_round) if ratio else None
    return loads, on_off


def _verdict(load: Load) -> str:
    return "all equal" if load.all_equal else "MISMATCH"


def fresh_root() -> None:
    """Each part gets its own root (logs and database), never the user's."""
    os.environ["AIDEVOPS_HOME"] = tempfile.mkdtemp(prefix="bench-usage.")


def load_test(fixtures, *, requests: int, concurrency: int, log_args: list[str] | None, label: str) -> Load:
    from tests.usage_server import chat, client, logged_server

    from aidevops_local.core.accounting import usage
    from aidevops_local.core.database import store

    fresh_root()
    rng = random.Random(1338)
    prompts = [f"note {i}: " + "lorem ipsum " * rng.randint(0, 12) for i in range(requests // 3)]
    plan = [(rng.choice(prompts), rng.randint(1, 16), rng.random() < 0.5) for _ in range(requests)]
    with logged_server(
        fixtures.llama_server_dir,
        fixtures.tiny_gguf,
        model="tiny",
        parallel=concurrency,
        ctx=1024 * concurrency,
        log_args=log_args,
    ) as srv:
        startup_bytes = srv.log_path.stat().st_size
        started = time.monotonic()
        with client() as http, ThreadPoolExecutor(concurrency) as pool:
            answers = list(pool.map(lambda p: chat(http, srv.url, p[0], max_tokens=p[1], stream=p[2]), plan))
        elapsed = time.monotonic() - started
    per_request_bytes = (srv.log_path.stat().st_size - startup_bytes) / requests
    t0 = time.monotonic()
    added = usage.ingest(live_log=None)
    ingest_s = time.monotonic() - t0
    t0 = time.monotonic()
    usage.ingest(live_log=None)
    idle_ingest_ms = (time.monotonic() - t0) * 1e3
    store.database()
    rows = list(store.ModelUsage.select())
    got = Counter((r.tokens_in, r.tokens_out, r.cache_tokens) for r in rows)
    want = Counter((a.prompt_tokens, a.completion_tokens, a.cached_tokens) for a in answers)
    matching = sum((got & want).values())
    streamed = sum(1 for a in answers if a.stream)
    cached = sum(1 for a in answers if a.cached_tokens)
    result = Load(label=label, requests=requests, rows=len(rows), all_equal=got == want and len(rows) == requests)
    print(
        f"load test, {label}: {requests} requests to llama-server b10068 + tiny model in {elapsed:.1f} s "
        f"({streamed} streaming, {requests - streamed} not; {concurrency} at a time in {concurrency} "
        f"slots; "
        f"max_tokens 1-16; {cached} served partly from the prompt cache)"
    )
    print(f"  rows found / requests sent: {len(rows)}/{requests} = {len(rows) / requests:.3f} (ingest added {added})")
    print(f"  rows whose tokens in/out/cached equal a client's usage: {matching}/{requests} -> {_verdict(result)}")
    print(
        f"  statuses: {dict(Counter(r.status for r in rows))}; distinct request keys: "
        f"{len({r.request_key for r in rows})}"
    )
    print(
        f"  ingest: {ingest_s * 1e3:.0f} ms for the whole log "
        f"({ingest_s / requests * 1e3:.2f} ms per request); "
        f"again with nothing new: {idle_ingest_ms:.1f} ms; log: {per_request_bytes:.0f} bytes per request"
    )
    return result


METRICS = (
    ("client tok/s", "wall clock at the client"),
    ("server tok/s", "llama-server's own timings"),
    ("tok per CPU-s", "tokens per CPU second of the server process"),
)


def on_off_ratio(fixtures, *, rounds: int, per_round: int, max_tokens: int = 96) -> OnOff:
    import psutil
    from tests.usage_server import chat, client, logged_server

    from aidevops_local.core.accounting import usage

    fresh_root()
    prompt = "Write a short poem about the sea."
    body = {"temperature": 0, "ignore_eos": True, "cache_prompt": False}
    variants = {  # name -> logged_server arguments
        "off": dict(model="off", log_args=[], log_path=Path(os.devnull), header=False),
        "on": dict(model="on"),
        "on, trace": dict(model="trace", log_args=[*usage.BASE_LOG_ARGS, "--log-verbosity", "4"]),
    }
    stop = threading.Event()

    def ingest_every_second():
        while not stop.wait(1.0):
            usage.ingest(live_log=None)

    ticker = threading.Thread(target=ingest_every_second, daemon=True)
    ticker.start()
    # Fresh processes every round, started in a rotating order: a process's own speed (memory placement)
    # varies by a few percent, so it has to average out over rounds. Within a round, ABC CBA sweeps put the
    # variants' requests side by side in time, so load from other programs falls on all of them alike.
    samples: dict[str, list[tuple[float, float, float]]] = {name: [] for name in variants}
    names = list(variants)
    with client() as http:
        for r in range(rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            with contextlib.ExitStack() as stack:
                servers = {
                    name: stack.enter_context(
                        logged_server(fixtures.llama_server_dir, fixtures.smollm2_gguf, **variants[name])
                    )
                    for name in order
                }
                procs = {name: psutil.Process(srv.proc.pid) for name, srv in servers.items()}
                for srv in servers.values():  # warm up
                    chat(http, srv.url, prompt, max_tokens=8, **body)
                for _ in range(per_round):
                    for name in order + order[::-1]:
                        cpu0, t0 = sum(procs[name].cpu_times()[:2]), time.perf_counter()
                        response = http.post(
                            f"{servers[name].url}/v1/chat/completions",
                            json={"messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, **body},
                        )
                        wall, cpu = time.perf_counter() - t0, sum(procs[name].cpu_times()[:2]) - cpu0
                        data = response.json()
                        n = data["usage"]["completion_tokens"]
                        samples[name].append((n / wall, data["timings"]["predicted_per_second"], n / cpu))
    stop.set()
    ticker.join()
    n = len(samples["off"])
    print(
        f"tokens/s with usage logging on vs off (SmolLM2-135M Q4_1, 1 thread, {max_tokens} tokens per "
        f"request, {n} requests per variant in {rounds} rounds of fresh servers, ABC CBA order, an ingest "
        "every 1 s while they run); ratios are on/off over requests paired in time: median, mean +- s.e."
    )
    off = samples["off"]
    print(
        "  off (no log flags, output discarded): "
        + ", ".join(f"{statistics.fmean(v[k] for v in off):.1f} {label}" for k, (label, _) in enumerate(METRICS))
    )
    client = {}
    for name in ("on", "on, trace"):
        ratios = [_paired(samples[name], off, k) for k in range(len(METRICS))]
        client[name] = ratios[0]  # METRICS[0]: client tok/s
        print(
            f"  {name}: "
            + "; ".join(f"{label} {r.median:.3f}, {r.mean:.3f} +- {r.se:.3f}" for (label, _), r in zip(METRICS, ratios))
        )
    print("  (" + "; ".join(f"{label}: {what}" for label, what in METRICS) + ")")
    return OnOff(off_client_tps=statistics.fmean(v[0] for v in off), client=client)


def _paired(on: list[tuple[float, ...]], off: list[tuple[float, ...]], k: int) -> Ratio:
    """Metric k, on over off, request by request (they were side by side in time)."""
    ratios = [a[k] / b[k] for a, b in zip(on, off, strict=True)]
    return Ratio(
        median=statistics.median(ratios),
        mean=statistics.fmean(ratios),
        se=statistics.stdev(ratios) / len(ratios) ** 0.5,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=REQUESTS)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="on/off: rounds of fresh servers")
    parser.add_argument("--per-round", type=int, default=PER_ROUND, help="on/off: ABC CBA sweeps per round")
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--skip-ratio", action="store_true")
    args = parser.parse_args(argv)
    measure(
        requests=args.requests,
        concurrency=args.concurrency,
        rounds=args.rounds,
        per_round=args.per_round,
        load=not args.skip_load,
        ratio=not args.skip_ratio,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
