"""serve, stop, status, api-key."""

from __future__ import annotations

import argparse
import dataclasses
import signal
import threading

from ..core.serving import api_key, launch, server, supervisor
from ..core.serving import state as server_state
from ..core.serving.state import ServerPhase
from ..core.system import config
from ..core.system.errors import ExitCode
from ..core.system.settings_checks import GPU_LAYERS_RANGE
from . import figures, render
from .arg_types import float_between, host_address, int_between

SERVE_EXAMPLES = """examples:
  aidevops-local serve                         # the default (or only) model
  aidevops-local serve qwen2.5-coder-7b        # a model under ~/.aidevops/models by name
  aidevops-local serve ./model.gguf --ctx 8192 --port 8081
  aidevops-local serve --json                  # print the endpoint as JSON once healthy
  aidevops-local serve --supervise             # stay in the foreground; restart the server if it crashes
  aidevops-local serve --worker me@studio      # pool another machine's memory (SSH tunnel; see `worker`)

--supervise: after the start (or with a server already running, at once) the command stays in the
foreground and restarts the server when it exits on its own, after 2, 5, 15 then 60 s; a crash after the
last try ends it with exit status 8. Ctrl-C or SIGTERM stops the server and exits 0 (what a service
manager expects); `aidevops-local stop` from another terminal ends the supervision with exit status 0."""

STOP_EXAMPLES = """examples:
  aidevops-local stop
  aidevops-local stop --grace 30               # wait longer before SIGKILL"""

STATUS_EXAMPLES = """examples:
  aidevops-local status
  aidevops-local status --json                 # for model routing: endpoint, model, health

exit status: 0 when the server is up (running, or starting while its model loads); 3 when it is not
(stopped, stopping, or crashed)."""

API_KEY_EXAMPLES = """examples:
  aidevops-local api-key                       # is a key required, and where is it kept
  aidevops-local api-key --show                # print the key, for a client's Authorization: Bearer header
  aidevops-local api-key --rotate              # replace it (restart the server to use the new one)

The key is used when the settings file has `require_api_key = true`; `serve` then generates it once,
keeps it in the OS keyring, and gives it to llama-server in its environment (never on its command line)."""


def register(subparsers) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    _register_serve(subparsers, raw)
    _register_stop_status(subparsers, raw)


def _register_serve(subparsers, raw) -> None:
    p = subparsers.add_parser(
        "serve",
        aliases=["start"],
        help="start llama-server on 127.0.0.1 with a model",
        description="Start llama-server in the background with sensible flags and wait until it is healthy.",
        epilog=SERVE_EXAMPLES,
        formatter_class=raw,
    )
    p.add_argument("model", nargs="?", help="a .gguf path or the name of a local model (see `models`)")
    p.add_argument("--model", dest="model_option", metavar="MODEL", help="the same as the MODEL argument")
    p.add_argument(
        "--port", type=int_between(*config.PORT_RANGE), help="port to listen on (default 8080, or the settings file's)"
    )
    p.add_argument(
        "--ctx", type=int_between(*config.CTX_RANGE), help="context size in tokens (default: the largest that fits)"
    )
    p.add_argument("--ctx-size", dest="ctx", type=int_between(*config.CTX_RANGE), help="the same as --ctx")
    p.add_argument("--threads", type=int_between(*config.THREADS_RANGE), help="CPU threads (default: physical cores)")
    p.add_argument(
        "--gpu-layers",
        type=int_between(*GPU_LAYERS_RANGE),
        help="layers to offload to the GPU (default: as many as fit; 0: CPU only)",
    )
    p.add_argument(
        "--host", type=host_address, help="address to bind; anything but 127.0.0.1 exposes the model to the network"
    )
    p.add_argument(
        "--worker",
        dest="workers",
        action="append",
        metavar="WORKER",
        help="another machine whose memory this start pools: user@host (through SSH) or host:port (a network "
        "you trust); repeat for several; default: the `workers` setting",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument(
        "--supervise",
        action="store_true",
        help="stay in the foreground and restart the server if it crashes; Ctrl-C stops it (see below)",
    )
    p.set_defaults(func=cmd_serve)


def _register_stop_status(subparsers, raw) -> None:
    p = subparsers.add_parser(
        "stop",
        help="stop the server this tool started",
        description="Stop the llama-server this tool started (never any other).",
        epilog=STOP_EXAMPLES,
        formatter_class=raw,
    )
    p.add_argument(
        "--grace", type=float_between(*config.GRACE_RANGE_S), help="seconds to wait before SIGKILL (default 10)"
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_stop)

    p = subparsers.add_parser(
        "status",
        help="is the server running; model, port, memory, uptime",
        description="Report the server's state, endpoint, model, memory and uptime, and the machine's memory pressure.",
        epilog=STATUS_EXAMPLES,
        formatter_class=raw,
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_status)

    p = subparsers.add_parser(
        "api-key",
        help="the server's API key: where it is kept; show or rotate it",
        description="Report whether the server requires an API key and where the key is "
        "kept. Only --show prints the key itself.",
        epilog=API_KEY_EXAMPLES,
        formatter_class=raw,
    )
    p.add_argument("--show", action="store_true", help="print the key (creating it if the setting is on)")
    p.add_argument("--rotate", action="store_true", help="replace the key with a new one")
    p.add_argument("--json", action="store_true", help="print the result as JSON (the key only with --show)")
    p.set_defaults(func=cmd_api_key)


def cmd_serve(args) -> int:
    settings = config.load_settings()  # once, for the start, every restart and the stop
    if args.gpu_layers is not None:  # the setting of the same name, for this start and its restarts
        settings = dataclasses.replace(settings, gpu_layers=args.gpu_layers)
    if args.workers:  # likewise the workers setting
        settings = dataclasses.replace(settings, workers=args.workers)
    if args.supervise and (found := server.status(probe_health=False)).state in (
        ServerPhase.RUNNING,
        ServerPhase.STARTING,
    ):
        render.info(f"Supervising the running server: {found.model} (pid {found.pid}).")
        return _supervise(args, found, settings)
    host = args.host or settings.host  # the settings file's host is warned about like --host
    if not launch.is_loopback(host):
        unguarded = (
            ""
            if settings.require_api_key
            else (" Without an API key anyone can; set `require_api_key = true` in the settings file.")
        )
        render.warn(
            f"Binding to {host}: anyone who can reach this machine can reach the model."
            f"{unguarded} Use 127.0.0.1 unless you mean to share it."
        )
    with render.progress_bar(quiet=args.json) as progress:
        result = server.serve(
            args.model,
            port=args.port,
            ctx=args.ctx,
            host=args.host,
            threads=args.threads,
            progress=progress,
            settings=settings,
        )
    if args.json:
        render.as_json(result)
    else:
        render.info(f"Serving {result.model} (pid {result.pid}, context {result.ctx_size}).")
        if result.plan_line:
            render.info(f"Plan: {result.plan_line}.")
        if result.workers is not None:
            render.info(_workers_line(result.workers))
        if result.api_key_required:
            render.info("Clients must send the API key: `aidevops-local api-key --show` prints it.")
        print(result.endpoint, flush=True)
    return _supervise(args, result, settings) if args.supervise else ExitCode.OK


def _supervise(args, started: server.ServerStatus, settings: config.Settings) -> int:
    """In the foreground until Ctrl-C, SIGTERM, a stop from elsewhere, or a crash after the last try."""
    policy = supervisor.Supervisor()
    policy.observe(started)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restart_with(model: str | None) -> server.ServerStatus:
        return supervisor.restart(
            model, port=args.port, host=args.host, ctx=args.ctx, threads=args.threads, settings=settings
        )

    def notify(kind: str, line: str) -> None:
        (render.info if kind == "restarted" else render.warn)(line)

    try:
        outcome = supervisor.supervise(stop, restart_with, notify, policy=policy)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if outcome == "gave_up":
        render.error_text("The server keeps crashing; supervision gave up.", "See its log: `aidevops-local status`.")
        return ExitCode.SERVER_START
    if outcome == "interrupted":
        result = server.stop(settings=settings)
        render.info(result.message)
    else:
        render.info("The server was stopped; supervision ends.")
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
        shown = dataclasses.asdict(result)
        if result.running and result.model_path:  # the served model's figures, predicted beside measured
            figures.refresh_measurements()
            shown |= figures.beside(result.model_path, ctx=result.ctx_size)
        render.as_json(shown)
    else:
        _print_status(result)
    # 0 while the server is up, model loading included ("starting"); 3 when stopped, stopping or crashed.
    return ExitCode.OK if result.state in (ServerPhase.RUNNING, ServerPhase.STARTING) else ExitCode.NOT_RUNNING


def _model_text(s: server.ServerStatus) -> str | None:
    """ "Llama 3.2 3B Instruct (Llama-3.2-3B-Instruct-Q4_K_M, Q4_K_M)": the name people know, the one to type."""
    if not s.model or not s.model_path:
        return s.model
    from ..core.models import display_names

    shown = display_names.for_path(s.model_path, s.model)
    return f"{shown.name} ({', '.join(part for part in (s.model, shown.quant) if part)})"


def _print_status(s: server.ServerStatus) -> None:
    ram = (
        f"{render.human_bytes(s.ram_total_bytes - s.ram_available_bytes)} used of "
        f"{render.human_bytes(s.ram_total_bytes)} ({s.ram_used_percent:.0f}%)"
    )
    rows = [["state", s.state]]
    if s.state != ServerPhase.STOPPED:
        rows += [["model", _model_text(s)], ["endpoint", s.endpoint or f"http://{s.host}:{s.port}/v1"], ["pid", s.pid]]
    if s.running:
        rows += [["listening on", ", ".join(s.listening or []) or "-"]]
        rows += [["server memory", render.human_bytes(s.rss_bytes)]]
        if s.gpu_memory_bytes is not None:
            rows += [["GPU memory", render.human_bytes(s.gpu_memory_bytes)]]
        if s.asleep:
            rows += [["model state", "asleep after idling (memory freed); the next request wakes it"]]
        rows += [["uptime", render.human_duration(s.uptime_s)], ["context", s.ctx_size], ["build", s.build or "-"]]
        if s.plan_line:
            rows += [["plan", s.plan_line]]
        if s.router:
            rows += [["can switch to", ", ".join(m for m in s.models or [] if m != s.model) or "-"]]
        if also := (s.names or {}).get(s.model or "", [])[1:]:
            rows += [["also answers to", ", ".join(also)]]
        rows += [["API key", "required (`aidevops-local api-key --show`)" if s.api_key_required else "none"]]
        if s.workers is not None:
            rows += [["workers", _workers_line(s.workers)]]
    rows += [["system RAM", ram]]
    if s.log_path:
        rows += [["log", s.log_path]]
    render.key_values(rows)
    if s.message:
        render.warn(s.message)
    for note in s.name_notes or []:
        render.info(note)


def _workers_line(workers: list[dict]) -> str:
    """ "me@studio (31.2 GiB free at start, answers); 10.0.0.5:50052 left out: its RPC server does not answer" """
    parts = []
    for w in workers:
        if w.get("left_out"):
            parts.append(f"{w.get('why', w.get('worker'))} (left out)")
            continue
        answers = {True: ", answers", False: ", NOT ANSWERING"}.get(w.get("answers"), "")
        parts.append(f"{w.get('worker')} ({render.human_bytes(w.get('free_bytes', 0))} free at start{answers})")
    return "; ".join(parts) or "none"


def cmd_api_key(args) -> int:
    if args.rotate:
        key = api_key.rotate()
        running = server_state.running()
        if running is not None and running.api_key_required:
            render.warn(
                "The running server still takes the old key until it is restarted: "
                "`aidevops-local stop` then `aidevops-local serve`."
            )
    else:
        key = api_key.ensure() if args.show else None
    info = api_key.info()
    if args.json:
        render.as_json({**dataclasses.asdict(info), **({"key": key} if args.show else {})})
        return ExitCode.OK
    if args.show:
        render.info(f"The API key, kept in {info.where} ({info.backend}):")
        print(key)  # alone on stdout, so that KEY=$(aidevops-local api-key --show) works
        return ExitCode.OK
    render.key_values(
        [
            [
                "required",
                "yes (require_api_key = true)"
                if info.required
                else f"no (set `require_api_key = true` in {config.paths().config_file} to require one)",
            ],
            ["stored", "yes" if info.stored else "no (made the first time it is needed)"],
            ["kept in", f"{info.where} ({info.backend})"],
        ]
    )
    if not info.keyring_usable:
        render.warn(f"{info.reason} {info.hint}")
    if args.rotate:
        render.info("A new key was stored. `aidevops-local api-key --show` prints it.")
    return ExitCode.OK
