"""What the tray shows, gathered in one worker call: the menu, the icon and the windows read this snapshot and
never touch the disk, the network or a process themselves.

A quick refresh (every few seconds) asks only the server; a full one (on menu open, after a job, every
minute) also lists models with their fit, stale models and what the runtime supports. Qt-free, so the
benchmarks and tests can call it directly.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..core.models import display_names
from ..core.serving import router, server
from ..core.serving import state as server_state
from ..core.serving.state import ServerPhase
from ..core.system import config, hardware
from ..core.system.errors import LocalModelsError
from . import throughput

log = logging.getLogger(__name__)
PRESSURE_WARN_PERCENT = 90.0
PRESSURE_CRITICAL_PERCENT = 95.0


@dataclass(frozen=True)
class ModelEntry:
    name: str  # the tool's name for it (what a request and the CLI say)
    path: str
    quant: str = ""
    size_bytes: int = 0
    fits: bool | None = None  # None: not known
    needs_bytes: int | None = None  # predicted memory when served
    display: str = ""  # the name a person recognises (core/models/display_names.py); "" before it is known

    @property
    def title(self) -> str:
        return self.display or display_names.clean_stem(self.name)

    @property
    def detail(self) -> str:
        """ "Q4_K_M · 2.0 GB": the quant once, and the size."""
        return display_names.DisplayName(self.title, self.quant, self.size_bytes).detail


@dataclass(frozen=True)
class StaleSummary:
    count: int
    size_bytes: int


@dataclass(frozen=True)
class Snapshot:
    status: server.ServerStatus
    models: tuple[ModelEntry, ...] = ()
    runtime_installed: bool = False
    runtime_label: str = ""  # "b5432 (vulkan)"
    router: router.RouterSupport = field(default_factory=router.RouterSupport)
    router_active: bool = False  # the running server is a router: switching is a load request
    served: tuple[str, ...] = ()  # the model(s) being served
    stale: StaleSummary | None = None
    pressure: str = "normal"  # "normal", "warning", "critical"
    problems: tuple[str, ...] = ()  # parts that could not be read, for the log
    taken_at: float = 0.0
    full_at: float = 0.0  # when the models, stale list and runtime were last read (0: not yet)
    loaded: bool = True  # False only for the placeholder before the first refresh
    # The settings as a full refresh read them (once, for every part that needs them); None until one has,
    # or when the file does not load (its error is in problems).
    settings: config.Settings | None = None
    start_model: str = ""  # what Start serves: the default model, else the most recently used (as `serve`)
    activity: throughput.Activity = field(default_factory=throughput.Activity)  # requests being answered now

    @property
    def state(self) -> str:
        """The icon's state: running, starting, stopping, stopped or error."""
        return "error" if self.status.state == ServerPhase.CRASHED else str(self.status.state)

    def model(self, name: str) -> ModelEntry | None:
        return next((m for m in self.models if m.name == name), None)

    def title(self, name: str | None) -> str:
        """A model's display name: the listing's, else its cleaned name ("" for none)."""
        if not name:
            return ""
        entry = self.model(name)
        return entry.title if entry is not None else display_names.clean_stem(name)

    @property
    def pressure_level(self) -> str:
        """The pressure as a person reads it: normal, high or critical."""
        return {"warning": "high"}.get(self.pressure, self.pressure)


def placeholder() -> Snapshot:
    """What the tray shows for the few hundred milliseconds before the first refresh lands."""
    return Snapshot(
        status=server.ServerStatus(state=ServerPhase.STOPPED, running=False, message="Checking…"), loaded=False
    )


def collect(previous: Snapshot | None = None, *, full: bool = True, probe_health: bool = True) -> Snapshot:
    status = server.status(probe_health=probe_health)
    now = time.time()
    base = previous if previous is not None and previous.loaded else None
    problems: list[str] = []
    if full:
        parts = _full_parts(problems)
        snap = Snapshot(status=status, taken_at=now, full_at=now, problems=tuple(problems), **parts)
    elif base is None:
        # The very first look: the server only, so the icon shows its state at once; a full refresh follows.
        snap = Snapshot(status=status, taken_at=now)
    else:
        snap = replace(base, status=status, taken_at=now, problems=())
    unchanged = previous is not None and (previous.status.pid, previous.status.state) == (status.pid, status.state)
    if not full and not probe_health and unchanged:
        served, router_active = previous.served, previous.router_active  # a liveness poll: the router unasked
    else:
        served, router_active = _served(status, snap.models)
    pressure = memory_pressure(status)
    activity = throughput.activity(status, base.activity if base is not None else None)
    return replace(snap, served=served, router_active=router_active, pressure=pressure, activity=activity)


def _full_parts(problems: list[str]) -> dict:
    # installed, not runtime (which re-exports these): runtime also loads the release download code and httpx,
    # which an idle tray never uses.
    from ..core.llamacpp import installed as runtime

    parts: dict = {}
    try:
        installed = runtime.installed_runtime()
        binary = runtime.find_llama_server() if installed else None
    except LocalModelsError as exc:
        installed, binary = None, None
        problems.append(exc.message)
    parts["runtime_installed"] = binary is not None
    if installed is not None:
        parts["runtime_label"] = f"{installed.tag or installed.version} ({installed.backend})"
    if binary is not None:
        parts["router"] = router.support(binary)
    found = _library(problems)
    parts["models"] = tuple(_models(found, problems))
    try:
        parts["settings"] = config.load_settings()
    except LocalModelsError as exc:
        problems.append(exc.message)
    parts["start_model"] = start_model(found, parts["settings"].default_model if "settings" in parts else "")
    if "settings" in parts:  # without them there is no stale_days (the file's error is already noted)
        parts["stale"] = _stale(problems, parts["settings"].stale_days)
    return parts


def _library(problems: list[str]) -> list:
    from ..core.models import library

    try:
        return library.list_models()
    except LocalModelsError as exc:
        problems.append(exc.message)
        return []


def _models(found: list, problems: list[str]) -> list[ModelEntry]:
    fits = _fit_marks(found, problems)
    names = display_names.display_names(found)  # cached per file: a header is read once
    return [
        ModelEntry(
            name=m.name,
            path=str(m.path),
            quant=m.quant or "",
            size_bytes=m.size_bytes or 0,
            fits=fits.get(m.name, (None, None))[0],
            needs_bytes=fits.get(m.name, (None, None))[1],
            display=names[m.name].name,
        )
        for m in found
    ]


def start_model(found: list, default: str) -> str:
    """The model a plain `serve` starts (library.resolve_model(None)): the default_model setting, else the
    only model, else the most recently used, else the newest. Worked out from the listing, touching nothing."""
    if not found:
        return ""
    if default and any(m.name == default for m in found):
        return default
    used = [m for m in found if m.last_used]
    if used and len(found) > 1:
        return max(used, key=lambda m: m.last_used).name
    return max(found, key=lambda m: m.downloaded or "").name  # max keeps the first of equals: the only one


def _fit_marks(found, problems: list[str]) -> dict[str, tuple[bool | None, int | None]]:
    """Whether each model fits this machine (fit's listing sense: against total memory, all layers on the
    best GPU backend where there is one)."""
    from ..core.llamacpp import installed
    from ..core.models import fit

    hw = hardware.detect(server=installed.server_or_none())
    marks: dict[str, tuple[bool | None, int | None]] = {}
    for model in found:
        try:
            estimate = fit.estimate_memory(model.path, hardware=hw, backend=hw.best_backend, gpu_layers=10_000)
        except (LocalModelsError, OSError, ValueError) as exc:
            problems.append(f"{model.name}: {exc}")
            continue
        marks[model.name] = (estimate.fits, estimate.total_bytes)
    return marks


def _stale(problems: list[str], days: int) -> StaleSummary | None:
    from ..core.maintenance import cleanup

    try:
        plan = cleanup.find_stale(days=days)
    except LocalModelsError as exc:
        problems.append(exc.message)
        return None
    if not plan.removable:
        return None
    return StaleSummary(count=len(plan.removable), size_bytes=plan.removable_bytes)


def _served(status: server.ServerStatus, models: tuple[ModelEntry, ...]) -> tuple[tuple[str, ...], bool]:
    """What is served (the status's model first, then a listed model that is the same file under another name),
    and whether switching is a load request: status already asked a router."""
    if not status.running or not status.port:
        return (), False
    # A router can outlive its model's crash: that model is not served.
    if not status.model or status.state in (ServerPhase.CRASHED, ServerPhase.STOPPING):
        return (), status.router
    same = (m.name for m in models if server_state.serves(status, [m.path], m.name))
    return tuple(dict.fromkeys([status.model, *same])), status.router


def memory_pressure(status: server.ServerStatus) -> str:
    level = _macos_pressure_level() if sys.platform == "darwin" else None
    if level is not None:
        return {1: "normal", 2: "warning", 4: "critical"}.get(level, "normal")
    if status.ram_used_percent >= PRESSURE_CRITICAL_PERCENT:
        return "critical"
    if status.ram_used_percent >= PRESSURE_WARN_PERCENT:
        return "warning"
    return "normal"


def _macos_pressure_level() -> int | None:
    """kern.memorystatus_vm_pressure_level: 1 normal, 2 warning, 4 critical (what Activity Monitor shows)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        value = ctypes.c_int(0)
        size = ctypes.c_size_t(ctypes.sizeof(value))
        if (
            libc.sysctlbyname(b"kern.memorystatus_vm_pressure_level", ctypes.byref(value), ctypes.byref(size), None, 0)
            != 0
        ):
            return None
        return value.value
    except (OSError, AttributeError):
        return None


def wizard_needed(snap: Snapshot) -> bool:
    """The first launch with no runtime or no model opens the wizard."""
    return snap.full_at > 0 and (not snap.runtime_installed or not snap.models)


def log_path(snap: Snapshot) -> Path | None:
    if snap.status.log_path:
        return Path(snap.status.log_path)
    latest = sorted(config.paths().logs_dir.glob("llama-server-*.log"), key=lambda p: p.stat().st_mtime)
    return latest[-1] if latest else None


def return_freed_memory() -> None:
    """A full refresh parses model headers and database rows; glibc keeps the freed heap mapped unless asked.
    Handing it back keeps an idle tray's resident memory near its working set (a few ms, once a minute)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc (musl): nothing to trim
