"""The framework's own helper's words (UPSTREAM.md: commands, aliases and options its users and scripts already
type) are taken by the real parser and mean what our own spelling means; a real server answers them end to end
through the framework's entry point, .agents/scripts/local-model-helper.sh."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from aidevops_local.cli import framework_words, render
from aidevops_local.cli.main import build_parser
from aidevops_local.cli.main import main as cli
from aidevops_local.core.accounting import usage
from aidevops_local.core.system.errors import ExitCode

REPO = Path(__file__).resolve().parents[1]
HELPER = REPO / ".agents" / "scripts" / "local-model-helper.sh"
TOOL = Path(sys.executable).parent / "aidevops-local"

# (the framework's words, ours)
SAME_MEANING = [
    (["start", "--model", "m"], ["serve", "m"]),
    (["serve", "--model", "m"], ["serve", "m"]),
    (["serve", "m", "--model", "m"], ["serve", "m"]),
    (
        ["start", "--model", "m", "--port", "8081", "--ctx-size", "4096", "--threads", "2", "--gpu-layers", "0"],
        ["serve", "m", "--port", "8081", "--ctx", "4096", "--threads", "2", "--gpu-layers", "0"],
    ),
    (["setup"], ["install"]),
    (["install", "--update"], ["update"]),
    (["setup", "--update", "--json", "--quiet"], ["update", "--json", "--quiet"]),
    (["download", "org/repo"], ["pull", "org/repo"]),
    (["pull", "org/repo", "--quant", "Q8_0"], ["pull", "org/repo:Q8_0"]),
    (["download", "org/repo:q8_0", "--quant", "Q8_0"], ["pull", "org/repo:q8_0"]),
    (["pull", "https://huggingface.co/org/repo", "--quant", "Q8_0"], ["pull", "https://huggingface.co/org/repo:Q8_0"]),
    (["cleanup", "--remove-stale"], ["cleanup", "--yes"]),
    (["cleanup", "--remove-stale", "--days", "60"], ["cleanup", "--yes", "--days", "60"]),
    (["inventory"], ["models"]),
    (["inventory", "--json", "--sync"], ["models", "--json"]),
    (["usage", "--since", "2026-01-01", "--json"], ["usage", "--json", "--since", "2026-01-01"]),
    (["nudge", "--json", "--quiet"], ["nudge", "-q", "--json"]),
    (["status", "--json", "--quiet"], ["status", "--json", "-q"]),
    (
        ["benchmark", "--model", "m", "--ctx-size", "2048", "--json"],
        ["benchmark", "--ctx", "2048", "--model", "m", "--json"],
    ),
]


def settled(argv: list[str]) -> dict:
    parser = build_parser()
    args = vars(framework_words.settle(parser, parser.parse_args(argv)))
    args.pop("command")  # the name typed: an alias or ours
    return args


@pytest.mark.parametrize(("theirs", "ours"), SAME_MEANING, ids=lambda argv: " ".join(argv))
def test_the_framework_s_words_mean_ours(theirs, ours):
    assert settled(theirs) == settled(ours)


def test_the_words_carry_their_values():
    serve = settled(["start", "--model", "m", "--ctx-size", "4096", "--gpu-layers", "7", "--port", "8081"])
    assert (serve["model"], serve["ctx"], serve["gpu_layers"], serve["port"]) == ("m", 4096, 7, 8081)
    assert settled(["download", "org/repo", "--quant", "Q5_K_M"])["repo"] == "org/repo:Q5_K_M"
    assert settled(["cleanup", "--remove-stale"])["yes"] is True
    assert settled(["install", "--update"])["func"].__name__ == "_update"
    assert settled(["setup"])["func"].__name__ == "_install"


DISAGREEING = [
    ["serve", "a", "--model", "b"],
    ["pull", "org/repo:Q4_K_M", "--quant", "Q8_0"],
    ["pull", "org/repo", "--quant", ""],
    ["cleanup", "--remove-stale", "--dry-run"],
    ["install", "--update", "--tag", "b1"],
    ["setup", "--update", "--backend", "cpu"],
    ["usage", "--since", "2999-01-01"],  # the future
    ["usage", "--since", "yesterday"],
    ["usage", "--since", "0001-01-01"],
    ["serve", "--gpu-layers", "-2"],
    ["serve", "--ctx-size", "0"],
]


@pytest.mark.parametrize("argv", DISAGREEING, ids=" ".join)
def test_words_that_disagree_are_a_usage_error_in_one_line(argv, capsys):
    with pytest.raises(SystemExit) as done:
        cli(argv)
    assert done.value.code == ExitCode.USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Traceback" not in captured.err
    assert "error: " in captured.err.splitlines()[-1]


def test_since_takes_a_date_or_a_date_and_time_as_well_as_a_period():
    today = usage.parse_since(date.today().isoformat())  # from local midnight
    assert timedelta(0) <= today <= timedelta(days=1)
    moment = datetime.now().astimezone() - timedelta(hours=5)
    assert abs(usage.parse_since(moment.isoformat()) - timedelta(hours=5)) < timedelta(minutes=1)
    assert abs(usage.parse_since(moment.replace(tzinfo=None).isoformat()) - timedelta(hours=5)) < timedelta(minutes=1)
    assert usage.parse_since("7d") == timedelta(days=7)


def test_usage_since_a_date_runs_and_says_since(capsys):
    assert cli(["usage", "--since", date.today().isoformat()]) == 0
    assert f"No requests recorded since {date.today().isoformat()}." in capsys.readouterr().err


def test_notes_go_to_stderr_and_quiet_silences_info(capsys, monkeypatch):
    monkeypatch.setattr(render, "quiet_mode", False)  # restored after the test, whatever it set
    assert cli(["cleanup", "--remove-stale", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["removed"] == []  # stdout stays parseable
    assert "note: --remove-stale removes without asking" in captured.err

    assert cli(["inventory", "--sync", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == []
    assert "note: --sync" in captured.err

    assert cli(["usage"]) == 0
    assert "No requests recorded yet." in capsys.readouterr().err
    assert cli(["usage", "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    assert cli(["inventory", "--sync", "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def helper(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(HELPER), *args], capture_output=True, text=True, env=env, timeout=180, stdin=subprocess.DEVNULL
    )


def test_the_framework_s_words_against_a_real_server(system_runtime, tiny_gguf, free_port, isolated_home):
    env = dict(os.environ, AIDEVOPS_LOCAL_BIN=str(TOOL))
    port = free_port()
    started = helper(
        "start", "--model", str(tiny_gguf), "--ctx-size", "2048", "--port", str(port), "--gpu-layers", "0",
        "--threads", "1", "--quiet", env=env,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == f"http://127.0.0.1:{port}/v1"
    assert started.stderr == ""  # --quiet
    try:
        server = json.loads((isolated_home / "local-models" / "server.json").read_text())
        assert (server["ctx_size"], server["gpu_layers"], server["port"]) == (2048, 0, port)

        done = helper("status", "--json", env=env)
        assert done.returncode == 0, done.stderr
        status = json.loads(done.stdout)
        assert status["running"] and status["port"] == port
        model = status["model"]

        done = helper("inventory", "--json", "--sync", env=env)
        assert done.returncode == 0, done.stderr
        assert model in [m["name"] for m in json.loads(done.stdout)]

        done = helper("benchmark", "--model", model, "--json", env=env)
        assert done.returncode == 0, done.stderr
        bench = json.loads(done.stdout)
        assert bench["model"] == model and not bench["started_server"]
        assert bench["generated_tokens"] > 0 and bench["generation_tokens_per_s"] > 0
        assert bench["prompt_tokens"] > 100 and bench["prompt_tokens_per_s"] > 0

        done = helper("usage", "--since", date.today().isoformat(), "--json", env=env)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["total"]["requests"] >= 1  # the benchmark's request
    finally:
        stopped = helper("stop", env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert helper("status", env=env).returncode == ExitCode.NOT_RUNNING

    # With no server running, benchmark serves the model for the measurement and stops it after.
    done = helper("benchmark", "--model", str(tiny_gguf), "--port", str(free_port()), "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["started_server"] is True
    assert helper("status", env=env).returncode == ExitCode.NOT_RUNNING
