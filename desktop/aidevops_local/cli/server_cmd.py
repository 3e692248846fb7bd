"""serve, stop, status."""

from __future__ import annotations

import argparse

from ..core import server
from ..core.errors import ExitCode
from . import render

SERVE_EXAMPLES = """examples:
  aidevops-local serve                         # the default (or only) model
  aidevops-local serve qwen2.5-coder-7b        # a model under ~/.aidevops/models by name
  aidevops-local serve ./model.gguf --ctx 8192 --port 8081
  aidevops-local serve --json                  # print the endpoint as JSON once healthy"""

STOP_EXAMPLES = """examples:
  aidevops-local stop
  aidevops-local stop --grace 30               # wait longer before SIGKILL"""

STATUS_EXAMPLES = """examples:
  aidevops-local status
  aidevops-local status --json                 # for model routing: endpoint, model, health

exit status: 0 when the server is running and healthy; 3 otherwise (stopped, still starting, or crashed)."""


def register(subparsers) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser("serve", help="start llama-server on 127.0.0.1 with a model",
                              description="Start llama-server in the background with sensible flags and wait "
                                          "until it is healthy.", epilog=SERVE_EXAMPLES, formatter_class=raw)
    p.add_argument("model", nargs="?", help="a .gguf path or the name of a local model (see `models`)")
    p.add_argument("--port", type=int, help="port to listen on (default 8080, or the settings file's)")
    p.add_argument("--ctx", type=int, help="context size in tokens (default: the largest that fits)")
    p.add_argument("--threads", type=int, help="CPU threads (default: physical cores)")
    p.add_argument("--host", help="address to bind; anything but 127.0.0.1 exposes the model to the network")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_serve)

    p = subparsers.add_parser("stop", help="stop the server this tool started",
                              description="Stop the llama-server this tool started (never any other).",
                              epilog=STOP_EXAMPLES, formatter_class=raw)
    p.add_argument("--grace", type=float, help="seconds to wait before SIGKILL (default 10)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_stop)

    p = subparsers.add_parser("status", help="is the server running; model, port, memory, uptime",
                              description="Report the server's state, endpoint, model, memory and uptime, and "
                                          "the machine's memory pressure.", epilog=STATUS_EXAMPLES,
                              formatter_class=raw)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_status)


def cmd_serve(args) -> int:
    if args.host and not server.is_loopback(args.host):
        render.warn(f"Binding to {args.host}: anyone who can reach this machine can use the model. "
                    "Use 127.0.0.1 unless you mean to share it.")
    with render.progress_bar(quiet=args.json) as progress:
        result = server.serve(args.model, port=args.port, ctx=args.ctx, host=args.host, threads=args.threads,
                              progress=progress)
    if args.json:
        render.as_json(result)
    else:
        render.info(f"Serving {result.model} (pid {result.pid}, context {result.ctx_size}).")
        print(result.endpoint)
    return ExitCode.OK


def cmd_stop(args) -> int:
    result = server.stop(grace=args.grace)
    if result.warning:
        render.warn(result.warning)
    if args.json:
        render.as_json(result)
    else:
        render.info(result.message)
    return ExitCode.OK


def cmd_status(args) -> int:
    result = server.status()
    if args.json:
        render.as_json(result)
    else:
        _print_status(result)
    return ExitCode.OK if result.state == "running" else ExitCode.NOT_RUNNING


def _print_status(s: server.ServerStatus) -> None:
    ram = (f"{render.human_bytes(s.ram_total_bytes - s.ram_available_bytes)} used of "
           f"{render.human_bytes(s.ram_total_bytes)} ({s.ram_used_percent:.0f}%)")
    rows = [["state", s.state]]
    if s.state != "stopped":
        rows += [["model", s.model], ["endpoint", s.endpoint or f"http://{s.host}:{s.port}/v1"], ["pid", s.pid]]
    if s.running:
        rows += [["server memory", render.human_bytes(s.rss_bytes)]]
        if s.gpu_memory_bytes is not None:
            rows += [["GPU memory", render.human_bytes(s.gpu_memory_bytes)]]
        rows += [["uptime", render.human_duration(s.uptime_s)], ["context", s.ctx_size], ["build", s.build or "-"]]
    rows += [["system RAM", ram]]
    if s.log_path:
        rows += [["log", s.log_path]]
    render.key_values(rows)
    if s.message:
        render.warn(s.message)
