"""The busy readout: a request's lines in the server's log since the last poll mean it is answering, and the
last "eval time" line gives its tokens per second; an idle log is not read at all."""

from __future__ import annotations

from aidevops_local.core.serving.server import ServerStatus
from aidevops_local.core.serving.state import ServerPhase
from aidevops_local.tray import throughput

TASK = "slot launch_slot_: id  0 | task 7 | processing task\n"
TIMINGS = (
    "slot print_timing: id  0 | task 7 | \n"
    "prompt eval time =     113.13 ms /    31 tokens (    3.65 ms per token,   274.02 tokens per second)\n"
    "       eval time =     500.00 ms /    21 tokens (   23.81 ms per token,    42.00 tokens per second)\n"
)


def test_a_growing_log_is_activity_with_the_latest_speed(tmp_path):
    log = tmp_path / "llama-server.log"
    log.write_text("# aidevops-local {}\nmain: server is listening\n")
    status = ServerStatus(state=ServerPhase.RUNNING, running=True, log_path=str(log))
    first = throughput.activity(status, None)
    assert not first.active and first.text == ""  # a first look: what came before is not "now"
    with open(log, "a") as f:
        f.write(TASK)
    busy = throughput.activity(status, first)
    assert busy.active and busy.text == "Answering requests"
    with open(log, "a") as f:
        f.write(TIMINGS)
    done = throughput.activity(status, busy)
    assert done.active and done.text == "Answering requests · 42 tokens/s"
    idle = throughput.activity(status, done)
    assert not idle.active and idle.tokens_per_s == 42.0
    with open(log, "a") as f:
        f.write("srv  log_server_r: request: GET /health 127.0.0.1 200\n")  # our own probe: not a request
    assert not throughput.activity(status, idle).active
    stopped = ServerStatus(state=ServerPhase.STOPPED, running=False)
    assert throughput.activity(stopped, idle) == throughput.Activity()
