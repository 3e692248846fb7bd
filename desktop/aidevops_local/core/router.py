"""llama-server's router mode: one server process that loads and unloads models on request.

Newer llama.cpp builds take ``--models-dir``/``--models-preset`` and ``--models-max``, answer ``GET /models``
with each model's load state, and accept ``POST /models/load`` and ``/models/unload``. Where the running
server is a router, switching model is a load request to it; otherwise it is a stop and a start. What a build
supports comes from build_features (its ``--help``, read once and cached).

Starting in router mode is not wired yet: launch.plan_launch always passes ``--model``, so today a server we
start is a single-model one and switching restarts it; :func:`router_args` is what it would pass instead.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from . import build_features
from .errors import LocalModelsError, ModelNotFound, ServerNotRunning
from .progress import ProgressCallback, check_cancelled, report


@dataclass(frozen=True)
class RouterSupport:
    router: bool = False  # --models-dir and /models/load
    presets: bool = False
    models_max: bool = False
    sleep_idle: bool = False  # --sleep-idle-seconds (also outside router mode)


@dataclass(frozen=True)
class RouterModel:
    id: str
    state: str  # "loaded", "loading", "unloaded", "failed" (what the router reports)
    path: str = ""  # the --model it runs, when the router says


def support(binary: Path) -> RouterSupport:
    return from_features(build_features.features(binary))


def from_features(found: build_features.BuildFeatures) -> RouterSupport:
    return RouterSupport(router=found.router, presets=found.models_preset, models_max=found.models_max,
                         sleep_idle=found.sleep_idle)


def router_args(models_dir: Path, *, models_max: int = 1, preset: Path | None = None) -> list[str]:
    """The flags that start llama-server as a router over ``models_dir`` (in place of --model)."""
    args = ["--models-dir", str(models_dir), "--models-max", str(models_max)]
    if preset is not None:
        args += ["--models-preset", str(preset)]
    return args


# ---- talking to a running router ---------------------------------------------------------------------------


def models(
    base_url: str, *, timeout: float = 2.0, headers: dict[str, str] | None = None
) -> list[RouterModel] | None:
    """The router's models and their states; None when the server is not a router (or does not answer).
    ``headers``: the API key's, when the server requires one (api_key.headers)."""
    try:
        response = httpx.get(f"{base_url}/models", timeout=timeout, headers=headers)
        data = response.json().get("data", []) if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    if not data or not all(isinstance(m, dict) and isinstance(m.get("status"), dict) for m in data):
        return None
    return [
        RouterModel(
            id=str(m.get("id")),
            state=str(m["status"].get("value", "")),
            path=_model_arg(m["status"].get("args") or []),
        )
        for m in data
    ]


def _model_arg(args: list) -> str:
    for flag, value in zip(args, args[1:]):
        if flag in ("--model", "-m"):
            return str(value)
    return ""


def loaded(base_url: str, *, headers: dict[str, str] | None = None) -> list[str]:
    return [m.id for m in models(base_url, headers=headers) or [] if m.state == "loaded"]


def router_id(available: list[RouterModel], name: str, path: Path | None = None) -> str:
    """The router's id for a local model: by file path when known, else by name."""
    if path is not None:
        for m in available:
            if m.path and Path(m.path).resolve() == path.resolve():
                return m.id
    for m in available:
        if m.id == name:
            return m.id
    raise ModelNotFound(
        f"The running server does not offer {name}.",
        hint="It lists the models in its models folder; pull the model there, or restart the server.",
    )


def load(
    base_url: str,
    model_id: str,
    *,
    timeout: float = 120.0,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    headers: dict[str, str] | None = None,
) -> None:
    """Ask the router to load a model and wait until it reports it loaded."""
    _post(base_url, "load", model_id, headers)
    deadline = time.monotonic() + timeout
    task = f"Loading {model_id}"
    while time.monotonic() < deadline:
        check_cancelled(cancel)
        state = next((m.state for m in models(base_url, headers=headers) or [] if m.id == model_id), "")
        if state == "loaded":
            report(progress, task, 1, 1, unit="step")
            return
        if state == "failed":
            raise LocalModelsError(
                f"llama-server could not load {model_id}.",
                hint="See the server log (Show log) for the reason.",
            )
        report(progress, task, 0, None, unit="step")
        time.sleep(0.2)
    raise LocalModelsError(
        f"{model_id} did not finish loading within {timeout:.0f} s.",
        hint="A large model on a slow disk takes longer; try again.",
    )


def unload(base_url: str, model_id: str, *, headers: dict[str, str] | None = None) -> None:
    _post(base_url, "unload", model_id, headers)


def _post(base_url: str, verb: str, model_id: str, headers: dict[str, str] | None) -> None:
    try:
        response = httpx.post(
            f"{base_url}/models/{verb}", json={"model": model_id}, timeout=10, headers=headers
        )
    except httpx.HTTPError as exc:
        raise ServerNotRunning(
            f"The server at {base_url} did not answer: {type(exc).__name__}", hint="Start it again."
        ) from None
    if response.status_code == 404:
        raise ModelNotFound(
            f"The running server does not offer {model_id}.", hint="It lists the models in its models folder."
        )
    if response.status_code >= 400:
        raise LocalModelsError(
            f"The server refused to {verb} {model_id} ({response.status_code}).", hint=response.text[:200]
        )


def switch_model(
    name: str, *, progress: ProgressCallback | None = None, cancel: threading.Event | None = None
):
    """Serve ``name`` instead of what runs now: a load request to a running router, else stop and start.
    Returns the server's status afterwards."""
    from . import api_key, library, server

    state = server.current_state()
    if state is not None and server.owned_process(state) is not None:
        headers = api_key.headers(required=state.api_key_required)
        available = models(state.base_url, headers=headers)
        if available is not None:
            local = library.resolve_model(name)
            load(
                state.base_url,
                router_id(available, name, local.path),
                progress=progress,
                cancel=cancel,
                headers=headers,
            )
            return server.status()
        report(progress, f"Stopping {state.model}", 0, None, unit="step")
        server.stop()
    check_cancelled(cancel)
    return server.serve(name, progress=progress)
