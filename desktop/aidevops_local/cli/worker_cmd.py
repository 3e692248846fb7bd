"""worker start|stop|status: this machine as a worker another machine's server offloads layers to."""

from __future__ import annotations

import argparse

from ..core.rpc import worker
from ..core.serving import launch
from ..core.system.errors import ExitCode
from . import render
from .arg_types import host_address, int_between

EXAMPLES = """examples:
  aidevops-local worker start                  # on 127.0.0.1: the main machine reaches it through SSH
  aidevops-local worker status --json          # its endpoint, devices and free memory
  aidevops-local worker stop

On the main machine: `serve --worker me@this-machine`, or `workers = ["me@this-machine"]` in the settings.
The RPC server has no authentication. `--listen ADDR` makes it reachable from other machines: only on a
network you trust, and then the main machine names it as ADDR:PORT."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "worker",
        help="lend this machine's memory to another machine's server (llama.cpp RPC)",
        description="Run llama.cpp's RPC server from the installed runtime, so that a server on another machine "
        "can put layers of a model that does not fit there on this one.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="worker_command", metavar="ACTION", required=True)
    start = sub.add_parser("start", help="start the RPC server (127.0.0.1 unless --listen)")
    start.add_argument("--listen", type=host_address, metavar="ADDR", help="an address other machines can reach")
    start.add_argument("--port", type=int_between(1, 65535), help=f"port (default {worker.DEFAULT_PORT})")
    start.add_argument("--cache", action="store_true", help="keep received tensors in a local cache (faster reloads)")
    start.add_argument("--json", action="store_true", help="print the result as JSON")
    start.set_defaults(func=cmd_start)
    stop = sub.add_parser("stop", help="stop the RPC server this tool started")
    stop.add_argument("--json", action="store_true", help="print the result as JSON")
    stop.set_defaults(func=cmd_stop)
    status = sub.add_parser("status", help="is it running; its endpoint, devices and free memory")
    status.add_argument("--json", action="store_true", help="print the result as JSON")
    status.set_defaults(func=cmd_status)


def cmd_start(args) -> int:
    listen = args.listen if args.listen and not launch.is_loopback(args.listen) else None
    if listen:
        render.warn(
            f"The worker listens on {listen}: anyone who can reach that address can use this machine's memory "
            "and read the model and prompts sent to it (llama.cpp's RPC server has no authentication). Use it "
            "only on a network you trust; without --listen the main machine reaches it through SSH."
        )
    result = worker.start(listen=listen, port=args.port, cache=args.cache)
    return _show(result, args.json)


def cmd_stop(args) -> int:
    stopped = worker.stop()
    if args.json:
        render.as_json({"stopped": stopped})
    else:
        render.info("Stopped the worker." if stopped else "No worker of ours is running.")
    return ExitCode.OK


def cmd_status(args) -> int:
    result = worker.status()
    _show(result, args.json)
    return ExitCode.OK if result.running else ExitCode.NOT_RUNNING


def _show(result: worker.WorkerStatus, as_json: bool) -> int:
    if as_json:
        render.as_json(result.as_json())
        return ExitCode.OK
    if not result.running:
        render.info("No worker is running. Start one with `aidevops-local worker start`.")
        return ExitCode.OK
    rows = [["state", "running"], ["endpoint", result.endpoint], ["pid", result.pid]]
    for device in result.devices or []:
        free, total = render.human_bytes(device.free_bytes), render.human_bytes(device.total_bytes)
        rows.append([device.name, f"{device.description}: {free} free of {total}"])
    rows.append(["reachable from", "this machine only (SSH brings others)" if result.loopback else "the network"])
    render.key_values(rows)
    return ExitCode.OK
