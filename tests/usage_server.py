"""The real llama-server started the way core/serving/server.py starts it for usage accounting (its own log under the
root's logs folder, opened by our header line, with `usage.llama_server_log_args()`), and OpenAI clients that
keep the `usage` each answer carried, to compare with the rows ingestion makes. Used by the usage tests and
the usage benchmark."""

from __future__ import annotations

import contextlib
import json
import subprocess
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from aidevops_local.core.accounting import usage
from aidevops_local.core.accounting.request_log import format_header
from aidevops_local.core.database import store
from aidevops_local.core.system.config import paths
from tests.fixtures.prepare import RunningServer, free_port, stop_process, wait_healthy
from tests.serving import with_model
from tests.waiting import wait_for


@dataclass
class LoggedServer(RunningServer):
    session_id: str = ""
    model: str = ""


@contextlib.contextmanager
def logged_server(
    server_dir: Path,
    model_path: Path,
    *,
    model: str | None = None,
    port: int | None = None,
    parallel: int = 1,
    ctx: int = 2048,
    log_path: Path | None = None,
    header: bool = True,
    log_args: Sequence[str] | None = None,
    extra_args: Sequence[str] = (),
    ready_timeout: float = 60.0,
) -> Iterator[LoggedServer]:
    """Run it with 1 thread on 127.0.0.1 until the block ends (SIGTERM, then SIGKILL). `log_args` None means
    the product's choice for this argv. `log_path` with `header=False` appends a second process to an existing
    log, as a restart without a new header would."""
    port = port or free_port()
    binary = Path(server_dir) / "llama-server"
    started = datetime.now(UTC)
    session_id = uuid.uuid4().hex
    model = model or Path(model_path).stem
    if log_path is None:
        paths().logs_dir.mkdir(parents=True, exist_ok=True)
        log_path = paths().logs_dir / f"llama-server-{started:%Y%m%d-%H%M%S}-{port}-{session_id[:6]}.log"
    if header:
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(
                format_header(
                    model=model, model_path=str(model_path), port=port, started=started, session_id=session_id
                )
            )
    argv = [
        str(binary),
        "-m",
        str(model_path),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "-t",
        "1",
        "-tb",
        "1",
        "-c",
        str(ctx),
        "-np",
        str(parallel),
        "--jinja",
        "--no-webui",
        *extra_args,
    ]
    if log_args is None:  # what the product passes
        log_args = usage.llama_server_log_args(server_binary=binary, server_args=argv)
    argv += list(log_args)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    srv = LoggedServer(proc, port, Path(log_path), session_id=session_id, model=model)
    try:
        wait_healthy(srv, ready_timeout)
        yield srv
    finally:
        stop_process(proc)


def client(timeout: float = 120.0) -> httpx.Client:
    """A connection per request: this llama-server build closes a connection after a streamed answer while
    still advertising keep-alive, so a reused one fails with "Server disconnected"."""
    return httpx.Client(timeout=timeout, limits=httpx.Limits(max_keepalive_connections=0))


@dataclass(frozen=True)
class Answer:
    """What the client was told about one request."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int | None
    finish_reason: str | None
    stream: bool

    @property
    def tokens(self) -> tuple[int, int]:
        return self.prompt_tokens, self.completion_tokens


def chat(
    client: httpx.Client, url: str, content: str, *, max_tokens: int = 16, stream: bool = False, **extra
) -> Answer:
    """One chat completion; streaming asks for the usage chunk (stream_options.include_usage)."""
    body = with_model({"messages": [{"role": "user", "content": content}], "max_tokens": max_tokens, **extra}, url)
    if not stream:
        response = client.post(f"{url}/v1/chat/completions", json=body)
        response.raise_for_status()
        data = response.json()
        return _answer(data["usage"], data.get("timings"), data["choices"][0].get("finish_reason"), False)
    body.update(stream=True, stream_options={"include_usage": True})
    used, timings, finish = None, None, None
    with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                used, timings = chunk["usage"], chunk.get("timings")
            for choice in chunk.get("choices") or []:
                finish = choice.get("finish_reason") or finish
    assert used is not None, "the stream ended without a usage chunk"
    return _answer(used, timings, finish, True)


def _answer(used: dict, timings: dict | None, finish: str | None, stream: bool) -> Answer:
    cached = (used.get("prompt_tokens_details") or {}).get("cached_tokens")
    if cached is None and timings:
        cached = timings.get("cache_n")
    return Answer(used["prompt_tokens"], used["completion_tokens"], cached, finish, stream)


def start_stream(client: httpx.Client, url: str, content: str, *, max_tokens: int, chunks: int) -> int:
    """Start a streaming request and walk away after `chunks` chunks (a client that cancels)."""
    body = with_model(
        {"messages": [{"role": "user", "content": content}], "max_tokens": max_tokens, "stream": True}, url
    )
    seen = 0
    with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                seen += 1
                if seen >= chunks:
                    break
    return seen


def wait_logged(requests: int, timeout: float = 30.0) -> None:
    """llama-server logs a request's end ("stop processing") from its log thread after the client has the answer
    (and a router copies its model's lines from a pipe): wait until the logs folder tells of `requests` ends."""

    def ends() -> int:
        return sum(log.read_bytes().count(b"stop processing") for log in paths().logs_dir.rglob("*.log"))

    wait_for(lambda: ends() >= requests, timeout, f"{requests} finished requests in llama-server's log")


def rows() -> list[store.ModelUsage]:
    """Every usage row, in the order written."""
    store.database()
    return list(store.ModelUsage.select().order_by(store.ModelUsage.id))


def triples(items) -> Counter:
    """(tokens in, tokens out) per request, as a multiset: which row is which request does not matter."""
    return Counter((i.tokens_in, i.tokens_out) if isinstance(i, store.ModelUsage) else i.tokens for i in items)
