"""The names the framework sends reach the right model: a catalog model's short name (qwen2.5-coder-7b), its
file's stem, the model's own name, or no name at all (the loaded model), against the real llama-server, in
router mode (where the router resolves aliases, and where an older build leaves it to the front) and in
single-model mode."""

from __future__ import annotations

import json
import shutil
import socket

import httpx
import pytest

from aidevops_local.cli.main import main as cli
from aidevops_local.core.llamacpp import build_features
from aidevops_local.core.models import inventory, library, model_names
from aidevops_local.core.serving import router, server
from aidevops_local.core.serving import state as server_state
from tests.serving import serving_settings
from tests.waiting import wait_for

CODER_FILE = "Qwen2.5-Coder-7B-Instruct-Q4_K_M.gguf"  # the catalog's file for "Qwen2.5 Coder 7B Instruct"
CODER_STEM, CODER_SHORT = CODER_FILE[:-5], "qwen2.5-coder-7b"


@pytest.fixture
def two_models(isolated_home, tiny_gguf, tmp_path):
    """alpha in the models folder, and "coder": the catalog's Qwen file kept elsewhere under another name (as
    the old helper's inventory names its models), so its name, stem and short name all differ."""
    folder = isolated_home / "models"
    folder.mkdir(exist_ok=True)
    shutil.copy(tiny_gguf, folder / "alpha.gguf")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(tiny_gguf, elsewhere / CODER_FILE)
    inventory.remember(library.model_on_disk("coder", elsewhere / CODER_FILE))
    return folder


def chat(endpoint: str, model: str | None) -> httpx.Response:
    body = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    if model is not None:
        body["model"] = model
    return httpx.post(f"{endpoint}/chat/completions", json=body, timeout=60)


def answered_by(endpoint: str, model: str | None) -> str:
    reply = chat(endpoint, model)
    assert reply.status_code == 200, reply.text
    return reply.json()["model"]


def status_json(capsys) -> dict:
    capsys.readouterr()
    cli(["status", "--json"])
    return json.loads(capsys.readouterr().out)


def check_router_names(endpoint: str, capsys) -> None:
    assert answered_by(endpoint, CODER_SHORT) == "coder"
    assert answered_by(endpoint, CODER_STEM) == "coder"
    assert answered_by(endpoint, None) == "coder"  # no name: the model loaded now
    assert answered_by(endpoint, "alpha") == "alpha"
    assert answered_by(endpoint, "") == "alpha"
    shown = status_json(capsys)
    assert shown["names"] == {"alpha": ["alpha"], "coder": ["coder", CODER_STEM, CODER_SHORT]}
    # None loaded: the model the state file names (the one served at start).
    base = endpoint.removesuffix("/v1")
    router.unload(base, "alpha")
    wait_for(lambda: router.loaded(base) == [], what="alpha to unload")
    assert answered_by(endpoint, None) == server_state.read().model == "alpha"


def test_a_router_answers_to_short_names_stems_and_no_name(system_runtime, two_models, port, capsys):
    served = server.serve("alpha", port=port)
    try:
        listed = httpx.get(f"{served.endpoint}/models", timeout=10).json()["data"]
        assert {m["id"]: sorted(m.get("aliases", [])) for m in listed} == {
            "alpha": [],
            "coder": sorted([CODER_STEM, CODER_SHORT]),
        }
        check_router_names(served.endpoint, capsys)
    finally:
        server.stop(grace=2)


def test_where_the_build_takes_no_aliases_the_front_resolves_them(
    system_runtime, two_models, port, capsys, monkeypatch
):
    real = build_features.features
    monkeypatch.setattr(
        build_features,
        "features",
        lambda binary: build_features.BuildFeatures(**{**real(binary).__dict__, "model_aliases": False}),
    )
    served = server.serve("alpha", port=port)
    try:
        assert "alias =" not in _preset_text()  # the router cannot tell them: the front puts the model's name
        check_router_names(served.endpoint, capsys)
    finally:
        server.stop(grace=2)


def _preset_text() -> str:
    from aidevops_local.core.system import config

    return config.paths().router_presets.read_text()


def test_a_client_that_waits_for_a_go_ahead_gets_one_and_then_its_answer(system_runtime, two_models, port):
    server.serve("alpha", port=port)
    try:
        body = json.dumps({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}).encode()
        with socket.create_connection(("127.0.0.1", port), timeout=60) as conn:
            head = (
                f"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost:{port}\r\nContent-Type: application/json\r\n"
                f"Expect: 100-continue\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            conn.sendall(head.encode())
            assert conn.recv(64).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
            conn.sendall(body)
            answer = b""
            while chunk := conn.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200") and answer.count(b"100 Continue") == 0
        body_sent = answer.partition(b"\r\n\r\n")[2]  # chunked: the JSON is between its size lines
        assert json.loads(body_sent[body_sent.index(b"{") : body_sent.rindex(b"}") + 1])["model"] == "alpha"
    finally:
        server.stop(grace=2)


def test_a_short_name_two_files_could_claim_goes_to_the_catalogs_own_file(system_runtime, two_models, port, capsys):
    shutil.copy(two_models / "alpha.gguf", two_models / "qwen2.5-coder-7b-instruct-q8_0.gguf")
    served = server.serve("alpha", port=port)
    try:
        assert answered_by(served.endpoint, CODER_SHORT) == "coder"
        shown = status_json(capsys)
        assert shown["names"]["qwen2.5-coder-7b-instruct-q8_0"] == ["qwen2.5-coder-7b-instruct-q8_0"]
        assert shown["name_notes"] == [
            f"{CODER_SHORT!r} names several models; it goes to coder (not qwen2.5-coder-7b-instruct-q8_0)."
        ]
        assert cli(["status"]) == 0
        assert "goes to coder" in capsys.readouterr().err
    finally:
        server.stop(grace=2)


def test_a_single_model_server_answers_to_any_name_and_lists_its_own(system_runtime, two_models, port, capsys):
    serving_settings(router_mode=False, port=port)
    served = server.serve("coder", port=port)
    try:
        assert not served.router
        for name in (CODER_SHORT, CODER_STEM, None):
            assert answered_by(served.endpoint, name) == "coder"
        assert status_json(capsys)["names"] == {"coder": ["coder", CODER_STEM, CODER_SHORT]}
        assert cli(["status"]) == 0
        shown = capsys.readouterr().out
        assert "also answers to" in shown and f"{CODER_STEM}, {CODER_SHORT}" in shown
    finally:
        server.stop(grace=2)


def test_an_alias_no_catalog_file_decides_goes_to_one_model_by_a_fixed_rule(tiny_gguf, tmp_path):
    picks = []
    for order in (("b", "a"), ("a", "b")):
        models = []
        for name in order:
            path = tmp_path / name / "Qwen2.5-Coder-7B-Instruct-Q8_0.gguf"
            path.parent.mkdir(exist_ok=True)
            shutil.copy(tiny_gguf, path)
            models.append(library.model_on_disk(name, path))
        picks.append(model_names.assign(models))
    assert picks[0] == picks[1]
    assert picks[0].aliases == {"a": ["Qwen2.5-Coder-7B-Instruct-Q8_0", CODER_SHORT]}
    assert len(picks[0].notes) == 2 and all("goes to a (not b)" in note for note in picks[0].notes)
