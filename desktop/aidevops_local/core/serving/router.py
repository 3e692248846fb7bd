"""llama-server's router mode: one server process that loads and unloads models on request.

Newer llama.cpp builds take ``--models-dir``/``--models-preset`` and ``--models-max``, answer ``GET /models``
with each model's load state, and accept ``POST /models/load`` and ``/models/unload``. What a build supports
comes from build_features (its ``--help``, read once and cached). launch.plan_launch starts a router where
the build has it (over a preset file listing every local model with its own plan). This module is only a
client of those endpoints; it knows nothing of our server's state file or processes, so server.py can use it.
Switching model (a load request here, or a stop and a start) is supervisor.switch_model's.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..llamacpp import build_features
from ..system import local_http
from ..system.errors import LocalModelsError, ModelNotFound, ServerNotRunning
from ..system.progress import ProgressCallback, check_cancelled, report


@dataclass(frozen=True)
class RouterSupport:
    router: bool = False  # --models-dir and /models/load
    presets: bool = False
    models_max: bool = False
    sleep_idle: bool = False  # --sleep-idle-seconds (also outside router mode)


@dataclass(frozen=True)
class RouterModel:
    id: str
    state: str  # "loaded", "sleeping" (idle unload: the next request wakes it), "loading", "unloaded"
    path: str = ""  # the --model it runs
    ctx_size: int | None = None  # its --ctx-size (its own plan's)
    failed: bool = False  # its last load failed (the router keeps the exit status until the next load)
    exit_code: int | None = None
    aliases: tuple[str, ...] = ()  # the other names a request may give it (builds whose presets take aliases)

    @property
    def serving(self) -> bool:
        """Loaded, awake or asleep: requests naming it are answered without a load."""
        return self.state in ("loaded", "sleeping")


def support(binary: Path) -> RouterSupport:
    return from_features(build_features.features(binary))


def from_features(found: build_features.BuildFeatures) -> RouterSupport:
    return RouterSupport(
        router=found.router, presets=found.models_preset, models_max=found.models_max, sleep_idle=found.sleep_idle
    )


# ---- talking to a running router ---------------------------------------------------------------------------


def models(base_url: str, *, timeout: float = 2.0, headers: dict[str, str] | None = None) -> list[RouterModel] | None:
    """The router's models and their states; None when the server is not a router (or does not answer).
    ``headers``: the API key's, when the server requires one (api_key.headers). An entry with no model file
    (keys before a preset file's first section make one, named "default") is left out: it cannot load."""
    body = local_http.get_json(base_url, "/models", timeout=timeout, headers=headers)
    data = body.get("data") if isinstance(body, dict) else None
    if not data or not all(isinstance(m, dict) and isinstance(m.get("status"), dict) for m in data):
        return None
    found = []
    for m in data:
        status = m["status"]
        args = status.get("args") or []
        path = _arg(args, "--model", "-m")
        if path:
            code = status.get("exit_code")
            ctx = _arg(args, "--ctx-size", "-c")
            found.append(
                RouterModel(
                    id=str(m.get("id")),
                    state=str(status.get("value", "")),
                    path=path,
                    ctx_size=int(ctx) if ctx.isdigit() else None,
                    failed=bool(status.get("failed")),
                    exit_code=code if isinstance(code, int) else None,
                    aliases=tuple(str(a) for a in m.get("aliases") or () if a != m.get("id")),
                )
            )
    return found


def _arg(args: list, *names: str) -> str:
    for flag, value in zip(args, args[1:]):
        if flag in names:
            return str(value)
    return ""


def loaded(base_url: str, *, headers: dict[str, str] | None = None) -> list[str]:
    return [m.id for m in models(base_url, headers=headers) or [] if m.serving]


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
        hint="It offers the models that were on disk when it started; restart it to offer newer ones.",
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
    """Ask the router to load a model and wait until it reports it loaded. The router resets a model's
    state when the request arrives, so "unloaded" afterwards means this load failed (or was undone)."""
    task = f"Loading {model_id}"
    if (found := _find(base_url, model_id, headers)) is not None and found.serving:
        report(progress, task, 1, 1, unit="step")
        return
    _post(base_url, "load", model_id, headers)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        check_cancelled(cancel)
        found = _find(base_url, model_id, headers)
        if found is not None and found.serving:
            report(progress, task, 1, 1, unit="step")
            return
        failed = found is not None and found.failed
        if found is not None and found.state == "unloaded":
            raise LocalModelsError(
                f"llama-server could not load {model_id}."
                if failed
                else f"{model_id} was unloaded before it finished loading (another load took its place).",
                hint="See the server log (Show log, or the log path in `aidevops-local status`) for the reason."
                if failed
                else "Try again.",
            )
        report(progress, task, 0, None, unit="step")
        time.sleep(0.1)
    raise LocalModelsError(
        f"{model_id} did not finish loading within {timeout:.0f} s.",
        hint="A large model on a slow disk takes longer; try again.",
    )


def _find(base_url: str, model_id: str, headers: dict[str, str] | None) -> RouterModel | None:
    return next((m for m in models(base_url, headers=headers) or [] if m.id == model_id), None)


def unload(base_url: str, model_id: str, *, headers: dict[str, str] | None = None) -> None:
    _post(base_url, "unload", model_id, headers)


def _post(base_url: str, verb: str, model_id: str, headers: dict[str, str] | None) -> None:
    # local_http, never a client that honours HTTP_PROXY: the request may carry the API key.
    answer = local_http.post_json(base_url, f"/models/{verb}", {"model": model_id}, timeout=10, headers=headers)
    if answer is None:
        raise ServerNotRunning(f"The server at {base_url} did not answer.", hint="Start it again.")
    status_code, text = answer[0], answer[1].decode("utf-8", errors="replace")
    if verb == "load" and status_code == 400 and "already" in text:
        return  # loaded (or loading) since we looked: the wait that follows sees it
    if status_code == 404:
        raise ModelNotFound(
            f"The running server does not offer {model_id}.", hint="`aidevops-local status` lists the models it offers."
        )
    if status_code >= 400:
        raise LocalModelsError(f"The server refused to {verb} {model_id} ({status_code}).", hint=text[:200])
