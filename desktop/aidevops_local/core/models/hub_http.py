"""The HTTP client huggingface_hub uses for us: its own settings, except that a refused connection or a host
name that does not resolve fails at once.

huggingface_hub retries those six times over ~24 s, logging each try, though retrying does not fix them (an
offline machine, a wrong HF_ENDPOINT). A connect error becomes HubUnreachable here: still an
httpx2.TransportError (core.hub and the download loop catch those), but not one of the library's retried
errors. Timeouts, dropped connections and 5xx answers keep their retries. huggingface_hub itself is imported
only when the client is made, like everywhere in core.

The Hub's listings (search results, a repo's files) are read here page by page, through that client: a page's
Link "next" address comes from the network, so it is followed only on the endpoint's own origin (the request
carries the token), never twice, and for a bounded number of pages and entries.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx2

from .hub_failures import malformed, shown

DEFAULT_PORTS = {"http": 80, "https": 443}


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


def json_pages(
    url: str, params: list[tuple[str, str]], *, token: str | None, what: str, max_pages: int, max_items: int = 0
) -> Iterator[list]:
    """Each page of the Hub listing at ``url`` (a JSON list), following its Link "next" header while there is one.
    NetworkError (nothing sent) for a next page on another origin than ``url``'s, one already read, or past
    ``max_pages``; for more than ``max_items`` entries in all (0: no limit); for a page that is not a list.
    Errors of the Hub itself are huggingface_hub's (hub_errors turns them into ours)."""
    from huggingface_hub.utils import build_hf_headers, hf_raise_for_status, http_backoff

    headers = build_hf_headers(token=token)
    origin, seen, items = _origin(httpx2.URL(url)), set(), 0
    next_url: httpx2.URL | None = httpx2.URL(url)
    while next_url is not None:
        if seen:  # a next page, checked only once it is asked for: a caller that has read enough stops before
            _check_next(next_url, origin, seen, what, max_pages)
        response = http_backoff("GET", str(next_url), params=params if not seen else None, headers=headers)
        hf_raise_for_status(response)
        seen.add(str(response.request.url))
        try:
            page = response.json()
        except ValueError:
            raise malformed(f"the {what} (page {len(seen)}) is not JSON") from None
        if not isinstance(page, list):
            raise malformed(f"the {what} is {shown(page)}, not a list")
        items += len(page)
        if max_items and items > max_items:
            raise malformed(f"the {what} runs past {max_items} entries")
        next_url = _next_page(response, what)
        yield page


def _next_page(response: httpx2.Response, what: str) -> httpx2.URL | None:
    link = response.links.get("next", {}).get("url")
    try:
        return response.url.join(link) if link else None
    except httpx2.InvalidURL:
        raise malformed(f"the {what} links its next page to {shown(link)}, not an address") from None


def _check_next(url: httpx2.URL, origin: tuple, seen: set[str], what: str, max_pages: int) -> None:
    if _origin(url) != origin:
        raise malformed(
            f"the {what} links its next page to another host ({shown(str(url))})",
            hint="That page was not requested: the token goes only to the Hub. Check HF_ENDPOINT.",
        )
    if str(url) in seen:
        raise malformed(f"the {what} links back to a page already read")
    if len(seen) >= max_pages:
        raise malformed(f"the {what} runs past {max_pages} pages")


def _origin(url: httpx2.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port or DEFAULT_PORTS.get(url.scheme)
