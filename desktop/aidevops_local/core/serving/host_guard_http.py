"""The Host-checking front's HTTP side: which Host values reach the model (the policy), and a request head
read strictly (one request line, one Host, one way to find the body's end) so that nothing ambiguous passes.
Pure functions on bytes and names, apart from host_guard_front.py, which relays the connections, and
host_guard.py, which runs the front as a process.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass

SETTING = "allowed_hosts"
MAX_HEAD_BYTES = 64 * 1024  # llama-server's own limit on a request head is of this order
_CLIENT_KEY_HEADERS = (b"authorization", b"x-api-key")


# ---- the policy: which Host values reach the model -------------------------------------------------------


@dataclass(frozen=True)
class HostPolicy:
    names: frozenset[str]  # lower-case names and addresses allowed besides the loopback ones
    any_address: bool = False  # bound to 0.0.0.0 or ::, so reached by any of the machine's addresses

    @classmethod
    def for_listening(cls, host: str, allowed_hosts: list[str]) -> HostPolicy:
        """Loopback names and addresses always; the address the server was told to bind, and the names the
        user allowed. A bind to every address allows every IP literal: an address cannot be rebound, only a
        name can."""
        names = {normalise(n) for n in allowed_hosts}
        bound = normalise(host)
        names.add(bound)
        try:
            any_address = ipaddress.ip_address(bound).is_unspecified
        except ValueError:
            any_address = False
        return cls(names=frozenset(n for n in names if n), any_address=any_address)

    def allows(self, name: str) -> bool:
        if name == "localhost" or name in self.names:
            return True
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            return False
        return address.is_loopback or self.any_address


def normalise(name: str) -> str:
    """A host name or address as compared: lower case, no brackets, no trailing dot."""
    name = name.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    return name.rstrip(".")


def host_of(value: str) -> str | None:
    """The name in a Host header (``name``, ``name:port``, ``[v6]``, ``[v6]:port``); None when malformed."""
    value = value.strip()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[1:end], value[end + 1 :]
        if rest and not (rest.startswith(":") and rest[1:].isascii() and rest[1:].isdigit()):
            return None
        try:
            ipaddress.IPv6Address(name.split("%")[0])
        except ValueError:
            return None
        return name.lower()
    name, _, port = value.partition(":")
    if (port or value.endswith(":")) and not (port.isascii() and port.isdigit()):
        return None
    if not name or any(c in name for c in " \t/\\@?#[]%"):
        return None
    return normalise(name)


def refusal_message(host: str) -> str:
    from ..system import config

    shown = host if len(host) <= 100 else host[:100] + "..."
    return (
        f"Host {shown!r} is not allowed: this server answers only requests addressed to localhost or a "
        f"loopback address (protection against DNS rebinding). To allow this name, add it to "
        f"{SETTING} in {config.paths().config_file} and restart the server."
    )


# ---- the request head -------------------------------------------------------------------------------------


class Refusal(Exception):
    def __init__(self, status: int, reason: str, message: str):
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message

    def response(self) -> bytes:
        kind = "forbidden" if self.status == 403 else "invalid_request_error"
        body = json.dumps({"error": {"code": self.status, "message": self.message, "type": kind}}).encode()
        return (
            f"HTTP/1.1 {self.status} {self.reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode() + body


def _bad(message: str) -> Refusal:
    return Refusal(400, "Bad Request", message)


@dataclass(frozen=True)
class RequestHead:
    host: str | None  # the Host header's value, None when absent
    content_length: int
    chunked: bool
    method: str = ""
    target: str = ""  # the request line's path (and query)
    expect_continue: bool = False  # Expect: 100-continue: the client waits for a go-ahead before its body


def parse_head(head: bytes) -> RequestHead:
    """Checks what the front relies on: one request line, well-formed header lines, one Host, one way to
    find the body's end. Anything ambiguous (which a smuggled request would hide in) is refused."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes any byte
        raise _bad("The request head is not readable.") from None
    lines = text[:-4].split("\r\n")
    if any("\r" in line or "\n" in line or "\0" in line for line in lines):
        raise _bad("The request head has a bare CR or LF; lines must end with CRLF.")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[0].isalpha():
        raise _bad("The request line is not 'METHOD /path HTTP/1.x'.")
    if not (parts[1].startswith("/") or (parts[1] == "*" and parts[0] == "OPTIONS")):
        raise _bad("Only origin-form request targets (a path starting with /) are accepted.")
    hosts, lengths, encodings, expect = [], [], [], False
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip() or " " in name or "\t" in name:
            raise _bad("A header line is malformed (no name, or space before its colon, or folded).")
        key = name.lower()
        if key == "host":
            hosts.append(value.strip())
        elif key == "content-length":
            lengths.append(value.strip())
        elif key == "transfer-encoding":
            encodings.append(value.strip().lower())
        elif key == "expect":
            expect = value.strip().lower() == "100-continue"
    if len(hosts) > 1:
        raise _bad("The request has more than one Host header.")
    if encodings:
        if lengths:
            raise _bad("The request has both Transfer-Encoding and Content-Length.")
        if encodings != ["chunked"]:
            raise Refusal(501, "Not Implemented", "Only the chunked transfer coding is accepted.")
        return RequestHead(hosts[0] if hosts else None, 0, True, parts[0], parts[1], expect)
    if len(set(lengths)) > 1 or any(not (v.isascii() and v.isdigit()) for v in lengths):
        raise _bad("The request's Content-Length is not one number.")
    return RequestHead(
        hosts[0] if hosts else None, int(lengths[0]) if lengths else 0, False, parts[0], parts[1], expect
    )


def with_key(head_bytes: bytes, key_line: bytes) -> bytes:
    """The request head with the client's own key headers replaced by ``key_line`` (a parsed head: CRLF lines)."""
    lines = head_bytes[:-4].split(b"\r\n")
    kept = [lines[0], *(ln for ln in lines[1:] if ln.split(b":", 1)[0].lower() not in _CLIENT_KEY_HEADERS)]
    return b"\r\n".join(kept) + b"\r\n" + key_line + b"\r\n"


def with_body_length(head_bytes: bytes, length: int) -> bytes:
    """The request head for a body of ``length`` bytes the front has read in full: its Content-Length set, and
    no Expect header (the front answered it: llama-server's own go-ahead would reach the client twice)."""
    lines = head_bytes[:-4].split(b"\r\n")
    kept = [lines[0], *(ln for ln in lines[1:] if ln.split(b":", 1)[0].lower() not in (b"content-length", b"expect"))]
    return b"\r\n".join(kept) + b"\r\nContent-Length: " + str(length).encode() + b"\r\n\r\n"


def check_host(head: RequestHead, policy: HostPolicy) -> None:
    if not head.host:  # HTTP/1.0 clients, and an empty Host (allowed by HTTP/1.1): not a browser's request
        return
    name = host_of(head.host)
    if name is None:
        raise _bad("The Host header is malformed.")
    if not policy.allows(name):
        raise Refusal(403, "Forbidden", refusal_message(name))
