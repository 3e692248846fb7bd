"""Fake but realistic data for the screenshots (screenshots.py) and the text-fit test that renders the same
scenes: a 24 GB machine with four models, a server in each state, a month of usage, stale models, a Hub
listing and the wizard's progress. Fixed dates and figures, so the pictures change only when the windows do.

The windows take the tray app; FakeApp stands in for it. Its workers never run anything: a job whose result
is given here is answered at once (as a worker would, a moment later), the others stay pending, so a window
shows its "reading…" or in-progress state.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from threading import Event

from PySide6.QtCore import QObject, Signal

from aidevops_local.core.accounting import prices
from aidevops_local.core.accounting.usage import ModelSummary, UsageReport
from aidevops_local.core.maintenance.cleanup import CleanupPlan, StaleModel
from aidevops_local.core.models.hub import RemoteFile
from aidevops_local.core.models.hub_card import ModelCard
from aidevops_local.core.models.library import LocalModel
from aidevops_local.core.serving.router import RouterSupport
from aidevops_local.core.serving.server import ServerStatus
from aidevops_local.core.serving.state import ServerPhase
from aidevops_local.core.system import config, hardware, secrets
from aidevops_local.tray.cleanup_texts import StaleRow
from aidevops_local.tray.snapshot import ModelEntry, Snapshot, StaleSummary
from aidevops_local.tray.throughput import Activity

GB = 1 << 30
MB = 1 << 20
TODAY = date(2025, 11, 28)
NOW = datetime(2025, 11, 28, 16, 40, tzinfo=UTC)
ENDPOINT = "http://127.0.0.1:8080/v1"
MODELS_DIR = Path("/home/alex/.aidevops/local-models/models")

# name on disk, title, quant, size, fits, needs
MODEL_SPECS = (
    ("Qwen2.5-Coder-7B-Instruct-Q4_K_M", "Qwen2.5 Coder 7B Instruct", "Q4_K_M", 4.4 * GB, True, 5.6 * GB),
    ("Llama-3.2-3B-Instruct-Q4_K_M", "Llama 3.2 3B Instruct", "Q4_K_M", 1.9 * GB, True, 2.9 * GB),
    ("gemma-3-4b-it-Q4_K_M", "Gemma 3 4B Instruct", "Q4_K_M", 2.3 * GB, True, 3.4 * GB),
    ("Llama-3.3-70B-Instruct-Q4_K_M", "Llama 3.3 70B Instruct", "Q4_K_M", 40 * GB, False, 44 * GB),
)
MODELS = tuple(
    ModelEntry(name, str(MODELS_DIR / f"{name}.gguf"), quant, int(size), fits, int(needs), title)
    for name, title, quant, size, fits, needs in MODEL_SPECS
)
TITLES = {m.name: m.title for m in MODELS}
SERVED = MODELS[1].name  # Llama 3.2 3B: the everyday model
RAM = dict(ram_total_bytes=24 * GB, ram_available_bytes=13 * GB, ram_used_percent=46.0)
ROUTER = RouterSupport(router=True, presets=True, models_max=True, sleep_idle=True)


# ---- the server in each state ---------------------------------------------------------------------------


def _snapshot(status: ServerStatus, **kw) -> Snapshot:
    return Snapshot(
        status=status,
        models=MODELS,
        runtime_installed=True,
        runtime_label="b7110 (vulkan)",
        router=ROUTER,
        start_model=SERVED,
        **kw,
    )


def stopped(**kw) -> Snapshot:
    return _snapshot(ServerStatus(state=ServerPhase.STOPPED, running=False, **RAM), **kw)


def running(model: str = SERVED, **kw) -> Snapshot:
    status = ServerStatus(
        state=ServerPhase.RUNNING,
        running=True,
        pid=41872,
        endpoint=ENDPOINT,
        host="127.0.0.1",
        port=8080,
        model=model,
        rss_bytes=int(2.4 * GB),
        **RAM,
    )
    return _snapshot(status, served=(model,), **kw)


def workers() -> Snapshot:
    """Serving across two other machines, one of which stopped answering."""
    snap = running()
    pooled = [
        {"worker": "me@studio.local", "via": "ssh", "free_bytes": int(58.2 * GB), "answers": True},
        {"worker": "me@old-laptop", "via": "ssh", "free_bytes": int(13.5 * GB), "answers": False},
    ]
    return replace(snap, status=replace(snap.status, workers=pooled))


def starting() -> Snapshot:
    snap = stopped()
    status = replace(snap.status, state=ServerPhase.STARTING, running=True, pid=41872, port=8080, model=SERVED)
    return replace(snap, status=status)


def stopping() -> Snapshot:
    snap = running()
    return replace(snap, status=replace(snap.status, state=ServerPhase.STOPPING))


def crashed() -> Snapshot:
    status = ServerStatus(
        state=ServerPhase.CRASHED,
        running=False,
        pid=41872,
        port=8080,
        model=SERVED,
        log_path="/home/alex/.aidevops/local-models/logs/llama-server.log",
        message="llama-server (pid 41872) is no longer running",
        **RAM,
    )
    return _snapshot(status)


def pressed(level: str) -> Snapshot:
    """The 7B coder served by a router under memory pressure: it offers a smaller model and an unload."""
    snap = running(MODELS[0].name, pressure=level, router_active=True)
    used = 91.0 if level == "warning" else 97.0
    status = replace(
        snap.status, router=True, ram_used_percent=used, ram_available_bytes=int(24 * GB * (100 - used) / 100)
    )
    return replace(snap, status=status)


STALE = StaleSummary(2, int(3.4 * GB))
# The menu's states: name -> (snapshot, the controller's busy/last_error/free_port)
MENU_STATES = {
    "stopped": (stopped(), {}),
    "starting": (starting(), {"busy": "Starting Llama 3.2 3B Instruct…"}),
    "running": (running(stale=STALE), {}),
    "busy": (running(activity=Activity("/l.log", 10, True, 38.6)), {}),
    "stopping": (stopping(), {}),
    "crashed": (crashed(), {}),
    "memory-high": (pressed("warning"), {}),
    "memory-critical": (pressed("critical"), {}),
    "port-taken": (stopped(), {"last_error": "Port 8080 is in use by another program.", "free_port": 8093}),
    "workers": (workers(), {}),
}


# ---- what the windows' workers would read -------------------------------------------------------------


def library_rows():
    """The Models window's rows: three downloaded here, one from LM Studio's folder."""
    from aidevops_local.tray.models_window import ModelRow

    used = {0: "2025-11-27 09:12:00", 1: "2025-11-28 15:58:00", 2: "2025-10-14 18:30:00", 3: None}
    requests = {0: 412, 1: 1873, 2: 36, 3: 0}
    contexts = {0: 32_768, 1: 131_072, 2: 131_072, 3: 131_072}
    rows = []
    for i, entry in enumerate(MODELS):
        where, source = ("LM Studio", "external") if i == 3 else ("models", "pulled")
        model = LocalModel(
            name=entry.name,
            path=Path(entry.path),
            files=(Path(entry.path),),
            size_bytes=entry.size_bytes,
            quant=entry.quant,
            repo=None,
            source=source,
            where=where,
            last_used=used[i],
            total_requests=requests[i],
        )
        rows.append(ModelRow(model, contexts[i], entry.title))
    return rows


def usage_data(days: int = 30):
    """A month of use: the everyday model most days, the coder on weekdays, Gemma once."""
    from aidevops_local.tray.usage_window import UsageData

    axis = [TODAY - timedelta(days=days - 1 - i) for i in range(days)]
    llama = [0 if d.weekday() == 6 else 18_000 + (d.day * 7919) % 26_000 for d in axis]
    coder = [0 if d.weekday() >= 5 else 9_000 + (d.day * 104_729) % 31_000 for d in axis]
    gemma = [6_400 if d == TODAY - timedelta(days=12) else 0 for d in axis]
    series = {MODELS[1].name: llama, MODELS[0].name: coder, MODELS[2].name: gemma}
    counts = {MODELS[1].name: 1873, MODELS[0].name: 412, MODELS[2].name: 36}
    speeds = {MODELS[1].name: 38.4, MODELS[0].name: 14.9, MODELS[2].name: 29.1}
    summaries = []
    for name, values in series.items():
        tokens = sum(values)
        t_in, t_out = tokens * 3 // 4, tokens // 4
        last = max((d for d, v in zip(axis, values) if v), default=None)
        summaries.append(_summary(name, counts[name], t_in, t_out, speeds[name], last))
    total = _summary(
        "all",
        sum(s.requests for s in summaries),
        sum(s.tokens_in for s in summaries),
        sum(s.tokens_out for s in summaries),
        None,
        TODAY,
    )
    report = UsageReport(
        since=NOW - timedelta(days=days),
        model=None,
        models=summaries,
        total=total,
        prices_as_of=prices.AS_OF.isoformat(),
        price_models={p.tier: p.model for p in prices.PRICES},
    )
    return UsageData(report=report, days=axis, series=series, names=TITLES)


def _summary(name: str, requests: int, t_in: int, t_out: int, speed: float | None, last: date | None):
    when = datetime.combine(last, datetime.min.time(), UTC) + timedelta(hours=15) if last else None
    return ModelSummary(
        model=name,
        requests=requests,
        incomplete=0,
        tokens_in=t_in,
        tokens_out=t_out,
        cached_tokens=0,
        mean_tok_per_sec=speed,
        total_ms=0,
        last_used=when,
        cloud_cost_usd=prices.cloud_costs(tokens_in=t_in, tokens_out=t_out),
    )


def stale_plan() -> tuple[CleanupPlan, list[StaleRow]]:
    """Two models unused for a month and more, and one kept because it is being served."""
    specs = (
        (MODELS[2], 45, True, "pulled", "Downloaded by aidevops-local", ""),
        (MODELS[0], 33, True, "pulled", "Downloaded by aidevops-local", ""),
        (MODELS[3], None, False, "external", "Found in LM Studio's folder", "Another app's file"),
    )
    rows = []
    for entry, idle, removable, source, where, kept in specs:
        model = StaleModel(entry.name, [entry.path], entry.size_bytes, None, idle, source, removable, kept)
        because = "" if removable else "Another app's file: aidevops-local leaves it where it is."
        rows.append(StaleRow(model, entry.title, where, because))
    return CleanupPlan(30, [r.model for r in rows]), rows


def settings_loaded():
    """What the Settings window's worker reads: the defaults, a token in the keyring, sharing off."""
    from aidevops_local.tray.settings_sharing import SharingFacts

    settings = config.Settings(default_model=SERVED, idle_unload_s=900, workers=["me@studio.local", "me@old-laptop"])
    ring = secrets.KeyringStatus(True, "SecretService Keyring")
    return settings, True, ring, secrets.TokenInfo("keyring", True), SharingFacts(None, "192.168.1.23")


def suggestions():
    from aidevops_local.tray.download_window import Suggestion

    return [
        Suggestion(
            "Llama 3.2 3B Instruct",
            "bartowski/Llama-3.2-3B-Instruct-GGUF",
            "Llama-3.2-3B-Instruct-Q4_K_M.gguf",
            "chat · 2.0 GB · ~38 tokens/s",
        ),
        Suggestion(
            "Qwen2.5 Coder 7B Instruct",
            "bartowski/Qwen2.5-Coder-7B-Instruct-GGUF",
            "Qwen2.5-Coder-7B-Instruct-Q4_K_M.gguf",
            "coding · 4.7 GB · ~15 tokens/s",
        ),
        Suggestion(
            "Gemma 3 4B Instruct",
            "bartowski/google_gemma-3-4b-it-GGUF",
            "google_gemma-3-4b-it-Q4_K_M.gguf",
            "chat · 2.5 GB · ~29 tokens/s",
        ),
        Suggestion(
            "Phi-4 Mini Instruct",
            "bartowski/microsoft_Phi-4-mini-instruct-GGUF",
            "microsoft_Phi-4-mini-instruct-Q4_K_M.gguf",
            "chat · 2.5 GB · ~30 tokens/s",
        ),
    ]


def hub_listing():
    """The first suggestion's repo: its card and a few quants, one already on disk, one too big for 24 GB."""
    from aidevops_local.tray.download_window import Listing

    stem = "Llama-3.2-3B-Instruct"
    quants = (("Q3_K_L", 1.8), ("Q4_K_M", 2.0), ("Q5_K_M", 2.3), ("Q6_K", 2.6), ("Q8_0", 3.4), ("f16", 6.4))
    files = [
        RemoteFile(f"{stem}-{q}.gguf", int(s * GB), q, fits=True, needs_bytes=int((s + 1) * GB)) for q, s in quants
    ]
    files.append(RemoteFile(f"{stem}-f32.gguf", int(12.9 * GB), "f32", fits=False, needs_bytes=int(26 * GB)))
    card = ModelCard(
        "bartowski/Llama-3.2-3B-Instruct-GGUF",
        parameters=3_212_749_888,
        context_length=131_072,
        architecture="llama",
        licence="llama3.2",
        created="2024-09-25",
        last_modified="2024-10-07",
    )
    return Listing(card, files, frozenset({f"{stem}-Q4_K_M.gguf"}))


# ---- the tray app, faked ----------------------------------------------------------------------------------


@dataclass
class FakeJob:
    name: str
    on_progress: object = None
    cancel: Event = field(default_factory=Event)


class FakeWorkers:
    """Answers the jobs named in ``results`` at once; the others stay pending (in progress, as far as a window
    can tell)."""

    def __init__(self, results: dict):
        self.results = results
        self.pending: dict[str, FakeJob] = {}

    def submit(self, fn, *, name="", on_done=None, on_error=None, on_progress=None, on_cancelled=None) -> FakeJob:
        job = FakeJob(name, on_progress)
        if name in self.results and on_done is not None:
            result = self.results[name]
            on_done(result() if callable(result) else result)
        else:
            self.pending[name] = job
        return job


class FakeApp(QObject):
    """What the windows ask of the tray app: its snapshot, settings, workers and signals. Commands do nothing."""

    snapshot_changed = Signal(object)
    said = Signal(str)

    def __init__(self, snapshot: Snapshot, results: dict | None = None, **state):
        super().__init__()
        self.snapshot = snapshot
        self.settings = config.Settings(default_model=SERVED)
        self.workers = FakeWorkers(results or {})
        self.busy, self.last_error = state.get("busy", ""), state.get("last_error", "")
        self.free_port, self.copied = state.get("free_port"), False
        self.quitting = False

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args, **kw: None  # start_server, open_models, refresh...: nothing to do in a picture


def machine() -> hardware.Hardware:
    return hardware.from_profile(
        {"os": "linux", "arch": "x64", "physical_cores": 8, "ram_gb": 24, "backends": ["cpu"]}, source="screenshots"
    )


# ---- the wizard ---------------------------------------------------------------------------------------------


def wizard_picks():
    """The first screen's offers for the 24 GB machine: recommend's picks, in its words."""
    from aidevops_local.tray.wizard_steps import Pick

    return (
        Pick(
            "Llama 3.2 3B Instruct",
            repo="bartowski/Llama-3.2-3B-Instruct-GGUF",
            file="Llama-3.2-3B-Instruct-Q4_K_M.gguf",
            quant="Q4_K_M",
            use="chat",
            why="The best chat model that answers at a comfortable reading speed on this machine.",
            size_bytes=int(2.0 * GB),
            tokens_per_s=38,
            speed_basis="estimated",
        ),
        Pick(
            "Qwen2.5 Coder 7B Instruct",
            repo="bartowski/Qwen2.5-Coder-7B-Instruct-GGUF",
            file="Qwen2.5-Coder-7B-Instruct-Q4_K_M.gguf",
            quant="Q4_K_M",
            use="coding",
            why="Stronger at code; slower here.",
            size_bytes=int(4.7 * GB),
            tokens_per_s=15,
            speed_basis="estimated",
        ),
    )


def wizard_progress(screen: str):
    """Where the wizard stands for each of its screens: nothing chosen; chosen and downloading; all done."""
    from aidevops_local.tray.wizard_steps import Progress

    pick = wizard_picks()[0]
    if screen == "choose":
        return Progress(machine(), "", (), "", "", None)
    if screen == "setup":
        return Progress(machine(), "b7110 (cpu)", (), "", "", pick)
    served = replace(pick, name=SERVED)
    return Progress(machine(), "b7110 (cpu)", (), SERVED, ENDPOINT, served)


def wizard_suggestions():
    from aidevops_local.tray.wizard_suggest import Suggestions

    return Suggestions("24 GB of memory, no graphics card that helps: models up to about 8B run here.", wizard_picks())


LOG_TEXT = """\
main: build = 7110 (1f0a2b3c) with cc (Ubuntu 13.2.0) for x86_64-linux-gnu
system_info: n_threads = 8 / 16 | CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1
main: binding port with default address family
main: HTTP server is listening, hostname: 127.0.0.1, port: 8080, http threads: 15
main: loading model
llama_model_loader: loaded meta data with 35 key-value pairs and 255 tensors from Llama-3.2-3B-Instruct-Q4_K_M.gguf
llama_model_loader: - kv   0:                       general.architecture str              = llama
llama_model_loader: - kv   2:                               general.name str              = Llama 3.2 3B Instruct
print_info: file type   = Q4_K - Medium
print_info: file size   = 1.87 GiB (5.01 BPW)
load_tensors:   CPU_Mapped model buffer size =  1918.35 MiB
llama_context: n_ctx         = 16384
llama_kv_cache:        CPU KV buffer size =  1792.00 MiB
main: model loaded
main: server is listening on http://127.0.0.1:8080 - starting the main loop
srv  update_slots: all slots are idle
slot launch_slot_: id  0 | task 0 | processing task
slot print_timing: id  0 | task 0 | prompt eval time =     412.18 ms /   187 tokens (  453.68 tokens per second)
slot print_timing: id  0 | task 0 |        eval time =    5180.02 ms /   199 tokens (   38.42 tokens per second)
srv  log_server_r: request: POST /v1/chat/completions 127.0.0.1 200
srv  update_slots: all slots are idle
"""
