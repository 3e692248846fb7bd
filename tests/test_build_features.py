"""What a llama-server build can do, read from the real binary's --help once and cached by path, size and
mtime."""

from __future__ import annotations

import json
import os
import shutil

from aidevops_local.core.llamacpp import build_features
from aidevops_local.core.system import config

HELP_WITHOUT_LOCALHOST = """
--cors-origins ORIGINS                  comma-separated list of allowed origins for CORS (default: *)
                                        (env: LLAMA_ARG_CORS_ORIGINS)
--api-key KEY                           API key to use for authentication (default: none)
-lv,   --verbosity, --log-verbosity N   Set the verbosity threshold. Values:
                                         - 3: info
                                         - 4: debug
"""


def test_the_real_build_has_what_the_server_relies_on(llama_server_dir):
    build_features.forget()
    found = build_features.features(llama_server_dir / "llama-server")
    assert found == build_features.BuildFeatures(
        help_ran=True,
        cors_origins=True,
        cors_localhost=True,
        api_key=True,
        api_key_env=True,
        api_key_file=True,
        trace_verbosity=True,
        router=True,
        models_preset=True,
        models_max=True,
        sleep_idle=True,
        list_devices=True,
        no_webui=True,
        metrics=True,
        cache_ram=True,
        unix_socket=True,
        model_aliases=True,
        embedding=True,
        reranking=True,
        pooling_rank=True,
    )


def test_help_runs_once_per_binary_and_is_cached_on_disk(llama_server_dir, tmp_path, monkeypatch):
    build_features.forget()
    calls = []
    real = build_features.help_text
    monkeypatch.setattr(build_features, "help_text", lambda b: calls.append(b) or real(b))
    binary = llama_server_dir / "llama-server"
    first = build_features.features(binary)
    assert build_features.features(binary) == first and len(calls) == 1  # memoised in the process
    build_features.forget()
    assert build_features.features(binary) == first and len(calls) == 1  # then from the JSON cache
    cache = json.loads((config.paths().cache_dir / "llama-server-features.json").read_text())
    assert list(cache) == [f"{binary.resolve()}|{binary.stat().st_size}|{binary.stat().st_mtime_ns}"]

    # Another build at the same path (an update) is asked again.
    copy_dir = tmp_path / "build"
    shutil.copytree(llama_server_dir, copy_dir, symlinks=True)
    copy = copy_dir / "llama-server"
    build_features.features(copy)
    os.utime(copy, ns=(copy.stat().st_atime_ns, copy.stat().st_mtime_ns + 10**9))
    assert build_features.features(copy) == first and len(calls) == 3


def test_a_binary_that_does_not_run_has_no_features_and_is_not_cached(tmp_path):
    broken = tmp_path / "llama-server"
    broken.write_text("#!/bin/sh\nexit 3\n")
    broken.chmod(0o755)
    assert build_features.features(broken) == build_features.BuildFeatures()
    assert build_features.features(tmp_path / "missing") == build_features.BuildFeatures()
    assert not (config.paths().cache_dir / "llama-server-features.json").exists()


def test_older_help_text_without_the_localhost_value_or_trace_level():
    found = build_features.parse_help(HELP_WITHOUT_LOCALHOST)
    assert found.help_ran and found.cors_origins and found.api_key
    assert not found.cors_localhost and not found.api_key_env and not found.trace_verbosity and not found.router
    assert not found.unix_socket  # such a build is refused by serve (test_host_guard)
    assert build_features.parse_help("") == build_features.BuildFeatures()
