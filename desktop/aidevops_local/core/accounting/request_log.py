"""Reads llama-server's own per-request accounting out of its log, one line at a time.

A log of ours opens with a header line that server.py writes before the process starts:

    # aidevops-local {"model": ..., "model_path": ..., "port": ..., "started": <ISO UTC>, "session_id": ...}

llama-server (run with `usage.llama_server_log_args()`) then writes, per task, lines tagged `id <slot> | task
<task>`, so requests in different slots that interleave are told apart:

    new prompt, n_ctx_slot = 2048, n_keep = 0, task.n_tokens = 31      the whole prompt (cached tokens
                                                                       included): usage.prompt_tokens
    prompt eval time =  113.13 ms /    31 tokens (...)                 the part not served from the cache
           eval time =   52.01 ms /     8 tokens (...)                 usage.completion_tokens
    stop processing: n_tokens = 38, truncated = 0                      the slot is released: the task is over

`new prompt` is an info line in older builds and a trace line (-lv 4) in newer ones. Where it is missing,
the prompt count follows from the release line: the slot's cache then holds the prompt and every generated
token but the last (n_tokens = prompt + completion - 1), plus back what a context shift discarded (its warning
line, `slot context shift, ... n_discard = N`, says how many). That is exact (checked against the clients'
usage: EOS and max_tokens stops, a full context, context shifts, prompt-cache hits) except under speculative
decoding, where a stop inside an accepted draft leaves later draft tokens in the cache; usage.py asks for
trace logging whenever speculative decoding may be on.
The release line also ends a task that produced no completion: cancelled (the client went away: `cancel
task, id_task = N`), failed (`task id = N, error: ...`), or a prompt-only task such as embeddings. The client
got no usage for those; without the prompt line only the slot's total is known, and it is counted as input.
A task whose process died before its release line never finished and yields nothing.

In router mode (server.py passes ``--models-preset``) one log holds the router's own lines and, prefixed with
``[<port>] ``, those of each model instance it spawns; the router names each one first:

    srv          load: spawning server instance with name=<model> on port <port>
    srv          load: spawning server instance with args:
    srv          load:   --model
    srv          load:   /path/to/model.gguf

Each instance's lines go to a reader of their own, whose run is that spawn (so its tasks, numbered from 0
again, get keys of their own) and whose model is the spawned one; its timestamps count from its own start,
which is the spawn line's time in the router's clock.

The reader's state is a small JSON-able dict, stored with the byte offset it belongs to, so reading can stop
after any complete line and go on later, in another process, without losing or doubling a request.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

HEADER_PREFIX = "# aidevops-local "

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_PREFIX = r"^(?:(?P<ts>\d+\.\d{2}\.\d{3}\.\d{3}) )?(?:[IWEDT] )?"
_SLOT = re.compile(_PREFIX + r"slot +[^:]+: id +(?P<slot>\d+) \| task (?P<task>-?\d+) \| ?(?P<msg>.*)$")
_CANCEL = re.compile(_PREFIX + r"srv +[^:]+: cancel task, id_task = (?P<task>\d+)")
_ERROR = re.compile(_PREFIX + r"srv +[^:]+: task id = (?P<task>\d+), error:")
_NEW_PROMPT = re.compile(r"new prompt, .*\b(?:task\.n_tokens|n_prompt_tokens) = (\d+)")
_LAUNCH = re.compile(r"processing task\b")
_PROMPT_EVAL = re.compile(r"^\s*prompt eval time =\s*([\d.]+) ms /\s*(\d+) tokens")
_EVAL = re.compile(r"^\s*eval time =\s*([\d.]+) ms /\s*(\d+) tokens")
_RELEASE = re.compile(r"stop processing: (?:n_tokens|n_past) = (\d+), truncated = (\d+)")
_SHIFT = re.compile(r"context shift, .*\bn_discard = (\d+)")
_TIMESTAMP = re.compile(_PREFIX)
_INSTANCE_LINE = re.compile(r"^\[(?P<port>\d+)\] (?P<line>.*)$")
_SPAWN = re.compile(_PREFIX + r"srv +load: spawning server instance with name=(?P<name>.+) on port (?P<port>\d+)\s*$")
_SPAWN_ARG = re.compile(_PREFIX + r"srv +load: {3}(?P<arg>\S.*?)\s*$")
# A model instance's flags that make its plan (what speed and memory were measured under), by header key.
_PLAN_FLAGS = {"--ctx-size": "ctx_size", "-c": "ctx_size", "--parallel": "parallel", "-np": "parallel"}
_PLAN_FLAGS |= {"--n-gpu-layers": "gpu_layers", "-ngl": "gpu_layers", "--gpu-layers": "gpu_layers"}
_PLAN_FLAGS |= {"--threads": "threads", "-t": "threads"}
_INSTANCE_EXIT = re.compile(_PREFIX + r"srv +[^:]+: instance name=(?P<name>.+) exited with status")
# A restarted process writes timestamps from zero again; this much backwards means a new process.
_RESTART_BACKSTEP_S = 1.0


def format_header(
    *, model: str, model_path: str, port: int, started: datetime, session_id: str, plan: dict | None = None
) -> str:
    """The first line of a server log (with its newline). ``plan``: a single-model server's ctx_size, parallel,
    gpu_layers and threads (a router's instances name theirs in their spawn lines)."""
    data = {
        "model": model,
        "model_path": model_path,
        "port": port,
        "started": started.astimezone(UTC).isoformat(timespec="milliseconds"),
        "session_id": session_id,
        **({"plan": plan} if plan else {}),
    }
    return HEADER_PREFIX + json.dumps(data) + "\n"


def parse_header(line: str) -> dict | None:
    if not line.startswith(HEADER_PREFIX):
        return None
    try:
        data = json.loads(line[len(HEADER_PREFIX) :])
    except ValueError:
        return None
    if not isinstance(data, dict) or not data.get("session_id") or not data.get("model"):
        return None
    return data


@dataclass(frozen=True)
class Request:
    """One finished task of one server run."""

    key: str  # unique across runs: "<session_id>:<task>" (":<epoch>" inserted after a restart in one log)
    session_id: str
    model: str
    model_path: str
    finished: datetime  # UTC
    tokens_in: int
    tokens_out: int
    cache_tokens: int
    duration_ms: int
    tok_per_sec: float | None
    status: str  # ok | cancelled | error
    # What speeds are measured from (models/measured.py): the timings llama-server printed, and its plan.
    prompt_ms: float = 0.0  # time to evaluate the prompt tokens not served from the cache
    prompt_evaluated: int = 0  # those tokens
    gen_ms: float = 0.0
    plan: dict | None = None  # ctx_size, parallel, gpu_layers, threads, where the log says them


def _seconds(ts: str | None) -> float | None:
    """llama-server's 'M.SS.mmm.uuu' since the process started."""
    if not ts:
        return None
    minutes, secs, millis, micros = ts.split(".")
    return int(minutes) * 60 + int(secs) + int(millis) / 1e3 + int(micros) / 1e6


class LogReader:
    """Feed it lines in order; it returns the requests they finish."""

    def __init__(self, state: dict | None = None):
        self._load(state or {})

    def _load(self, state: dict) -> None:
        self.header: dict | None = state.get("header")
        self.epoch: int = state.get("epoch", 0)
        self.epoch_offset_s: float = state.get("epoch_offset_s", 0.0)  # time before this process started
        self.last_s: float | None = state.get("last_s")
        self.pending: dict[str, dict] = state.get("pending", {})  # task id -> what its lines said so far
        # Older builds print the timings as unprefixed lines after a bare print_timing prefix.
        self.timing_task: str | None = state.get("timing_task")
        # Router mode: a reader per spawned instance (by port), how many were spawned, and the port whose
        # argument lines are being listed (with the argument before, to find --model's value).
        self.instances = {port: LogReader(sub) for port, sub in state.get("instances", {}).items()}
        self.spawns: int = state.get("spawns", 0)
        self.spawn_args: list = state.get("spawn_args") or []  # [port, previous argument]

    def state(self) -> dict:
        state = {
            "header": self.header,
            "epoch": self.epoch,
            "epoch_offset_s": self.epoch_offset_s,
            "last_s": self.last_s,
            "pending": self.pending,
            "timing_task": self.timing_task,
        }
        if self.spawns:
            state.update(
                instances={port: r.state() for port, r in self.instances.items()},
                spawns=self.spawns,
                spawn_args=self.spawn_args,
            )
        return state

    def feed(self, line: str) -> Request | None:
        line = _ANSI.sub("", line.rstrip("\r\n"))
        if line.startswith(HEADER_PREFIX):
            header = parse_header(line)
            if header is not None:
                # A new run: tasks left open by the previous process never finished.
                self._load({"header": header})
            return None
        if (instance := _INSTANCE_LINE.match(line)) is not None:
            reader = self.instances.get(instance.group("port"))
            return reader.feed(instance.group("line")) if reader is not None else None
        match = _SLOT.match(line)
        if match is None:
            self._other(line)
            return None
        self.timing_task = None
        now_s = self._clock(match.group("ts"))
        task, slot, msg = match.group("task"), int(match.group("slot")), match.group("msg")
        if task.startswith("-"):
            return None
        if (found := _NEW_PROMPT.search(msg)) is not None:
            self._start(task, slot, now_s)["prompt"] = int(found.group(1))
        elif _LAUNCH.search(msg):
            self._start(task, slot, now_s)
        elif (found := _RELEASE.search(msg)) is not None:
            return self._finish(task, int(found.group(1)), now_s)
        elif (found := _SHIFT.search(msg)) is not None:
            entry = self.pending.setdefault(task, {"slot": slot})
            entry["discarded"] = entry.get("discarded", 0) + int(found.group(1))
        elif msg.strip() == "" and "print_timing" in line:
            self.timing_task = task
            self.pending.setdefault(task, {"slot": slot})
        else:
            self._timing(task, slot, msg)
        return None

    def _start(self, task: str, slot: int, now_s: float | None) -> dict:
        """A task is in a slot. A slot runs one task at a time, so anything else still open on it is over:
        that keeps the state as small as the number of slots."""
        for other in [t for t, p in self.pending.items() if p.get("slot") == slot and t != task]:
            del self.pending[other]
        entry = self.pending.setdefault(task, {"slot": slot})
        entry.setdefault("t0", now_s)
        return entry

    def _other(self, line: str) -> None:
        # A task cancelled or refused before it reached a slot used nothing: only tasks in a slot are marked.
        if (found := _SPAWN.match(line) or _SPAWN_ARG.match(line) or _INSTANCE_EXIT.match(line)) is not None:
            self._router(found, self._clock(found.group("ts")))
        elif (found := _CANCEL.match(line) or _ERROR.match(line)) is not None:
            self._clock(found.group("ts"))
            entry = self.pending.get(found.group("task"))
            if entry is not None:
                entry["cancelled" if "cancel task" in line else "error"] = True
        elif self.timing_task is not None:
            entry = self.pending.setdefault(self.timing_task, {})
            if not self._timing(self.timing_task, entry.get("slot"), line):
                self.timing_task = None
        else:
            found = _TIMESTAMP.match(line)
            self._clock(found.group("ts") if found else None)

    def _router(self, found: re.Match, now_s: float | None) -> None:
        """A router line about its instances: one spawned (a new run, charged to its model), one of its
        arguments (--model's value is the model's path), or one exited (its unfinished tasks never finish)."""
        names = found.groupdict()
        if "arg" in names:
            if self.spawn_args and (reader := self.instances.get(self.spawn_args[0])) is not None:
                if self.spawn_args[1] in ("--model", "-m") and reader.header is not None:
                    reader.header["model_path"] = names["arg"]
                elif self.spawn_args[1] in _PLAN_FLAGS and reader.header is not None:
                    reader.header.setdefault("plan", {})[_PLAN_FLAGS[self.spawn_args[1]]] = names["arg"]
                self.spawn_args[1] = names["arg"]
        elif "port" in names:
            if self.header is None:
                return  # not a log of ours
            self.spawns += 1
            header = {
                "model": names["name"],
                "model_path": "",
                "session_id": f"{self.header['session_id']}/{self.spawns}",
                "started": self._wall(now_s).isoformat(timespec="microseconds"),
            }
            self.instances[names["port"]] = LogReader({"header": header})
            self.spawn_args = [names["port"], ""]
        else:
            for port in [p for p, r in self.instances.items() if r.header and r.header["model"] == names["name"]]:
                del self.instances[port]

    def _timing(self, task: str, slot: int | None, msg: str) -> bool:
        for pattern, key in ((_PROMPT_EVAL, "pp"), (_EVAL, "tg")):
            if (found := pattern.match(msg)) is not None:
                entry = self.pending.setdefault(task, {"slot": slot})
                entry[key] = [float(found.group(1)), int(found.group(2))]
                return True
        return "total time" in msg or "graphs reused" in msg

    def _clock(self, ts: str | None) -> float | None:
        seconds = _seconds(ts)
        if seconds is None:
            return self.last_s
        if self.last_s is not None and seconds < self.last_s - _RESTART_BACKSTEP_S:
            # The process was restarted into the same log without a new header: task ids start over, so
            # keys get an epoch, and this process's clock starts no earlier than the last line we saw.
            self.epoch += 1
            self.epoch_offset_s += self.last_s
            self.pending = {}
        self.last_s = seconds
        return seconds

    def _finish(self, task: str, n_cached: int, now_s: float | None) -> Request | None:
        entry = self.pending.pop(task, {})
        if self.header is None:
            return None  # not a log of ours: no model to charge it to
        session = self.header["session_id"]
        key = f"{session}:{task}" if self.epoch == 0 else f"{session}:{self.epoch}:{task}"
        prompt = entry.get("prompt")
        gen_ms = pp_ms = 0.0
        n_pp = 0
        if entry.get("tg") is not None:
            gen_ms, n_gen = entry["tg"]
            pp_ms, n_pp = entry.get("pp") or [0.0, 0]
            if prompt is None:
                # The cache holds the prompt and all generated tokens but the last, less what a context
                # shift discarded (the shift's own warning line says how many).
                prompt = n_cached - n_gen + 1 + entry.get("discarded", 0) if n_gen > 0 else n_cached
            status = "ok"
            duration = pp_ms + gen_ms
            cache = max(0, prompt - n_pp) if entry.get("pp") else 0
            tps = n_gen / (gen_ms / 1e3) if gen_ms > 0 else None
        else:
            # No completion: what the slot held when it was released tells how far it got.
            if prompt is None:
                prompt, n_gen = n_cached, 0
            else:
                n_gen = max(0, n_cached - prompt + 1) if n_cached >= prompt else 0
            status = "error" if entry.get("error") else "cancelled" if entry.get("cancelled") else "ok"
            t0 = entry.get("t0")
            duration = (now_s - t0) * 1e3 if now_s is not None and t0 is not None else 0.0
            cache, tps = 0, None
        return Request(
            prompt_ms=pp_ms,
            prompt_evaluated=int(n_pp),
            gen_ms=gen_ms,
            plan=self.header.get("plan"),
            key=key,
            session_id=session,
            model=self.header["model"],
            model_path=self.header.get("model_path") or "",
            finished=self._wall(now_s),
            tokens_in=int(prompt),
            tokens_out=int(n_gen),
            cache_tokens=int(cache),
            duration_ms=round(duration),
            tok_per_sec=tps,
            status=status,
        )

    def _wall(self, seconds: float | None) -> datetime:
        try:
            started = datetime.fromisoformat(self.header["started"])
        except (KeyError, TypeError, ValueError):
            started = datetime.now(UTC)
        if started.tzinfo is None:
            started = started.replace(tzinfo=UTC)
        return started.astimezone(UTC) + timedelta(seconds=self.epoch_offset_s + (seconds or 0.0))
