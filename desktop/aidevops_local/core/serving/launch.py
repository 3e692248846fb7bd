"""What a server start will be, decided (and refused) before any process exists: the model and its checks,
the memory plan, the port, and llama-server's argv. server.serve runs the plan.

Where the build has router mode (and the router_mode setting is on), the server is a router: argv carries
``--models-preset`` with an INI file that lists every local model with its own memory plan (context, slots,
GPU layers, prompt cache), ``--models-max 1`` (the plans assume one model in memory), and the chosen model
marked to load at start. Switching is then a load request (router.py); llama-server spawns each model as a
child on 127.0.0.1 and loads a listed model on request by its name. Older builds get ``--model``.

Security lives here too: 127.0.0.1 unless asked; CORS limited to localhost origins where the build has the
flag; an API key only where the build can take it from its environment (it never goes on the command line).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..llamacpp import build_features
from ..system import backends, config, hardware
from ..system.errors import CorruptModel, Refused
from ..system.progress import ProgressCallback
from . import api_key, host_guard, pooling, router_preset

if TYPE_CHECKING:
    from ..models.model_names import ModelNames
    from ..rpc.pool import Pool


@dataclass
class LaunchPlan:
    model: str
    model_path: Path
    binary: Path
    argv: list[str]
    host: str
    port: int
    ctx_size: int
    parallel: int
    gpu_layers: int
    build: str
    api_key_required: bool = False
    router: bool = False  # a router over `preset`: the models it can load, each with its plan
    preset: str = ""  # the --models-preset file's text, written to preset_path by server.serve
    preset_path: Path | None = None
    threads: int | None = None  # --threads as asked (None: the setting's, else the physical cores)
    upstream: str = ""  # llama-server's UNIX socket; the Host-checking front (host_guard) listens on host:port
    names: ModelNames | None = None  # the other names each offered model answers to (model_names)
    pool: Pool | None = None  # workers on other machines this start offloads layers to (--rpc)
    choice: str = ""  # the plan in one line: where the layers go and why

    def close(self) -> None:
        """The SSH tunnels opened for this plan: a plan that does not become a running server leaves none."""
        if self.pool is not None:
            self.pool.close()

    @property
    def front_aliases(self) -> dict[str, str]:
        """alias -> model name, for the front to put in a request where the router cannot resolve aliases itself
        (a build whose --alias takes one name): empty where the router does, or one model answers to any name."""
        if not self.router or self.names is None or build_features.features(self.binary).model_aliases:
            return {}
        return self.names.owner_of()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_port_free(host: str, port: int) -> None:
    """PortInUse (or ServerStartFailed) now, before anything is written or started."""
    host_guard.bind(host, port).close()


def plan_launch(
    model: str | None = None,
    *,
    port: int | None = None,
    ctx: int | None = None,
    host: str | None = None,
    threads: int | None = None,
    settings: config.Settings | None = None,
    pool: Pool | None = None,
) -> LaunchPlan:
    """Everything about a start that can be decided (and refused) before a process exists. ``pool``: the
    workers reached for this start (rpc/pool.py): their memory joins the plan as offload devices."""
    from ..llamacpp import runtime  # imported here: status must not pay for them
    from ..models import inventory, library

    settings = settings or config.load_settings()
    binary = runtime.find_llama_server()
    installed = runtime.installed_runtime()
    local = library.resolve_model(model or None, settings=settings)
    hw = hardware.detect(server=binary)
    # A system llama-server's backend is unknown: assume it was built for this machine's best one.
    backend = installed.backend if installed and installed.backend in backends.BACKENDS else hw.best_backend
    features = build_features.features(binary)
    _check_socket(features, installed.tag if installed else str(binary))
    hw, backend, rpc, split = pooling.devices(hw, backend, pool)
    planner = _ModelPlanner(hw, backend, features, settings, rpc=rpc, split=split)
    chosen = planner.plan(local, ctx=ctx)  # its checks raise; a model listed beside it is skipped instead
    pooling.check_fits(pool, chosen.fits, local.name)
    inventory.remember(local)  # only a model that passed its checks enters the inventory
    host, port = host or settings.host, port or settings.port
    _check_api_key(features, settings)
    upstream = str(host_guard.socket_path(config.paths().app_dir))
    common = _common_args(upstream, port, threads or settings.threads or hw.threads, features, settings)
    extra = list(settings.extra_server_args)
    use_router = _use_router(features, settings, local)
    argv, preset, preset_path, names = _server_argv(binary, local, chosen, planner, common, extra, use_router)
    return LaunchPlan(
        model=local.name,
        model_path=local.path,
        binary=binary,
        argv=argv,
        host=host,
        port=port,
        ctx_size=chosen.ctx_size,
        parallel=chosen.parallel,
        gpu_layers=chosen.gpu_layers,
        build=installed.build if installed else "",
        api_key_required=settings.require_api_key,
        router=use_router,
        preset=preset,
        preset_path=preset_path,
        threads=threads,
        upstream=upstream,
        names=names,
        pool=pool,
        choice=chosen.choice,
    )


def plan_with_workers(
    model: str | None, settings: config.Settings, progress: ProgressCallback | None, **where
) -> LaunchPlan:
    """plan_launch, with the settings' workers reached first; a plan that refuses leaves no tunnel open."""
    pool = pooling.reach(settings, progress)
    try:
        return plan_launch(model, settings=settings, pool=pool, **where)
    except BaseException:
        if pool is not None:
            pool.close()
        raise


def _server_argv(binary: Path, local, chosen: _ModelArgs, planner: _ModelPlanner, common, extra, use_router: bool):
    """(argv, preset text, preset path, names): a router over every local model's plan, or one model."""
    from ..models import model_names

    if use_router:
        per_model = chosen.args  # what usage's log flags must know of (speculative decoding comes via extra)
        sections, names = router_preset.named_sections(
            local,
            chosen.args,
            lambda other: planner.plan(other).args,
            aliases_in_preset=planner.features.model_aliases,
        )
        preset, preset_path = router_preset.preset_ini(sections), config.paths().router_presets
        argv = [str(binary), "--models-preset", str(preset_path), "--models-max", "1", *common]
    else:
        per_model = chosen.args + ["--alias", local.name]
        argv = [str(binary), *per_model, *common]
        preset, preset_path, names = "", None, model_names.assign([local])  # it answers to any name
    return argv + _log_args(binary, per_model + common + extra) + extra, preset, preset_path, names


def _common_args(
    upstream: str, port: int, threads: int, features: build_features.BuildFeatures, settings: config.Settings
) -> list[str]:
    """The flags of every start, single-model or router: where it listens, its threads, CORS, idle unload."""
    common = ["--host", upstream, "--port", str(port), "--jinja", "--threads", str(threads)]
    return common + _cors_args(features, settings.extra_server_args) + _idle_args(features, settings.idle_unload_s)


def _check_socket(features: build_features.BuildFeatures, build: str) -> None:
    if features.help_ran and not features.unix_socket:
        raise Refused(
            f"This llama-server build ({build}) cannot listen on a UNIX "
            "socket, which the server needs behind its Host check (builds from March 2025 on can).",
            hint="Run `aidevops-local update` for a newer build, or install one with --use-system.",
        )


def _check_api_key(features: build_features.BuildFeatures, settings: config.Settings) -> None:
    if settings.require_api_key and not features.api_key_env:
        raise Refused(
            "require_api_key is on, but this llama-server build does not read an API key from its "
            "environment (LLAMA_API_KEY), and the key is never put on its command line.",
            hint=f"Run `aidevops-local update` for a newer build. {api_key.turn_off_hint()}",
        )


def _use_router(features: build_features.BuildFeatures, settings: config.Settings, local) -> bool:
    """A router's model instances listen on 127.0.0.1 ports of their own, guarded by a per-run key that only a
    build reading LLAMA_API_KEY from its environment can take (host_guard_front.Front)."""
    return bool(
        settings.router_mode
        and features.router
        and features.models_preset
        and features.models_max
        and features.api_key_env
        and router_preset.ini_safe(local.name, str(local.path))
    )


@dataclass
class _ModelArgs:
    args: list[str]  # --model and its plan, as flags
    ctx_size: int
    parallel: int
    gpu_layers: int
    kind: str = "chat"  # chat, embedding or reranking (models.model_kind): the latter two get their flags
    choice: str = ""  # where the layers go, and why (offload.choice)
    fits: bool = True


class _ModelPlanner:
    """Checks one model and plans its start: the same for the chosen model and every model a router lists."""

    def __init__(self, hw, backend: str, features, settings: config.Settings, rpc: str = "", split: bool = True):
        self.hw, self.backend, self.features, self.settings = hw, backend, features, settings
        self.rpc = rpc  # --rpc: the workers' endpoints, for every model the start offers
        self.split = split  # whether the plan's --tensor-split names every device llama-server will use

    def plan(self, local, *, ctx: int | None = None) -> _ModelArgs:
        """``ctx``: this start's --ctx, for the chosen model only; the others get the setting or their fit."""
        from ..models import fit, model_kind  # imported here, like the rest of a start's needs: status must not pay

        _check_model_intact(local)
        header = _validate_model(local.path)
        kind = model_kind.kind_of(header)
        settings = self.settings
        plan = fit.plan_server(
            header=header,
            hardware=self.hw,
            ctx=ctx or settings.ctx_size or None,
            parallel=settings.parallel or None,
            backend=self.backend,
        )
        gpu_layers = settings.gpu_layers if settings.gpu_layers >= 0 else plan.gpu_layers
        args = [
            "--model",
            str(local.path),
            "--ctx-size",
            str(plan.ctx_size),
            "--parallel",
            str(plan.parallel),
            "--n-gpu-layers",
            str(gpu_layers),
        ]
        # Several GPUs (or workers): each takes layers by its free memory.
        if plan.tensor_split and settings.gpu_layers < 0 and self.split:
            args += ["--tensor-split", ",".join(f"{share:g}" for share in plan.tensor_split)]
        if self.rpc:
            args += ["--rpc", self.rpc]
        args += _cache_args(self.features, settings.extra_server_args, plan.cache_ram_mib)
        args += _kind_args(self.features, kind)
        return _ModelArgs(
            args,
            ctx_size=plan.ctx_size,
            parallel=plan.parallel,
            gpu_layers=gpu_layers,
            kind=kind,
            choice=plan.choice,
            fits=plan.fits,
        )


def _kind_args(features: build_features.BuildFeatures, kind: str) -> list[str]:
    """An embedding model answers /v1/embeddings only with --embedding, a reranker /v1/rerank only with
    --reranking (and rank pooling, said outright where the build knows it). A chat model gets neither: the
    flag would restrict it to vectors. A build without --reranking at least serves a reranker's vectors."""
    if kind == "reranking" and features.reranking:
        return ["--reranking"] + (["--pooling", "rank"] if features.pooling_rank else [])
    if kind in ("embedding", "reranking") and features.embedding:
        return ["--embedding"]
    return []


def _cors_args(features: build_features.BuildFeatures, extra: list[str]) -> list[str]:
    """Only localhost origins may read answers in a browser. Builds without the flag allow every origin, and
    one the user chose (extra_server_args, LLAMA_ARG_CORS_ORIGINS) is theirs to keep."""
    chosen = "--cors-origins" in extra or "LLAMA_ARG_CORS_ORIGINS" in config.llama_arg_env()
    if not features.cors_localhost or chosen:
        return []
    return ["--cors-origins", "localhost"]


def _cache_args(features: build_features.BuildFeatures, extra: list[str], cache_ram_mib: int) -> list[str]:
    """The prompt cache grows to 8 GiB by default, which the fit plan never counted: cap it at what the plan
    leaves spare (0 turns it off), unless the user set it."""
    if not features.cache_ram or {"--cache-ram", "-cram"} & set(extra):
        return []
    return ["--cache-ram", str(max(0, cache_ram_mib))]


def _idle_args(features: build_features.BuildFeatures, idle_unload_s: int) -> list[str]:
    """The idle-unload setting, where the build can sleep (it frees the model's memory until a request)."""
    if idle_unload_s > 0 and features.sleep_idle:
        return ["--sleep-idle-seconds", str(int(idle_unload_s))]
    return []


def _check_model_intact(local) -> None:
    """Cheap checks (a stat per file) that keep an unverified file from being served: an unfinished
    download, or a pulled file whose size changed since its hash was checked. `doctor --hashes` re-hashes."""
    partial = config.paths().partial_dir.resolve()
    if any(partial in f.resolve().parents for f in local.files):
        raise Refused(
            f"{local.path} is an unfinished download; it has not been verified.",
            hint="Pull the model again to finish and verify it, then serve it by name.",
        )
    if local.source != "pulled" or not local.size_bytes:
        return
    try:
        actual = sum(f.stat().st_size for f in local.files)
    except OSError:
        return  # a missing file is reported by the loader's own check just after
    if actual != local.size_bytes:
        again = f"`aidevops-local pull {local.repo}`" if local.repo else "`aidevops-local pull`"
        raise CorruptModel(
            f"{local.name} has changed on disk since it was pulled and verified "
            f"({actual} bytes, {local.size_bytes} recorded).",
            hint=f"Pull it again with {again}; `aidevops-local doctor --hashes` checks every model.",
        )


def _validate_model(path: Path):
    from ..models.gguf_meta import validate_gguf

    return validate_gguf(path)


def _log_args(binary: Path, server_args: list[str]) -> list[str]:
    """The flags that make llama-server log what usage accounting reads. Given the rest of argv, usage asks
    for trace verbosity (4-9 times the log volume) only where speculative decoding may be on."""
    from ..accounting import usage  # imported here: status must not pay for peewee

    return usage.llama_server_log_args(server_binary=binary, server_args=server_args)
