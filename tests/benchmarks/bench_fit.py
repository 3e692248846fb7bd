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
the estimate's term, so a miss can be traced to the term that caused it.
"""

from __future__ import annotations

import argparse
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
from tests.fixtures.prepare import prepare

from aidevops_local.core import fit, gguf_meta

MIB = 1 << 20
CONTEXTS = {"tiny": (2048, 8192), "smollm2": (2048, 4096, 8192), "gemma3": (2048, 8192, 32768)}


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


def _complete(base: str, prompt: str, n_predict: int = 8) -> None:
    # The raw completion endpoint: the tiny model's random output would not parse as a chat reply.
    r = httpx.post(f"{base}/completion", json={"prompt": prompt, "n_predict": n_predict, "cache_prompt": True},
                   timeout=300)
    r.raise_for_status()


def _log_terms(log: str) -> dict[str, float]:
    def total(pattern: str) -> float:
        return sum(float(x) for x in re.findall(pattern + r" buffer size = +([\d.]+) MiB", log))

    return {"model": total(r"CPU_Mapped model"), "repack": total(r"CPU_REPACK model"), "kv": total(r"KV"),
            "compute": total(r"compute"), "output": total(r"output")}


def measure(binary: Path, model: Path, ctx: int, parallel: int, threads: int) -> dict:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(port),
                                 "-c", str(ctx), "-np", str(parallel), "-t", str(threads), "--jinja",
                                 "--no-webui", "-lv", "4"], stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_healthy(base, proc)
            _complete(base, "Hello there, how are you today?")
            rss_load = psutil.Process(proc.pid).memory_info().rss
            slot = ctx // parallel
            words = max(16, min(560, slot - 64) // 3)  # about 3 tokens a word here: a batch of ~500 tokens
            _complete(base, " ".join(f"item{i} is" for i in range(words)))
            rss_busy = psutil.Process(proc.pid).memory_info().rss
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        log.seek(0)
        text = log.read().decode("utf-8", "replace")
    return {"rss_load": rss_load, "rss_busy": rss_busy, "log": _log_terms(text)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", nargs="*", default=list(CONTEXTS), choices=list(CONTEXTS))
    args = parser.parse_args(argv)
    fx = prepare()
    paths = {"tiny": fx.tiny_gguf, "smollm2": fx.smollm2_gguf, "gemma3": fx.gemma3_gguf}
    rows, terms = [], []
    worst = 0.0
    for name in args.models:
        header = gguf_meta.read_model(paths[name])
        for ctx in CONTEXTS[name]:
            parallel = fit._auto_parallel(ctx)
            est = fit.estimate_memory(header, ctx=ctx, parallel=parallel)
            got = measure(fx.llama_server, paths[name], ctx, parallel, args.threads)
            err_load = 100 * (est.resident_at_load - got["rss_load"]) / got["rss_load"]
            err_busy = 100 * (est.ram_bytes - got["rss_busy"]) / got["rss_busy"]
            worst = max(worst, abs(err_load), abs(err_busy))
            rows.append((name, ctx, parallel, est.resident_at_load / MIB, got["rss_load"] / MIB, err_load,
                         est.ram_bytes / MIB, got["rss_busy"] / MIB, err_busy))
            log = got["log"]
            terms.append((name, ctx, (est.weights_ram / MIB, log["model"]), (est.repack_ram / MIB, log["repack"]),
                          (est.kv_ram / MIB, log["kv"]), (est.compute_ram / MIB, log["compute"]),
                          (est.output_ram / MIB, log["output"]), est.overhead_ram / MIB))
            print(f"  measured {name} at -c {ctx} -np {parallel}", file=sys.stderr, flush=True)

    print(f"\nllama-server {fx.llama_build}, -t {args.threads}; RSS in MiB (predicted vs measured, error %)")
    print(f"{'model':8} {'ctx':>6} {'np':>3} | {'load pred':>9} {'meas':>7} {'err%':>6} | "
          f"{'busy pred':>9} {'meas':>7} {'err%':>6}")
    for r in rows:
        print(f"{r[0]:8} {r[1]:>6} {r[2]:>3} | {r[3]:9.1f} {r[4]:7.1f} {r[5]:+6.1f} | {r[6]:9.1f} {r[7]:7.1f} "
              f"{r[8]:+6.1f}")
    print("\nper term, MiB: estimate / llama.cpp's log (overhead is the estimate's process + tokenizer share)")
    print(f"{'model':8} {'ctx':>6} | {'weights':>15} {'repack':>13} {'kv':>15} {'compute':>13} {'output':>11} "
          f"{'overhead':>8}")
    for name, ctx, w, rp, kv, cb, out, ovh in terms:
        print(f"{name:8} {ctx:>6} | {w[0]:7.2f}/{w[1]:<7.2f} {rp[0]:6.2f}/{rp[1]:<6.2f} {kv[0]:7.2f}/{kv[1]:<7.2f} "
              f"{cb[0]:6.2f}/{cb[1]:<6.2f} {out[0]:5.2f}/{out[1]:<5.2f} {ovh:8.1f}")
    print(f"\nworst error: {worst:.1f}% (goal: within 10%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
