"""The front's part in naming models: a router refuses a request that names no model (400), and the framework
sends none, or its default. So, for a router, a request to a completion, chat, embeddings or rerank endpoint
whose JSON body lacks "model" (or leaves it empty) gets the model the router has loaded now, else the one the
state file names (asked for last). Where the build's router cannot resolve aliases (an --alias of one name),
the front also puts the model's own name in place of an alias.

Only those requests' bodies are read whole, and parsed once; every other request passes as before, byte for
byte. A body that is chunked, larger than MAX_BODY or not a JSON object passes unchanged: llama-server answers
it as it would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from .host_guard_http import RequestHead

MAX_BODY = 32 * 1024 * 1024  # a larger request is passed on as it comes, never held in memory
_ASK_TIMEOUT_S = 5.0
# llama-server's endpoints that take a model (as llama-server spells them, with and without /v1).
MODEL_PATHS = frozenset(
    {
        "/v1/chat/completions",
        "/chat/completions",
        "/v1/completions",
        "/completions",
        "/completion",
        "/v1/embeddings",
        "/embeddings",
        "/embedding",
        "/v1/rerank",
        "/rerank",
        "/v1/reranking",
        "/reranking",
        "/infill",
        "/v1/responses",
        "/v1/messages",
        "/v1/messages/count_tokens",
    }
)
_SERVING = ("loaded", "sleeping")


class RequestModels:
    """``aliases``: alias -> model, to resolve here; empty where the router does it itself."""

    def __init__(self, upstream: str, key: str, aliases: dict[str, str]):
        self.upstream, self.aliases = upstream, aliases
        self.key_line = f"Authorization: Bearer {key}\r\n".encode() if key else b""

    def wants(self, head: RequestHead) -> bool:
        """Whether this request's body must be read before it goes on: cheap, from its head alone."""
        return (
            head.method == "POST"
            and not head.chunked
            and 0 < head.content_length <= MAX_BODY
            and head.target.split("?", 1)[0] in MODEL_PATHS
        )

    async def named(self, body: bytes) -> bytes:
        """The body, naming a model the router knows by its own name: ``body`` itself when it does already."""
        try:
            request = json.loads(body)
        except ValueError:
            return body
        if not isinstance(request, dict):
            return body
        asked = request.get("model")
        if isinstance(asked, str) and asked:
            if asked not in self.aliases:
                return body
            request["model"] = self.aliases[asked]
            return json.dumps(request).encode()
        if asked is not None and asked != "":
            return body  # not a name: llama-server says what is wrong with it
        model = await self.current()
        if model is None:
            return body
        if "model" in request or not request:
            return json.dumps({**request, "model": model}).encode()
        # The body as sent, with the name put in front: nothing else is re-encoded.
        start = body.index(b"{") + 1
        return body[:start] + b'"model":' + json.dumps(model).encode() + b"," + body[start:]

    async def current(self) -> str | None:
        """The model the router serves now (or is loading), else the one the state file names."""
        listed = await self._router_models()
        for wanted in (_SERVING, ("loading",)):
            found = next((m.get("id") for m in listed if (m.get("status") or {}).get("value") in wanted), None)
            if isinstance(found, str) and found:
                return found
        return _asked_last()

    async def _router_models(self) -> list[dict]:
        try:
            head, _, body = (await asyncio.wait_for(self._get_models(), _ASK_TIMEOUT_S)).partition(b"\r\n\r\n")
            data = json.loads(_unchunked(body) if b"chunked" in head.lower() else body).get("data")
        except (OSError, ValueError, AttributeError):  # a timeout is an OSError
            return []
        return [m for m in data if isinstance(m, dict)] if isinstance(data, list) else []

    async def _get_models(self) -> bytes:
        reader, writer = await asyncio.open_unix_connection(self.upstream)
        try:
            request = b"GET /models HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n" + self.key_line + b"\r\n"
            writer.write(request)
            await writer.drain()
            return await reader.read(-1)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def _unchunked(body: bytes) -> bytes:
    parts, rest = [], body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";", 1)[0] or b"0", 16)
        if size == 0:
            break
        parts.append(rest[:size])
        rest = rest[size + 2 :]
    return b"".join(parts)


def _asked_last() -> str | None:
    """The state file's model: the one served at start or switched to last. Read only when the router has
    none loaded (state, and psutil with it, is imported then, not at the front's start)."""
    from . import state

    found = state.read()
    return found.model if found is not None and found.model else None


async def read_body(head: RequestHead, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> bytes:
    """The request's body, whole. A client that waits for a go-ahead (Expect: 100-continue) gets it here."""
    if head.expect_continue:
        client_w.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await client_w.drain()
    return await client_r.readexactly(head.content_length)
