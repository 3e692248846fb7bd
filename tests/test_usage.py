"""Usage accounting against the real llama-server, real GGUF models and real SQLite: rows from real requests
equal the usage the clients were told, across app restarts, server crashes, cancelled requests and a crash
in the middle of ingesting."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from aidevops_local.cli.main import main as cli
from aidevops_local.core.accounting import prices, usage
from aidevops_local.core.accounting.request_log import LogReader, format_header, parse_header
from aidevops_local.core.database import store
from aidevops_local.core.llamacpp import runtime
from aidevops_local.core.serving import server
from aidevops_local.core.system import config
from aidevops_local.core.system.config import paths
from tests.usage_server import Answer, chat, logged_server, rows, start_stream, triples, wait_logged
from tests.usage_server import client as http_client

pytestmark = pytest.mark.real_server
REPO = Path(__file__).resolve().parents[1]


def run_python(code: str, *, env_extra: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """A fresh process of the app (same root): what a restart of the CLI or the tray would be."""
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
    )


# ---- a real log, captured once --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def captured_log(tmp_path_factory, llama_server_dir, tiny_gguf) -> tuple[Path, list[Answer]]:
    """A real server log with concurrent requests in 2 slots, streaming and not, and the answers the clients
    got. Tests copy it into their own root."""
    folder = tmp_path_factory.mktemp("captured")
    log_path = folder / "llama-server-20261125-100000-1.log"
    answers: list[Answer] = []
    with logged_server(llama_server_dir, tiny_gguf, model="tiny", parallel=2, log_path=log_path) as srv:
        with http_client() as client:
            lock = threading.Lock()

            def worker(i: int) -> None:
                for j in range(4):
                    answer = chat(
                        client,
                        srv.url,
                        f"request {i}-{j} " + "x" * (i * 7 + j),
                        max_tokens=5 + i + j,
                        stream=bool((i + j) % 2),
                    )
                    with lock:
                        answers.append(answer)

            threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    return log_path, answers


def install_log(source: Path, name: str | None = None) -> Path:
    paths().logs_dir.mkdir(parents=True, exist_ok=True)
    target = paths().logs_dir / (name or source.name)
    shutil.copyfile(source, target)
    return target


# ---- rows equal what the clients were told --------------------------------------------------------------

TRACE_FLAGS = [*usage.BASE_LOG_ARGS, "--log-verbosity", "4"]


@pytest.mark.parametrize("log_args", [None, TRACE_FLAGS], ids=["product-flags", "trace-verbosity"])
def test_rows_equal_the_usage_clients_received(llama_server_dir, smollm2_gguf, log_args):
    """Streaming and not, prompt-cache hits, EOS and max_tokens stops, two slots at once. The product's flags
    (default verbosity here) give no per-task prompt line, so the prompt count comes from the release line;
    at trace verbosity it is read directly. Both must be exact."""
    answers: list[Answer] = []
    before = datetime.now(UTC).replace(microsecond=0)
    with logged_server(llama_server_dir, smollm2_gguf, model="smollm2", parallel=2, log_args=log_args) as srv:
        with http_client() as client:
            for stream in (False, True):
                answers.append(chat(client, srv.url, "hi", max_tokens=12, stream=stream))
                answers.append(chat(client, srv.url, "hi", max_tokens=12, stream=stream))  # cached prompt
                answers.append(chat(client, srv.url, "Say just OK", max_tokens=200, temperature=0, stream=stream))
                answers.append(chat(client, srv.url, "Count to three", max_tokens=1, stream=stream))
            out: list[Answer] = []
            threads = [
                threading.Thread(
                    target=lambda i=i: out.append(
                        chat(client, srv.url, f"Question {i}: what is {i}+{i}?", max_tokens=10 + i, stream=bool(i % 2))
                    )
                )
                for i in range(4)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            answers += out
        assert {a.finish_reason for a in answers} == {"stop", "length"}
        assert any(a.cached_tokens for a in answers), "no request hit the prompt cache"
        wait_logged(len(answers))
        added = usage.ingest(live_log=None)
    found = rows()
    assert added == len(found) == len(answers)
    assert triples(found) == triples(answers)
    assert Counter(r.cache_tokens for r in found) == Counter(a.cached_tokens for a in answers)
    assert {r.model for r in found} == {"smollm2"} and {r.status for r in found} == {"ok"}
    assert {r.session_id for r in found} == {srv.session_id}
    assert len({r.request_key for r in found}) == len(found)
    after = datetime.now(UTC) + timedelta(seconds=2)
    assert all(before <= r.timestamp <= after for r in found)
    assert all(r.duration_ms > 0 for r in found)
    assert usage.ingest(live_log=None) == 0


def test_trace_verbosity_only_where_speculative_decoding_may_run(llama_server_dir, tmp_path, monkeypatch):
    """Trace logging is 4-9 times the volume; it is needed only where a stop inside an accepted draft makes
    the release line overcount the prompt. Builds without a trace level never get it (there 4 meant debug,
    which logs request bodies)."""
    binary = llama_server_dir / "llama-server"
    base, trace = list(usage.BASE_LOG_ARGS), TRACE_FLAGS
    plain = ["-m", "/models/spec-draft-7b.gguf", "--jinja", "-c", "4096"]  # a file name is not a flag
    assert usage.llama_server_log_args(server_binary=binary, server_args=plain) == base
    assert usage.llama_server_log_args(server_binary=binary, server_args=plain + ["-md", "d.gguf"]) == trace
    spec = plain + ["--spec-type", "ngram-mod"]
    assert usage.llama_server_log_args(server_binary=binary, server_args=spec) == trace
    assert usage.llama_server_log_args(server_binary=binary, server_args=["--models-dir", "/m"]) == trace
    assert usage.llama_server_log_args(server_binary=binary) == trace  # argv unknown: be exact
    monkeypatch.setenv("LLAMA_ARG_MODEL_DRAFT", "/d.gguf")
    assert usage.llama_server_log_args(server_binary=binary, server_args=plain) == trace
    old = tmp_path / "llama-server"
    old.write_text("#!/bin/sh\necho '-lv, --verbosity N   Set the verbosity threshold.'\n")
    old.chmod(0o755)
    assert usage.llama_server_log_args(server_binary=old, server_args=["-md", "d.gguf"]) == base
    assert usage.llama_server_log_args(server_binary=tmp_path / "missing") == base


@pytest.mark.parametrize("extra", [[], ["--context-shift"]], ids=["context-full", "context-shift"])
def test_long_generations_in_a_small_context_are_exact(llama_server_dir, tiny_gguf, extra):
    """Generation stops at a full context, or goes on by discarding half of it: the release line alone must
    still give the prompt count."""
    with logged_server(llama_server_dir, tiny_gguf, model="tiny", ctx=128, extra_args=extra) as srv:
        with http_client() as client:
            answers = [
                chat(client, srv.url, "go on " * (5 + 10 * n), max_tokens=300, stream=bool(n % 2)) for n in range(3)
            ]
    assert all(a.finish_reason == "length" for a in answers)
    assert ("context shift" in srv.log_path.read_text()) == bool(extra)
    usage.ingest(live_log=None)
    assert triples(rows()) == triples(answers)


def test_speculative_decoding_rows_equal_client_usage(llama_server_dir, smollm2_gguf):
    """SmolLM2 drafting for itself accepts whole drafts, so max_tokens stops land inside accepted drafts."""
    answers = []
    draft = ["-md", str(smollm2_gguf), "-td", "1", "--spec-type", "draft-simple"]
    with logged_server(llama_server_dir, smollm2_gguf, model="smollm2", extra_args=draft) as srv:
        with http_client() as client:
            for n in range(10):
                answers.append(
                    chat(
                        client,
                        srv.url,
                        "Repeat exactly: one two three four five six seven.",
                        max_tokens=5 + 3 * n,
                        temperature=0,
                        stream=bool(n % 2),
                    )
                )
    assert "draft acceptance" in srv.log_path.read_text()
    usage.ingest(live_log=None)
    assert triples(rows()) == triples(answers)


@pytest.mark.parametrize("log_args", [None, TRACE_FLAGS], ids=["product-flags", "trace-verbosity"])
def test_cancelled_request_is_one_cancelled_row(llama_server_dir, tiny_gguf, log_args):
    """The client got no usage for it. At trace verbosity the prompt count is known; at the default one only
    the slot's total is, and it is all counted as input."""
    with logged_server(llama_server_dir, tiny_gguf, model="tiny", ctx=4096, log_args=log_args) as srv:
        with http_client() as client:
            done = chat(client, srv.url, "tell me everything", max_tokens=8)
            seen = start_stream(client, srv.url, "tell me everything", max_tokens=3000, chunks=6)
            after = chat(client, srv.url, "and then", max_tokens=4)  # by now the server saw the cancel
    usage.ingest(live_log=None)
    by_status = Counter(r.status for r in rows())
    assert by_status == {"ok": 2, "cancelled": 1}
    cancelled = next(r for r in rows() if r.status == "cancelled")
    # What it generated before it noticed the client was gone, and the prompt (the same as `done`'s).
    total = cancelled.tokens_in + cancelled.tokens_out
    assert done.prompt_tokens + seen - 1 <= total < done.prompt_tokens + 3000
    if log_args == TRACE_FLAGS:
        assert cancelled.tokens_in == done.prompt_tokens and cancelled.tokens_out >= seen - 1
    assert triples(r for r in rows() if r.status == "ok") == triples([done, after])


def test_requests_to_the_served_model_are_rows_after_stop(llama_server_dir, tiny_gguf, free_port, monkeypatch):
    """The product's own start and stop: serve() writes the header and passes our flags, stop() ingests."""
    monkeypatch.setenv("PATH", f"{llama_server_dir}{os.pathsep}{os.environ['PATH']}")
    runtime.use_system()
    config.save_settings(config.Settings(threads=1, ctx_size=2048, parallel=2, stop_grace_s=5.0))
    status = server.serve(str(tiny_gguf), port=free_port())
    try:
        with http_client() as client:
            url = status.endpoint.removesuffix("/v1")
            answers = [chat(client, url, f"served {i}", max_tokens=4 + i, stream=bool(i % 2)) for i in range(6)]
    finally:
        server.stop(grace=2)
    found = rows()
    assert triples(found) == triples(answers)
    assert {r.model for r in found} == {status.model}


# ---- nothing lost, nothing doubled ------------------------------------------------------------------------


def test_app_restarts_between_requests_count_each_request_once(llama_server_dir, tiny_gguf):
    ingest = "from aidevops_local.core.accounting import usage; print(usage.ingest(live_log=None))"
    answers = []
    with logged_server(llama_server_dir, tiny_gguf, model="tiny") as srv:
        with http_client() as client:
            answers += [chat(client, srv.url, f"first {i}", max_tokens=6, stream=bool(i % 2)) for i in range(3)]
            wait_logged(len(answers))
            first = run_python(ingest)
            answers += [chat(client, srv.url, f"second {i}", max_tokens=7, stream=bool(i % 2)) for i in range(3)]
        second = run_python(ingest)
    assert (first.stdout.strip(), second.stdout.strip()) == ("3", "3"), first.stderr + second.stderr
    assert usage.ingest(live_log=None) == 0
    assert triples(rows()) == triples(answers)


def test_server_killed_mid_request_counts_the_finished_ones(llama_server_dir, tiny_gguf):
    answers = []
    with logged_server(llama_server_dir, tiny_gguf, model="tiny", ctx=8192) as srv:
        with http_client() as client:
            answers += [chat(client, srv.url, f"before {i}", max_tokens=5, stream=bool(i % 2)) for i in range(3)]
            got_chunks = threading.Event()

            def long_request():
                body = {"messages": [{"role": "user", "content": "go on"}], "max_tokens": 7000, "stream": True}
                try:
                    with client.stream("POST", f"{srv.url}/v1/chat/completions", json=body) as response:
                        for n, _ in enumerate(response.iter_lines()):
                            if n > 20:
                                got_chunks.set()
                except httpx.HTTPError:
                    pass

            t = threading.Thread(target=long_request)
            t.start()
            assert got_chunks.wait(30)
            os.killpg(srv.proc.pid, signal.SIGKILL)
            t.join(30)
        srv.proc.wait(10)
    assert usage.ingest(live_log=None) == 3
    assert usage.ingest(live_log=None) == 0
    assert triples(rows()) == triples(answers)
    with logged_server(llama_server_dir, tiny_gguf, model="tiny") as srv:  # the next run, its own log
        with http_client() as client:
            answers.append(chat(client, srv.url, "after", max_tokens=4))
    assert usage.ingest(live_log=None) == 1
    assert triples(rows()) == triples(answers)


def test_restart_into_the_same_log_without_a_header_keeps_requests_apart(llama_server_dir, tiny_gguf):
    """Task ids start at 0 again in a new process: its requests must not be taken for the first one's."""
    answers = []
    with logged_server(llama_server_dir, tiny_gguf, model="tiny") as first:
        with http_client() as client:
            answers += [chat(client, first.url, f"one {i}", max_tokens=5) for i in range(2)]
            time.sleep(1.5)  # the first process's clock must be past the restart threshold
    with logged_server(llama_server_dir, tiny_gguf, model="tiny", log_path=first.log_path, header=False) as again:
        with http_client() as client:
            answers += [chat(client, again.url, f"two {i}", max_tokens=6) for i in range(2)]
    assert usage.ingest(live_log=None) == 4
    assert len({r.request_key for r in rows()}) == 4
    assert triples(rows()) == triples(answers)


def test_crash_in_the_middle_of_ingesting_loses_and_doubles_nothing(captured_log):
    log, answers = captured_log
    install_log(log)
    # Die with the first chunk's rows inserted but not committed; then again after two small chunks committed.
    crash_in_first = run_python("""
        import os
        from aidevops_local.core.database import store
        from aidevops_local.core.accounting import usage
        store.LogCursor.insert = lambda *a, **k: os._exit(3)
        usage.ingest(live_log=None)
    """)
    assert crash_in_first.returncode == 3, crash_in_first.stderr
    assert rows() == []
    crash_later = run_python("""
        import os
        from aidevops_local.core.database import store
        from aidevops_local.core.accounting import usage
        usage.CHUNK_BYTES = 2000
        real_rows, real_cursor, batches = store.ModelUsage.insert_many, store.LogCursor.insert, []
        def insert_many(*a, **k):
            batches.append(1)
            return real_rows(*a, **k)
        def insert(*a, **k):
            if len(batches) == 2:  # one chunk with rows is committed; die before the second one's commit
                os._exit(3)
            return real_cursor(*a, **k)
        store.ModelUsage.insert_many, store.LogCursor.insert = insert_many, insert
        usage.ingest(live_log=None)
    """)
    assert crash_later.returncode == 3, crash_later.stderr
    assert 0 < len(rows()) < len(answers)
    usage.ingest(live_log=None)
    assert triples(rows()) == triples(answers)
    assert len({r.request_key for r in rows()}) == len(answers)


def test_any_cut_of_the_log_reads_the_same(captured_log, tmp_path, monkeypatch):
    """Ingest a log that stops anywhere (mid-line, mid-request), then the rest: the same rows as in one go."""
    log, answers = captured_log
    data = log.read_bytes()
    cuts = sorted({len(data) * k // 23 for k in range(1, 23)} | {data.index(b"stop processing") + 5})
    for n, cut in enumerate(cuts):
        monkeypatch.setenv("AIDEVOPS_HOME", str(tmp_path / f"root{n}"))
        paths().logs_dir.mkdir(parents=True)
        target = paths().logs_dir / log.name
        target.write_bytes(data[:cut])
        usage.ingest(live_log=None)
        with open(target, "ab") as f:
            f.write(data[cut:])
        usage.ingest(live_log=None)
        assert triples(rows()) == triples(answers), f"cut at byte {cut}"


def test_two_ingesters_at_once_count_each_request_once(captured_log):
    log, answers = captured_log
    text = log.read_text()
    session = parse_header(text.splitlines()[0])["session_id"]
    for n in range(3):  # three runs' logs, so the two processes meet on several files
        copy = install_log(log, f"llama-server-2026112{n}-100000-1.log")
        copy.write_text(text.replace(session, f"run{n}", 1))
    code = """
        from aidevops_local.core.accounting import usage
        usage.CHUNK_BYTES = 700
        print(usage.ingest(live_log=None))
    """
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    assert sum(int(o[0]) for o in outs) == 3 * len(answers)
    assert len(rows()) == 3 * len(answers)
    assert triples(rows()) == Counter({k: 3 * v for k, v in triples(answers).items()})


# ---- inventory, reports, housekeeping ----------------------------------------------------------------------


def test_inventory_follows_the_rows(captured_log, tiny_gguf):
    log, answers = captured_log
    store.database()
    store.ModelInventory.create(model="tiny", path="/elsewhere/tiny.gguf", source="pulled", total_requests=2)
    store.ModelInventory.create(model="other-name", path=str(tiny_gguf), source="pulled")  # matched by path
    store.ModelInventory.create(model="unused", path="/x/unused.gguf", source="pulled")
    install_log(log)
    usage.ingest(live_log=None)
    latest = max(r.timestamp for r in rows())
    by_name = {m.model: m for m in store.ModelInventory.select()}
    assert by_name["tiny"].total_requests == 2 + len(answers)
    assert by_name["other-name"].total_requests == len(answers)
    assert by_name["tiny"].last_used == by_name["other-name"].last_used == latest
    assert by_name["unused"].total_requests == 0 and by_name["unused"].last_used is None
    usage.ingest(live_log=None)
    assert store.ModelInventory.get_by_id("tiny").total_requests == 2 + len(answers)


def test_model_not_in_inventory_still_gets_rows(captured_log, tiny_gguf, tmp_path):
    log = install_log(captured_log[0])
    # Its file is gone since: rows, and no inventory entry for a file that is not there.
    log.write_text(log.read_text().replace(json.dumps(str(tiny_gguf)), json.dumps(str(tmp_path / "gone.gguf")), 1))
    assert usage.ingest(live_log=None) == len(captured_log[1])
    store.database()
    assert store.ModelInventory.select().count() == 0


def test_model_not_in_inventory_whose_file_is_there_gets_a_row(captured_log, tiny_gguf):
    install_log(captured_log[0])
    assert usage.ingest(live_log=None) == len(captured_log[1])
    latest = max(r.timestamp for r in rows())
    (row,) = store.ModelInventory.select()
    assert (row.model, row.path, row.source) == ("tiny", str(tiny_gguf), "external")
    assert row.total_requests == len(captured_log[1]) and row.last_used == latest
    usage.ingest(live_log=None)  # nothing new: nothing counted twice
    assert store.ModelInventory.get_by_id("tiny").total_requests == len(captured_log[1])


def test_usage_report_and_cli(captured_log, capsys):
    log, answers = captured_log
    text = log.read_text()
    header = parse_header(text.splitlines()[0])
    install_log(log)
    install_log(log, "llama-server-20261101-100000-1.log").write_text(
        format_header(
            model="older-model",
            model_path=header["model_path"],
            port=1,
            session_id="older",
            started=datetime.now(UTC) - timedelta(days=10),
        )
        + text.split("\n", 1)[1]
    )
    tokens_in = sum(a.prompt_tokens for a in answers)
    tokens_out = sum(a.completion_tokens for a in answers)

    assert cli(["usage", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [m["model"] for m in report["models"]] == ["tiny", "older-model"]
    tiny = report["models"][0]
    assert (tiny["requests"], tiny["tokens_in"], tiny["tokens_out"]) == (len(answers), tokens_in, tokens_out)
    assert tiny["cloud_cost_usd"] == prices.cloud_costs(tokens_in=tokens_in, tokens_out=tokens_out)
    assert tiny["mean_tok_per_sec"] > 0 and tiny["total_ms"] > 0 and tiny["last_used"]
    assert report["total"]["requests"] == 2 * len(answers)
    assert report["prices_as_of"] == prices.AS_OF.isoformat()

    assert cli(["usage", "--since", "7d", "--json"]) == 0
    assert [m["model"] for m in json.loads(capsys.readouterr().out)["models"]] == ["tiny"]
    assert cli(["usage", "--model", "older-model", "--json"]) == 0
    assert [m["model"] for m in json.loads(capsys.readouterr().out)["models"]] == ["older-model"]
    assert cli(["usage", "--since", "30d"]) == 0
    out = capsys.readouterr().out
    assert "tiny" in out and "older-model" in out and "opus" in out
    with pytest.raises(SystemExit) as bad_period:  # a usage error, before the database is opened
        cli(["usage", "--since", "soon"])
    assert bad_period.value.code == 2

    days = usage.daily(live_log=None, since=timedelta(days=30))  # the tray's chart
    assert [(d.model, d.tokens_in, d.tokens_out) for d in days] == [
        ("older-model", tokens_in, tokens_out),
        ("tiny", tokens_in, tokens_out),
    ]
    assert days[0].day < days[1].day and days[1].requests == len(answers)


def test_old_fully_read_logs_are_pruned_but_not_recent_or_unread_ones(captured_log):
    log, _ = captured_log
    names = [f"llama-server-202611{day:02d}-100000-1.log" for day in range(1, 10)]
    for name in names:
        install_log(log, name)
    usage.ingest(live_log=None)
    with open(paths().logs_dir / names[0], "a") as f:
        f.write("0.09.000.000 I srv  update_slots: all slots")  # a line still being written: keep the log
    two_days_ago = time.time() - 2 * 86400
    for name in names[:-1]:  # the newest stays "touched today"
        os.utime(paths().logs_dir / name, (two_days_ago, two_days_ago))
    usage.ingest(live_log=None)
    left = sorted(p.name for p in paths().logs_dir.iterdir())
    assert names[0] in left and names[-1] in left and len(left) == usage.KEEP_LOGS
    assert {c.file for c in store.LogCursor.select()} == set(left)


def test_nothing_new_writes_nothing(captured_log):
    install_log(captured_log[0])
    usage.ingest(live_log=None)
    before = [(c.file, c.offset, c.updated) for c in store.LogCursor.select()]
    time.sleep(1.1)
    assert usage.ingest(live_log=None) == 0
    assert [(c.file, c.offset, c.updated) for c in store.LogCursor.select()] == before


# ---- the reader on its own ---------------------------------------------------------------------------------

HEADER = format_header(
    model="m", model_path="/m.gguf", port=1, session_id="s", started=datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
)


def read(text: str) -> list:
    reader = LogReader()
    return [r for line in text.splitlines() if (r := reader.feed(line)) is not None]


def test_older_builds_multiline_timings_and_n_past():
    """Builds of 2024-25 print the timings as one message over several unprefixed lines, 'new prompt' as an
    info line with n_prompt_tokens, and the release with n_past."""
    text = HEADER + textwrap.dedent("""\
        0.01.000.000 I slot launch_slot_: id  0 | task 7 | processing task
        0.01.000.100 I slot update_slots: id  0 | task 7 | new prompt, n_keep = 0, n_prompt_tokens = 31
        0.01.500.000 I slot print_timing: id  0 | task 7 |
        prompt eval time =     113.13 ms /     1 tokens (  113.13 ms per token,     8.84 tokens per second)
               eval time =      52.01 ms /     8 tokens (    6.50 ms per token,   153.83 tokens per second)
              total time =     165.14 ms /     9 tokens
        0.01.500.100 I slot      release: id  0 | task 7 | stop processing: n_past = 38, truncated = 0
        """)
    [request] = read(text)
    assert (request.tokens_in, request.tokens_out, request.cache_tokens) == (31, 8, 30)
    assert request.key == "s:7" and request.finished == datetime(2026, 11, 25, 10, 0, 1, 500100, UTC)


def test_failed_task_colours_and_a_new_header():
    colours = "\x1b[34m0.00.100.000\x1b[0m \x1b[32mI \x1b[0m"  # --log-colors on
    text = (
        HEADER
        + colours
        + textwrap.dedent("""\
        slot   operator(): id  1 | task 3 | new prompt, task.n_tokens = 90
        0.00.100.200 E srv    send_error: task id = 3, error: request (90 tokens) exceeds the context size
        0.00.100.300 I slot      release: id  1 | task 3 | stop processing: n_tokens = 0, truncated = 0
        0.00.200.000 I slot   operator(): id  0 | task 4 | new prompt, n_keep = 0, task.n_tokens = 20
        """)
        + HEADER.replace('"s"', '"t"')
        + textwrap.dedent("""\
        0.00.300.000 I slot print_timing: id  0 | task 4 |        eval time =      10.00 ms /     5 tokens
        0.00.300.100 I slot      release: id  0 | task 4 | stop processing: n_tokens = 24, truncated = 0
        """)
    )
    first, second = read(text)
    assert (first.status, first.tokens_in, first.tokens_out) == ("error", 90, 0)
    # The new header is a new run: task 4 of run "t" knows nothing of run "s"'s task 4.
    assert (second.key, second.tokens_in, second.tokens_out) == ("t:4", 20, 5)


def test_reader_state_survives_json():
    lines = (
        HEADER
        + textwrap.dedent("""\
        0.00.100.000 I slot   operator(): id  0 | task 1 | new prompt, n_keep = 0, task.n_tokens = 12
        0.00.200.000 I slot print_timing: id  0 | task 1 | prompt eval time =       5.00 ms /    12 tokens
        0.00.200.001 I slot print_timing: id  0 | task 1 |        eval time =      10.00 ms /     3 tokens
        0.00.200.002 I slot      release: id  0 | task 1 | stop processing: n_tokens = 14, truncated = 0
        """)
    ).splitlines()
    for cut in range(len(lines) + 1):
        reader = LogReader()
        got = [r for line in lines[:cut] if (r := reader.feed(line))]
        reader = LogReader(json.loads(json.dumps(reader.state())))
        got += [r for line in lines[cut:] if (r := reader.feed(line))]
        assert [(r.tokens_in, r.tokens_out, r.duration_ms) for r in got] == [(12, 3, 15)]


def test_prune_keeps_the_live_log_it_is_given():
    """Fully read logs beyond the newest few go, but never the one the caller says the running server writes."""
    logs = paths().logs_dir
    logs.mkdir(parents=True, exist_ok=True)
    old = time.time() - 3 * 86400
    made = []
    for i in range(usage.KEEP_LOGS + 3):
        path = logs / f"llama-server-2026010{i}-000000-8080.log"
        started = datetime.fromtimestamp(old + i, UTC)
        path.write_text(format_header(model="m", model_path="/m.gguf", port=8080, started=started, session_id=f"s{i}"))
        os.utime(path, (old + i, old + i))
        made.append(path)
    usage.ingest(live_log=made[0])  # reads them all, then prunes the oldest beyond KEEP_LOGS
    assert made[0].exists(), "the live server's log was pruned"
    assert [p for p in made if p.exists()] == [made[0], *made[-(usage.KEEP_LOGS - 1) :]]
