"""benchmark: a model's prompt and generation speed on this machine."""

from __future__ import annotations

import argparse
import dataclasses

from ..core.system import config
from ..core.system.errors import ExitCode
from ..core.system.settings_checks import GPU_LAYERS_RANGE
from . import render
from .arg_types import int_between

BENCHMARK_EXAMPLES = """examples:
  aidevops-local benchmark                       # the running server's model, or the default one
  aidevops-local benchmark --model qwen2.5-coder-7b
  aidevops-local benchmark --model ./model.gguf --json

With a server running, it measures that server (which must serve the model named) and leaves it running.
With none, it serves the model for the measurement (on --port, with --ctx-size, --threads, --gpu-layers) and
stops it afterwards. The request is logged in `usage` like any other."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "benchmark",
        help="measure a model's prompt and generation speed (tokens/s) here",
        description="Send one request to the local server and report how fast the model read the prompt and "
        "wrote its answer, in tokens per second.",
        epilog=BENCHMARK_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", help="a .gguf path or the name of a local model (default: the served or default one)")
    p.add_argument("--port", type=int_between(*config.PORT_RANGE), help="port for a server started for it")
    p.add_argument("--ctx", "--ctx-size", type=int_between(*config.CTX_RANGE), help="its context size in tokens")
    p.add_argument("--threads", type=int_between(*config.THREADS_RANGE), help="its CPU threads")
    p.add_argument("--gpu-layers", type=int_between(*GPU_LAYERS_RANGE), help="its layers offloaded to the GPU")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_benchmark)


def cmd_benchmark(args) -> int:
    from ..core.serving import benchmark

    settings = config.load_settings()
    if args.gpu_layers is not None:
        settings = dataclasses.replace(settings, gpu_layers=args.gpu_layers)
    render.info("Measuring" + (f" {args.model}" if args.model else "") + "...")
    with render.progress_bar(quiet=args.json) as progress:
        result = benchmark.run(
            args.model, port=args.port, ctx=args.ctx, threads=args.threads, settings=settings, progress=progress
        )
    if args.json:
        render.as_json(result)
        return ExitCode.OK
    render.key_values(
        [
            ["model", result.model],
            ["prompt", f"{result.prompt_tokens_per_s:.1f} tokens/s ({result.prompt_tokens} tokens)"],
            ["generation", f"{result.generation_tokens_per_s:.1f} tokens/s ({result.generated_tokens} tokens)"],
            ["server", "started for this and stopped" if result.started_server else f"running at {result.endpoint}"],
        ]
    )
    return ExitCode.OK
