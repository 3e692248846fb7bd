"""The HTTP client huggingface_hub uses for us: its own settings, except that a refused connection or a host
name that does not resolve fails at once.

huggingface_hub retries those six times over ~24 s, logging each try, though retrying does not fix them (an
offline machine, a wrong HF_ENDPOINT). A connect error becomes HubUnreachable here: still an
httpx2.TransportError (core.hub and the download loop catch those), but not one of the library's retried
errors. Timeouts, dropped connections and 5xx answers keep their retries. huggingface_hub itself is imported
only when the client is made, like everywhere in core.
"""

from __future__ import annotations

import os

import httpx2


class HubUnreachable(httpx2.TransportError):
    """No connection to the Hub could be made."""


class FailFastTransport(httpx2.BaseTransport):
    def __init__(self) -> None:
        self.inner = httpx2.HTTPTransport()

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        try:
            return self.inner.handle_request(request)
        except httpx2.ConnectError as exc:
            raise HubUnreachable(str(exc), request=request) from exc

    def close(self) -> None:
        self.inner.close()


PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy")


def fail_fast_client() -> httpx2.Client:
    """As huggingface_hub's default_client_factory builds it, with FailFastTransport; with a proxy in the
    environment, the library's own client (a transport of ours would bypass the proxy, and it is the proxy
    that answers for an unreachable Hub then)."""
    from huggingface_hub.utils._http import default_client_factory, hf_request_event_hook

    if any(os.environ.get(name) for name in PROXY_VARIABLES):
        return default_client_factory()

    return httpx2.Client(
        event_hooks={"request": [hf_request_event_hook]},
        follow_redirects=True,
        timeout=None,
        transport=FailFastTransport(),
    )
