"""The first-run wizard's state and steps, apart from its screens: where the wizard stands (read back from
reality, plus the one choice reality cannot tell, the pick, kept in ``wizard.json``) and the core call each
step of the setup screen makes, run in a worker. No widget here: the screens (wizard_choose.py,
wizard_setup.py, wizard_done.py) show them and wizard.py strings them together.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..core.serving import server
from ..core.serving import state as server_state
from ..core.serving.state import ServerPhase
from ..core.system import config, hardware
from ..core.system.errors import GatedRepo
from ..core.system.files import write_atomically
from ..core.system.units import human_bytes

SCREENS = ("choose", "setup", "done")
PAGE_ID = {name: i for i, name in enumerate(SCREENS)}


@dataclass(frozen=True)
class Pick:
    """A model to serve: a recommendation to download (repo + file) or a model already on disk."""

    title: str  # the name people recognise: the catalog's ("Llama 3.2 3B Instruct") or the file's
    name: str = ""  # the model's name on disk, which the server answers to; "" until it is downloaded
    repo: str = ""
    file: str = ""
    quant: str = ""
    use: str = ""  # "chat" or "coding": what recommend picked it for
    why: str = ""
    size_bytes: int = 0
    tokens_per_s: float = 0.0
    speed_basis: str = ""  # recommend's: "estimated", or "measured here" once this machine ran the model
    local: bool = False  # it was on disk when it was offered

    def facts(self) -> str:
        """One line: what it is for, its download size and the speed to expect (the words of `recommend`)."""
        parts = [f"For {self.use}"] if self.use else []
        if self.local:
            parts.append(f"already downloaded ({human_bytes(self.size_bytes)})")
        elif self.size_bytes:
            parts.append(f"{human_bytes(self.size_bytes)} download")
        if self.tokens_per_s:
            measured = " (measured)" if self.speed_basis.startswith("measured") else ""
            parts.append(f"about {self.tokens_per_s:.0f} tokens/s here{measured}")
        if self.quant:
            parts.append(self.quant)
        text = " · ".join(parts)
        return text[:1].upper() + text[1:]


@dataclass(frozen=True)
class OnDisk:
    name: str
    title: str  # the name people recognise (core/models/display_names.py)
    repo: str
    file: str
    size_bytes: int
    quant: str
    path: Path


@dataclass(frozen=True)
class Progress:
    """Where the wizard stands, read in a worker when it opens."""

    hardware: hardware.Hardware
    runtime: str  # "" when not installed, else "b5432 (cuda)"
    models: tuple[OnDisk, ...]
    running_model: str  # "" when no server is running
    endpoint: str
    pick: Pick | None

    def first_screen(self) -> str:
        if self.pick is None:
            return "choose"
        if self.runtime and self.pick.name and self.running_model == self.pick.name:
            return "done"
        return "setup"  # it picks up where it stopped: a download resumes from its last byte


def with_pick(progress: Progress, pick: Pick | None) -> Progress:
    return replace(progress, pick=on_disk(pick, progress.models) if pick else None)


def on_disk(pick: Pick, models: tuple[OnDisk, ...]) -> Pick:
    """The pick with its name on disk, when a model there is that pick (same repo and file, or same name)."""
    for m in models:
        if (pick.local and m.name == pick.name) or (pick.repo and (m.repo, m.file) == (pick.repo, pick.file)):
            return replace(pick, name=m.name)
    return replace(pick, name="") if not pick.local else pick


def _state_file() -> Path:
    return config.paths().app_dir / "wizard.json"


def load_pick() -> Pick | None:
    try:
        return Pick(**json.loads(_state_file().read_text(encoding="utf-8"))["pick"])
    except (OSError, ValueError, TypeError, KeyError):
        return None  # none saved, or one from an older wizard: choose again


def save_pick(pick: Pick | None) -> None:
    write_atomically(_state_file(), json.dumps({"pick": asdict(pick) if pick else None}))


# ---- the core calls each step makes (run in workers) -------------------------------------------------


def read_progress(job=None) -> Progress:
    from ..core.llamacpp import installed, runtime
    from ..core.models import display_names, library

    build = runtime.installed_runtime()
    status = server.status()
    found = library.list_models()
    titles = display_names.display_names(found)
    models = tuple(
        OnDisk(m.name, titles[m.name].name, m.repo or "", m.path.name, m.size_bytes, m.quant, m.path) for m in found
    )
    pick = load_pick()
    return Progress(
        hardware=hardware.detect(server=installed.server_or_none()),
        runtime=f"{build.tag or build.version} ({build.backend})" if build else "",
        models=models,
        running_model=status.model or "" if status.running else "",
        endpoint=status.endpoint or "" if status.running else "",
        pick=on_disk(pick, models) if pick else None,
    )


def install_runtime(job) -> str:
    from ..core.llamacpp import runtime

    installed = runtime.install_release(backend="auto", progress=job.report, cancel=job.cancel)
    return f"{installed.tag or installed.version} ({installed.backend})"


def download(job, pick: Pick) -> str:
    """The model's name on disk. A gated repo with no token raises GatedRepo before any byte moves, so the
    screen asks for one; a token the repo does not accept raises it from the download itself."""
    from ..core.models import downloads, hub

    if not hub.hub_token() and hub.repo_info(pick.repo).gated:
        raise GatedRepo(
            f"{pick.title} is a gated model: its licence must be accepted before download.",
            hint=f"Accept it on huggingface.co/{pick.repo}, then paste a Hugging Face token here.",
        )
    return downloads.pull(pick.repo, pick.file, progress=job.report, cancel=job.cancel).name


def save_token(token: str):
    """Checks the token with the Hub, then keeps it in the OS keyring; returns the Hub's account."""
    from ..core.system import secrets

    account = secrets.check_hf_token(token)
    secrets.store(secrets.HF_TOKEN, token)
    return account


def start(job, name: str) -> server.ServerStatus:
    from ..core.serving import supervisor

    status = server.status(probe_health=False)
    if status.state == ServerPhase.RUNNING and server_state.serves(status, (), name):
        return server.status()  # already served (a crashed router's model is not: it is switched back in)
    return supervisor.switch_model(name, progress=job.report, cancel=job.cancel)


class Rate:
    """Speed and time left of a transfer, from its progress reports (a moving average over a few seconds,
    restarted when the task changes, so a resumed download is not credited with the bytes it already had)."""

    WINDOW_S = 4.0

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.samples: list[tuple[float, int]] = []
        self.task = ""

    def add(self, task: str, done: int) -> None:
        now = self.clock()
        if task != self.task or (self.samples and done < self.samples[-1][1]):
            self.samples, self.task = [], task
        self.samples.append((now, done))
        while len(self.samples) > 2 and now - self.samples[0][0] > self.WINDOW_S:
            self.samples.pop(0)

    def per_second(self) -> float:
        if len(self.samples) < 2:
            return 0.0
        (t0, d0), (t1, d1) = self.samples[0], self.samples[-1]
        return (d1 - d0) / (t1 - t0) if t1 > t0 else 0.0

    def words(self, done: int, total: int | None) -> str:
        """ "120 MB of 2.0 GB · 14 MB/s · about 2 min left"."""
        text = human_bytes(done) + (f" of {human_bytes(total)}" if total else "")
        rate = self.per_second()
        if rate > 0:
            text += f" · {human_bytes(int(rate))}/s"
            if total and total > done:
                text += f" · about {_duration((total - done) / rate)} left"
        return text


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{max(1, round(seconds))} s"
    if seconds < 3600:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"
