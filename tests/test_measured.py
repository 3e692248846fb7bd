"""Measured figures: a real llama-server serves a real model, usage ingestion records its speeds and memory
per model, machine, backend and plan, `models --json` and `status --json` show them beside the prediction,
and estimates of similar models are corrected by what was measured here (and never by another machine's)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from aidevops_local.cli.main import main as cli
from aidevops_local.core.accounting import usage
from aidevops_local.core.accounting.request_log import LogReader, format_header
from aidevops_local.core.database import migrations, store
from aidevops_local.core.models import measured
from aidevops_local.core.models.model_shape import guess_shape
from aidevops_local.core.serving import health, server
from aidevops_local.core.serving import state as server_state
from aidevops_local.core.system import hardware
from aidevops_local.core.system.config import paths
from tests.usage_server import wait_logged

PROMPTS = ("Tell me a short story about a cat.", "Name three colours of the sea.", "Why is the sky blue at noon?")


def rows() -> list[dict]:
    cursor = store.database().execute_sql("SELECT * FROM model_measurements ORDER BY file, backend")
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]


@pytest.fixture
def smol_served(system_runtime, isolated_home, smollm2_gguf, port):
    """SmolLM2 served by the router (1 thread, 2048 context, one slot), after three distinct requests."""
    folder = isolated_home / "models"
    folder.mkdir(exist_ok=True)
    shutil.copy(smollm2_gguf, folder / "smol.gguf")
    status = server.serve("smol", port=port)
    for prompt in PROMPTS:
        body = {"model": "smol", "messages": [{"role": "user", "content": prompt}], "max_tokens": 16}
        assert httpx.post(f"{status.endpoint}/chat/completions", json=body, timeout=120).status_code == 200
    wait_logged(len(PROMPTS))
    yield folder / "smol.gguf"
    server.stop(grace=2)


def test_served_requests_are_measured_once_per_model_machine_and_plan(smol_served, monkeypatch, tmp_path, capsys):
    assert usage.ingest(live_log=server_state.live_log(), memory_of=health.model_memory) == 3
    (row,) = rows()
    assert (row["file"], row["model"], row["size_bytes"]) == ("smol.gguf", "smol", smol_served.stat().st_size)
    assert row["machine"] == measured.machine_id() and row["backend"] == "cpu"
    # The plan the router gave the instance, read from its spawn lines.
    assert (row["ctx_size"], row["parallel"], row["gpu_layers"], row["threads"]) == (2048, 1, 0, 1)
    assert row["requests"] == 3 and row["architecture"] == "llama" and row["active_bytes"] > 0
    assert row["tok_per_sec"] > 0 and row["prompt_tok_per_sec"] > 0
    assert row["gen_tokens"] > 0 and row["prompt_tokens"] >= 3 * measured.MIN_PROMPT_TOKENS
    assert row["peak_rss_bytes"] > 50 * 2**20 and row["peak_vram_bytes"] is None  # CPU: no device memory

    # Reading the log again from its start adds no request, to the rows or to the figures.
    store.write(store.LogCursor.delete().execute)
    assert usage.ingest(live_log=server_state.live_log(), memory_of=health.model_memory) == 0
    assert rows()[0]["requests"] == 3

    # The next plan for this model on this machine rests on the measurement.
    figure = measured.correct(1.0, 2.0, guess_shape(size_bytes=10**8), backend="cpu", file=smol_served)
    assert figure == measured.SpeedFigure(row["tok_per_sec"], row["prompt_tok_per_sec"], measured.MEASURED)

    assert cli(["status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["model"] == "smol" and status["predicted"]["ram_bytes"] > 0
    # Predicted for the plan served (the settings': 2048 tokens, one slot), beside what was measured under it.
    assert (status["predicted"]["ctx_size"], status["predicted"]["parallel"]) == (2048, 1)
    assert status["predicted"]["tokens_per_s"] > 0 and status["predicted"]["basis"] == "estimated"
    assert status["measured"]["tokens_per_s"] == row["tok_per_sec"] and status["measured"]["rss_bytes"] > 0
    assert status["measured"]["plan"] == {"ctx_size": 2048, "parallel": 1, "gpu_layers": 0, "threads": 1}
    assert status["speed"]["basis"] == "measured here"

    assert cli(["models", "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["name"] == "smol" and listed["predicted"]["vram_bytes"] == 0
    assert listed["measured"]["prompt_tokens_per_s"] == row["prompt_tok_per_sec"]

    # Another machine (a profile) has measured nothing: it plans with the estimate alone.
    profile = tmp_path / "other.json"
    profile.write_text(json.dumps({"os": "linux", "arch": "x64", "physical_cores": 64, "ram_gb": 512}))
    monkeypatch.setenv("AIDEVOPS_HARDWARE_PROFILE", str(profile))
    assert measured.machine_id() != row["machine"]
    assert measured.lookup(smol_served, backend="cpu") is None
    other = measured.correct(7.0, None, guess_shape(size_bytes=10**8), backend="cpu", file=smol_served)
    assert other == measured.SpeedFigure(7.0, None, measured.ESTIMATED)


def test_stop_records_the_memory_of_the_model_it_stops(smol_served):
    """The tray or the CLI may never have ingested while the model ran: stop does, before the process goes."""
    server.stop(grace=2)
    (row,) = rows()
    assert row["requests"] == 3 and row["peak_rss_bytes"] > 50 * 2**20


# ---- the arithmetic, with rows recorded here -------------------------------------------------------------


def target(file: str, architecture: str, active: float, gen: float, prompt: float | None = None, **changes):
    hw = hardware.detect()
    base = measured.Target(
        model=file.removesuffix(".gguf"),
        file=file,
        size_bytes=int(active),
        machine=measured.machine_id(hw),
        machine_desc=measured.machine_desc(hw),
        backend="cpu",
        plan=measured.Plan(4096, 1, 0, 4),
        architecture=architecture,
        active_bytes=int(active),
        estimated_tok_per_sec=gen,
        estimated_prompt_tok_per_sec=prompt,
    )
    return replace(base, **changes)


def batch(tokens_per_s: float, prompt_per_s: float = 0.0, tokens: int = 1000) -> measured.Batch:
    prompt_ms = tokens / prompt_per_s * 1e3 if prompt_per_s else 0.0
    return measured.Batch(1, tokens, tokens / tokens_per_s * 1e3, tokens if prompt_per_s else 0, prompt_ms)


def test_similar_models_correct_the_estimate_by_their_measured_ratio():
    store.write(measured.record, target("a.gguf", "qwen2", 1.0e9, gen=100, prompt=400), batch(50, 200))  # x0.5
    store.write(measured.record, target("b.gguf", "llama", 1.5e9, gen=80, prompt=None), batch(20))  # x0.25
    # Not similar, or not here: another family 25x larger, another backend, another machine.
    store.write(measured.record, target("big.gguf", "gemma3", 3.0e10, gen=10), batch(30))
    store.write(measured.record, target("c.gguf", "qwen2", 1.0e9, gen=10, backend="vulkan"), batch(30))
    store.write(measured.record, target("d.gguf", "qwen2", 1.0e9, gen=10, machine="elsewhere"), batch(30))
    shape = replace(guess_shape(size_bytes=int(1.2e9)), architecture="mistral")

    figure = measured.correct(60.0, 300.0, shape, backend="cpu", file="new.gguf")
    assert figure.tokens_per_s == pytest.approx(60.0 * (0.5 * 0.25) ** 0.5, abs=0.1)
    assert figure.prompt_tokens_per_s == pytest.approx(300.0 * 0.5, abs=0.1)  # only a.gguf has a prompt pair
    assert figure.basis == "estimated, corrected by 2 measured models here"
    # The same family reaches further (within 8x): a 6 GB qwen2 is corrected by a.gguf alone.
    qwen = replace(guess_shape(size_bytes=int(6e9)), architecture="qwen2")
    alone = measured.correct(10.0, None, qwen, backend="cpu")
    assert alone == measured.SpeedFigure(5.0, None, "estimated, corrected by 1 measured model here")
    # Nothing similar measured: the estimate as it is.
    huge = replace(guess_shape(size_bytes=int(1e11)), architecture="deepseek2")
    assert measured.correct(3.0, None, huge, backend="cpu") == measured.SpeedFigure(3.0, None, "estimated")


def test_speeds_are_token_weighted_over_a_rolling_window():
    t = target("w.gguf", "llama", 1e9, gen=100, prompt=None)
    full = int(measured.WINDOW_TOKENS)
    store.write(measured.record, t, batch(100, tokens=full))
    store.write(measured.record, t, batch(50, tokens=full))  # a full window: the older figure is gone
    assert measured.lookup("w.gguf", backend="cpu").tokens_per_s == 50
    store.write(measured.record, t, batch(100, tokens=full // 2))  # half of each: 4096 tokens in 61.44 s
    found = measured.lookup("w.gguf", backend="cpu")
    assert found.tokens_per_s == pytest.approx(full / (full / 2 / 50 + full / 2 / 100), abs=0.01)
    assert found.requests == 3 and found.prompt_tokens_per_s is None


# ---- the log and the schema ----------------------------------------------------------------------------


def test_the_log_gives_each_request_its_timings_and_plan():
    header = dict(model="m", model_path="/m/m.gguf", port=1, started=datetime(2026, 12, 1, tzinfo=UTC))
    single = format_header(**header, session_id="s", plan={"ctx_size": 4096, "parallel": 2, "gpu_layers": 0})
    router = format_header(**header, session_id="r") + "\n".join(
        [
            "0.00.010.000 I srv          load: spawning server instance with name=m on port 5000",
            "0.00.010.100 I srv          load: spawning server instance with args:",
            *(f"0.00.010.200 I srv          load:   {a}" for a in ("--model", "/m/m.gguf", "-c", "8192", "-ngl", "99")),
            "",
        ]
    )
    timings = [
        "0.01.000.000 I slot print_timing: id  0 | task 3 | prompt eval time =     200.00 ms /    40 tokens",
        "0.01.000.100 I slot print_timing: id  0 | task 3 |        eval time =     100.00 ms /    10 tokens",
        "0.01.000.200 I slot      release: id  0 | task 3 | stop processing: n_tokens = 49, truncated = 0",
    ]
    for text, prefix, plan in (
        (single, "", {"ctx_size": 4096, "parallel": 2, "gpu_layers": 0}),
        (router, "[5000] ", {"ctx_size": "8192", "gpu_layers": "99"}),
    ):
        reader = LogReader()
        got = [r for line in text.splitlines() + [prefix + t for t in timings] if (r := reader.feed(line))]
        (request,) = got
        assert (request.prompt_ms, request.prompt_evaluated, request.gen_ms) == (200.0, 40, 100.0)
        assert request.plan == plan and request.tok_per_sec == 100.0


def test_a_database_of_the_previous_schema_gains_the_table_and_keeps_its_rows(monkeypatch):
    everything = migrations.MIGRATIONS
    previous = everything[:-1]
    assert migrations.MIGRATIONS[-1] is migrations.m007_model_measurements
    path = paths().database
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    monkeypatch.setattr(migrations, "MIGRATIONS", previous)
    conn.execute("CREATE TABLE placeholder (x)")  # not empty: the migrations then run one by one, to m006
    migrations.migrate(conn)
    conn.execute("INSERT INTO model_usage (model, tokens_in, tokens_out, request_key) VALUES ('old', 5, 7, 'k')")
    conn.execute("INSERT INTO model_inventory (model, path) VALUES ('old', '/m/old.gguf')")
    assert not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'model_measurements'").fetchone()
    conn.close()
    monkeypatch.setattr(migrations, "MIGRATIONS", everything)

    store.database()
    assert [(r.model, r.tokens_in, r.tokens_out) for r in store.ModelUsage.select()] == [("old", 5, 7)]
    assert store.ModelInventory.get_by_id("old").path == "/m/old.gguf"
    assert rows() == []
    applied = [r[0] for r in store.database().execute_sql("SELECT name FROM schema_migrations ORDER BY rowid")]
    assert applied[-1] == "m007_model_measurements" and len(applied) == len(migrations.MIGRATIONS)
    store.write(measured.record, target("x.gguf", "llama", 1e9, gen=10), batch(20))
    assert measured.lookup(Path("/anywhere/x.gguf"), backend="cpu").tokens_per_s == 20
