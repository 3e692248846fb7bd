"""DNS rebinding: the server answers only requests addressed to a loopback name or address (or a name the user
allowed), checked by the Host-checking front (core/serving/host_guard.py) in front of the real llama-server started by
`serve`. Raw sockets where the request must be exactly what a browser or an attacker would send."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import time
from pathlib import Path

import httpx
import psutil
import pytest

from aidevops_local.cli.main import main as cli
from aidevops_local.core.serving import host_guard, launch, server
from aidevops_local.core.serving import state as server_state
from aidevops_local.core.system import config
from aidevops_local.core.system.errors import ConfigError, ExitCode, Refused
from tests.serving import serving_settings, with_model
from tests.usage_server import chat as usage_chat
from tests.usage_server import rows, triples


@pytest.fixture
def running(system_runtime, tiny_gguf, port):
    status = server.serve(str(tiny_gguf), port=port)
    yield status
    server.stop(grace=2)


def raw(port: int, *requests: bytes, host: str = "127.0.0.1") -> bytes:
    """Send the requests on one connection, half-close, and read until the server closes it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.settimeout(60)
        sock.connect((host, port))
        for request in requests:
            sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def get(path: str, host: str | None, *, version: str = "1.1", extra: str = "") -> bytes:
    host_line = f"Host: {host}\r\n" if host is not None else ""
    return f"GET {path} HTTP/{version}\r\n{host_line}{extra}\r\n".encode()


def statuses(data: bytes) -> list[int]:
    """The status of each response in a connection's bytes (an answer starts right after the last body)."""
    return [int(code) for code in re.findall(rb"HTTP/1\.[01] (\d{3}) ", data)]


def chat_body(base: str, max_tokens: int = 4, **extra) -> dict:
    return with_model({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": max_tokens, **extra}, base)


def test_a_rebinding_host_is_refused_naming_the_setting_and_loopback_names_are_served(running):
    port, base = running.port, f"http://127.0.0.1:{running.port}"
    body = chat_body(base)

    refused = httpx.post(
        f"{base}/v1/chat/completions", json=body, headers={"Host": f"attacker.example:{port}"}, timeout=60
    )
    assert refused.status_code == 403
    message = refused.json()["error"]["message"]
    assert "attacker.example" in message and "allowed_hosts" in message and str(config.paths().config_file) in message
    assert "\n" not in message and "choices" not in refused.text
    for evil in ("attacker.example", "localhost.attacker.example", "127.0.0.1.nip.io:80", "0x7f000001.example"):
        assert httpx.get(f"{base}/v1/models", headers={"Host": evil}, timeout=10).status_code == 403, evil

    for host in (
        "localhost",
        f"localhost:{port}",
        "localhost:1",
        "127.0.0.1",
        f"127.0.0.1:{port}",
        "127.0.0.1:9",
        "[::1]",
        f"[::1]:{port}",
        "LOCALHOST:80",
        "127.1.2.3:5",
    ):
        answer = httpx.post(f"{base}/v1/chat/completions", json=body, headers={"Host": host}, timeout=60)
        assert answer.status_code == 200, host
        assert answer.json()["choices"][0]["message"]["role"] == "assistant"
    # No Host header at all (HTTP/1.0 and 1.1 clients that send none): served.
    for version in ("1.0", "1.1"):
        assert statuses(raw(port, get("/health", None, version=version, extra="Connection: close\r\n"))) == [200]


def test_a_name_in_allowed_hosts_is_served_and_others_still_refused(system_runtime, tiny_gguf, port):
    serving_settings(allowed_hosts=["mybox.lan", "Other.Example."])
    status = server.serve(str(tiny_gguf), port=port)
    try:
        base = f"http://127.0.0.1:{port}"
        for host in (f"mybox.lan:{port}", "MYBOX.LAN", "other.example:1"):
            answer = httpx.post(f"{base}/v1/chat/completions", json=chat_body(base), headers={"Host": host}, timeout=60)
            assert answer.status_code == 200, host
        for host in ("attacker.example", "sub.mybox.lan", "mybox.lan.attacker.example"):
            assert httpx.get(f"{base}/health", headers={"Host": host}, timeout=10).status_code == 403, host
        assert status.running
    finally:
        server.stop(grace=2)


def test_streamed_chat_goes_through_the_front_and_usage_records_it(running):
    base = f"http://127.0.0.1:{running.port}"
    with httpx.Client(timeout=60, headers={"Host": f"localhost:{running.port}"}) as client:
        events = []
        body = chat_body(base, max_tokens=24, stream=True)
        with client.stream("POST", f"{base}/v1/chat/completions", json=body) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = [line for line in response.iter_lines() if line.startswith("data: ")]
        assert events[-1] == "data: [DONE]" and len(events) > 10  # token by token, not one buffered blob
        answers = [usage_chat(client, base, f"counted {i}", max_tokens=3 + i, stream=bool(i % 2)) for i in range(4)]
    with httpx.Client(timeout=60) as client:  # and a rebinding request is not a usage row
        assert (
            client.post(
                f"{base}/v1/chat/completions", json=chat_body(base), headers={"Host": "attacker.example"}
            ).status_code
            == 403
        )
    server.stop(grace=2)
    found = rows()
    assert len(found) == 5  # the streamed chat and the four counted ones; the refused one never reached it
    assert triples(answers) <= triples(found)


def test_every_request_on_a_kept_alive_connection_is_checked(running):
    port = running.port
    data = raw(port, get("/health", "localhost"), get("/v1/models", "attacker.example"), get("/health", "localhost"))
    assert statuses(data) == [200, 403]  # the first answered, the second refused, the connection then closed
    assert data.index(b'"status":"ok"') < data.index(b"403 Forbidden")
    assert b"allowed_hosts" in data and b'"data"' not in data


def test_ambiguous_requests_are_refused_before_they_reach_the_model(running):
    port = running.port

    def one(request: bytes) -> int:
        return statuses(raw(port, request))[0]

    assert one(b"GET /health HTTP/1.1\r\nHost: localhost\r\nHost: attacker.example\r\n\r\n") == 400
    assert (
        one(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        )
        == 400
    )
    assert (
        one(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\n"
            b"Content-Length: 5\r\n\r\nabcde"
        )
        == 400
    )
    assert one(b"GET /health HTTP/1.1\r\nHost : attacker.example\r\n\r\n") == 400
    assert one(b"GET /health HTTP/1.1\r\nX: a\nHost: attacker.example\r\n\r\n") == 400
    assert one(b"GET http://attacker.example/health HTTP/1.1\r\nHost: localhost\r\n\r\n") == 400
    assert one(b"GET /health HTTP/1.1\r\nHost: localhost\r\nX: " + b"a" * 70000 + b"\r\n\r\n") == 431
    assert one(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip\r\n\r\n") == 501
    assert (
        one("POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Length: \u00b2\r\n\r\nab".encode()) == 400
    )  # a digit to str.isdigit, not to int()
    oversized = b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert statuses(raw(port, oversized + b"1;" + b"x" * 70000 + b"\r\n"))[-1] == 431


def test_chunked_request_bodies_are_passed_through(running):
    base = f"http://127.0.0.1:{running.port}"
    payload = json.dumps(chat_body(base)).encode()

    def chunks():
        yield payload[:10]
        yield payload[10:]

    answer = httpx.post(
        f"{base}/v1/chat/completions", content=chunks(), timeout=60, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 200 and answer.json()["choices"]


def test_llama_server_listens_only_on_its_private_socket(running):
    state = server_state.read()
    llama = psutil.Process(state.pid)
    assert [c for c in llama.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN] == []
    sock = Path(state.upstream)
    assert stat.S_ISSOCK(sock.stat().st_mode)
    assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700 and sock.parent.stat().st_uid == os.getuid()
    front = psutil.Process(state.guard_pid)
    listening = [c.laddr for c in front.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert [(a.ip, a.port) for a in listening] == [("127.0.0.1", running.port)]
    assert running.rss_bytes >= llama.memory_info().rss + front.memory_info().rss  # status counts the front


def test_a_crashed_front_is_the_server_down_and_serve_starts_afresh(running, tiny_gguf):
    state = server_state.read()
    os.kill(state.guard_pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while server.status().state != "crashed" and time.monotonic() < deadline:
        time.sleep(0.05)
    status = server.status()
    assert status.state == "crashed" and not status.running and "front" in status.message
    again = server.serve(str(tiny_gguf), port=running.port)  # what the tray's Restart does
    assert again.running and again.pid != state.pid
    assert not psutil.pid_exists(state.pid) or psutil.Process(state.pid).status() == psutil.STATUS_ZOMBIE
    assert httpx.get(f"http://127.0.0.1:{running.port}/health", timeout=10).status_code == 200


def test_the_front_exits_when_llama_server_does(running):
    state = server_state.read()
    front = psutil.Process(state.guard_pid)
    os.kill(state.pid, signal.SIGKILL)
    front.wait(10)  # the port is free again for the next serve
    assert server.status().state == "crashed"
    launch.check_port_free("127.0.0.1", running.port)


def test_stop_ends_the_front_and_frees_the_port(running):
    state = server_state.read()
    assert server.stop(grace=2).stopped
    assert host_guard.owned(state.guard_pid, state.guard_create_time) is None
    assert not Path(state.upstream).exists()
    launch.check_port_free("127.0.0.1", running.port)


def test_bad_allowed_hosts_are_a_configuration_error(capsys):
    for bad in (["http://mybox.lan"], ["mybox.lan:8080"], ["*.example"], [""], [3]):
        config.paths().config_file.parent.mkdir(parents=True, exist_ok=True)
        config.paths().config_file.write_text(f"allowed_hosts = {json.dumps(bad)}\n")
        with pytest.raises(ConfigError, match="allowed_hosts"):
            config.load_settings()
    assert cli(["serve"]) == ExitCode.CONFIG
    err = capsys.readouterr().err
    assert "allowed_hosts" in err and "Traceback" not in err
    config.paths().config_file.write_text('allowed_hosts = ["mybox.lan", "192.168.1.20", "[fe80::1]", "my_box"]\n')
    assert config.load_settings().allowed_hosts == ["mybox.lan", "192.168.1.20", "[fe80::1]", "my_box"]


def test_extra_server_args_cannot_move_llama_server_past_the_front(system_runtime, tiny_gguf, port):
    serving_settings()
    path = config.paths().config_file
    text = re.sub(r"(?m)^extra_server_args = .*$", 'extra_server_args = ["--host", "0.0.0.0"]', path.read_text())
    path.write_text(text if "0.0.0.0" in text else text + 'extra_server_args = ["--host", "0.0.0.0"]\n')
    with pytest.raises(ConfigError, match="--host"):
        launch.plan_launch(str(tiny_gguf), port=port)


def test_host_header_parsing():
    assert host_guard.host_of("LocalHost:8080") == "localhost"
    assert host_guard.host_of("[::1]:80") == "::1" and host_guard.host_of("[::1]") == "::1"
    assert host_guard.host_of("example.com.") == "example.com"
    for malformed in ("a b", "x:y", "[::1", "[::1]x", "[nothost]", "a/b", "user@host", "host:"):
        assert host_guard.host_of(malformed) is None, malformed
    policy = host_guard.HostPolicy.for_listening("127.0.0.1", [])
    assert policy.allows("localhost") and policy.allows("127.0.0.1") and policy.allows("::1")
    assert not policy.allows("attacker.example") and not policy.allows("192.168.1.20")
    everywhere = host_guard.HostPolicy.for_listening("0.0.0.0", ["mybox.lan"])
    assert everywhere.allows("192.168.1.20") and everywhere.allows("mybox.lan")
    assert not everywhere.allows("attacker.example")


def test_in_an_appimage_the_front_runs_the_image_not_its_temporary_mount(monkeypatch, tmp_path):
    """The AppImage's mount goes when `serve` exits; a front run from it would lose its own files."""
    image = tmp_path / "aidevops-local-0.1.0-x86_64.AppImage"
    monkeypatch.setattr(host_guard.sys, "frozen", True, raising=False)
    monkeypatch.setattr(host_guard.sys, "executable", "/tmp/.mount_aidevoQ3xZ9k/usr/bin/aidevops-local")
    monkeypatch.setenv("APPIMAGE", str(image))
    assert host_guard.command()[:2] == [str(image), "--host-guard"]
    monkeypatch.delenv("APPIMAGE")
    assert host_guard.command()[:2] == ["/tmp/.mount_aidevoQ3xZ9k/usr/bin/aidevops-local", "--host-guard"]


def test_a_build_that_cannot_listen_on_a_unix_socket_is_refused_before_anything_starts(
    system_runtime, tiny_gguf, port, monkeypatch
):
    """Older builds read `--host x.sock` as a host name and fail with "couldn't bind", which reads like a taken
    port: the tool says what is wrong instead."""
    from aidevops_local.core.llamacpp import build_features

    old = build_features.BuildFeatures(help_ran=True, cors_origins=True, api_key=True)
    monkeypatch.setattr(build_features, "features", lambda binary: old)
    with pytest.raises(Refused, match="UNIX socket"):
        server.serve(str(tiny_gguf), port=port)
    assert server_state.read() is None


def test_a_routers_model_instance_port_needs_the_runs_key_that_only_the_front_adds(running):
    """In router mode llama-server starts the model on a 127.0.0.1 port of its own, outside the front: a page
    that rebinds its name to that port must get nothing, while clients of the front need no key (a dummy one,
    as OpenAI clients send, is replaced)."""
    from aidevops_local.core.system import listening

    state = server_state.read()
    assert state.router
    [instance] = psutil.Process(state.pid).children()
    [child] = listening.tcp_listen_addresses([instance.pid])
    body = chat_body(f"http://127.0.0.1:{running.port}")
    direct = httpx.post(
        f"http://127.0.0.1:{child.port}/v1/chat/completions",
        json=body,
        headers={"Host": f"attacker.example:{child.port}"},
        timeout=60,
    )
    assert direct.status_code == 401 and "choices" not in direct.text
    through = httpx.post(
        f"http://127.0.0.1:{running.port}/v1/chat/completions",
        json=body,
        headers={"Authorization": "Bearer sk-no-key-required"},
        timeout=60,
    )
    assert through.status_code == 200 and through.json()["choices"]
    assert not [arg for arg in psutil.Process(state.guard_pid).cmdline() + instance.cmdline() if "Bearer" in arg]


def test_the_key_replaces_whatever_key_the_client_sent():
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer mine\r\n"
        b"x-api-key: mine\r\nContent-Length: 2\r\n\r\n"
    )
    keyed = host_guard.with_key(head, b"Authorization: Bearer RUN\r\n")
    assert keyed == (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n"
        b"Authorization: Bearer RUN\r\n\r\n"
    )
    assert host_guard.parse_head(keyed).content_length == 2


def test_the_front_never_imports_from_the_folder_serve_runs_in(system_runtime, tiny_gguf, port, tmp_path, monkeypatch):
    """`python -m` puts the current folder first on sys.path: a json.py there would run inside the front."""
    folder = tmp_path / "a-cloned-repo"
    folder.mkdir()
    marker = tmp_path / "ran"
    (folder / "json.py").write_text(f"open({str(marker)!r}, 'w').close()\nraise SystemExit('not the json module')\n")
    monkeypatch.chdir(folder)
    status = server.serve(str(tiny_gguf), port=port)
    try:
        assert status.state == "running" and not marker.exists()
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).status_code == 200
    finally:
        server.stop(grace=2)
