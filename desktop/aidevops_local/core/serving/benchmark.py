"""How fast a model reads a prompt and writes tokens on this machine, measured against our own server.

The least surprising way to get a server: the running one when it serves the model asked for (it keeps
running afterwards); none running, this model is served for the measurement and stopped after it. A server
that serves another model is left alone: benchmarking would mean replacing it, so that is refused.
The figures are llama-server's own timings for one request (prompt cache off, so the prompt is read anew).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from ..system import config, local_http
from ..system.errors import LocalModelsError, Refused
from ..system.progress import ProgressCallback
from . import api_key, server
from . import state as server_state

# About 250 tokens of ordinary prose: long enough to time the prompt, short enough for any context.
_PROMPT = " ".join(
    ["Local models answer requests on this machine without sending anything to the cloud."] * 18
    + ["Summarise the text above in one long paragraph."]
)
_MAX_TOKENS = 64


@dataclass
class BenchmarkResult:
    model: str
    endpoint: str
    prompt_tokens: int
    prompt_tokens_per_s: float
    generated_tokens: int
    generation_tokens_per_s: float
    seconds: float  # the request's wall time
    started_server: bool  # served for the benchmark and stopped after it


def run(
    model: str | None = None,
    *,
    port: int | None = None,
    ctx: int | None = None,
    threads: int | None = None,
    settings: config.Settings | None = None,
    progress: ProgressCallback | None = None,
) -> BenchmarkResult:
    settings = settings or config.load_settings()
    running = server_state.running()
    if running is not None:
        _check_serves(running, model)
        return _measure(running, started=False)
    server.serve(model, port=port, ctx=ctx, threads=threads, progress=progress, settings=settings)
    try:
        state = server_state.running()
        if state is None:
            raise LocalModelsError("The server stopped before the benchmark ran.", hint="See `aidevops-local status`.")
        return _measure(state, started=True)
    finally:
        server.stop(settings=settings)


def _check_serves(running: server_state.ServerState, model: str | None) -> None:
    if model is None:
        return
    from ..models import library  # imported here, like every start's needs

    wanted = library.resolve_model(model)
    if not server_state.serves(running, wanted.files or [wanted.path], wanted.name):
        raise Refused(
            f"The running server serves {running.model}, not {wanted.name}.",
            hint=f"Benchmark it with `aidevops-local benchmark --model {running.model}`, or run "
            "`aidevops-local stop` first and benchmark the other model on its own.",
        )


def _measure(state: server_state.ServerState, *, started: bool) -> BenchmarkResult:
    body = {
        "model": state.model,
        "messages": [{"role": "user", "content": _PROMPT}],
        "max_tokens": _MAX_TOKENS,
        "temperature": 0,
        "cache_prompt": False,
    }
    began = time.monotonic()
    answer = local_http.post_json(
        state.base_url,
        "/v1/chat/completions",
        body,
        timeout=600,
        headers=api_key.headers(required=state.api_key_required),
    )
    seconds = time.monotonic() - began
    if answer is None or answer[0] != 200:
        said = "no answer" if answer is None else f"HTTP {answer[0]}: {answer[1][:200].decode(errors='replace')}"
        raise LocalModelsError(f"The benchmark request failed ({said}).", hint="See `aidevops-local status`.")
    data = json.loads(answer[1])
    usage, timings = data.get("usage") or {}, data.get("timings") or {}
    generated = int(timings.get("predicted_n") or usage.get("completion_tokens") or 0)
    return BenchmarkResult(
        model=state.model,
        endpoint=f"{state.base_url}/v1",
        prompt_tokens=int(timings.get("prompt_n") or usage.get("prompt_tokens") or 0),
        prompt_tokens_per_s=round(float(timings.get("prompt_per_second") or 0.0), 1),
        generated_tokens=generated,
        generation_tokens_per_s=round(float(timings.get("predicted_per_second") or generated / seconds), 1),
        seconds=round(seconds, 2),
        started_server=started,
    )
