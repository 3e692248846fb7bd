"""The first-run wizard's state and steps, apart from its pages: where the wizard stands (read back from
reality, plus the pick kept in ``wizard.json``) and the core call each step makes, run in a worker. No widget
here: the pages (wizard_pages.py, wizard_task.py) show them and wizard.py strings the pages together.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ..core.serving import server
from ..core.serving import state as server_state
from ..core.serving.state import ServerPhase
from ..core.system import config, hardware
from ..core.system.files import write_atomically
from ..core.system.units import human_bytes

PAGES = ("hardware", "runtime", "recommend", "token", "download", "start", "done")
PAGE_ID = {name: i for i, name in enumerate(PAGES)}


@dataclass(frozen=True)
class Pick:
    """A model to serve: a recommendation to download (repo + file) or a model already on disk (local)."""

    name: str
    repo: str = ""
    file: str = ""
    quant: str = ""
    memory_bytes: int = 0
    tokens_per_s: float = 0.0
    local: bool = False

    def label(self) -> str:
        if self.local:
            return f"{self.name} (already downloaded)"
        speed = f", about {self.tokens_per_s:.0f} tokens/s" if self.tokens_per_s else ""
        return f"{self.name} · {self.quant} · needs {human_bytes(self.memory_bytes)}{speed}"


@dataclass(frozen=True)
class Progress:
    """Where the wizard stands, read in a worker when it opens."""

    hardware: hardware.Hardware
    runtime: str  # "" when not installed, else "b5432 (cuda)"
    local_models: tuple[str, ...]
    running_model: str  # "" when no server is running
    pick: Pick | None

    def first_unfinished(self) -> str:
        if not self.runtime:
            return "hardware"
        if self.pick is None and not self.local_models:
            return "recommend"
        if self.pick is not None and not self.pick.local and self.pick.name not in self.local_models:
            return "download"
        if not self.running_model:
            return "start"
        return "done"


def _state_file() -> Path:
    return config.paths().app_dir / "wizard.json"


def load_pick() -> Pick | None:
    try:
        return Pick(**json.loads(_state_file().read_text(encoding="utf-8"))["pick"])
    except (OSError, ValueError, TypeError, KeyError):
        return None


def save_pick(pick: Pick | None) -> None:
    write_atomically(_state_file(), json.dumps({"pick": asdict(pick) if pick else None}))


# ---- the core calls each step makes (run in workers) -------------------------------------------------


def read_progress(job=None) -> Progress:
    from ..core.llamacpp import installed, runtime
    from ..core.models import library

    build = runtime.installed_runtime()
    status = server.status()
    label = f"{build.tag or build.version} ({build.backend})" if build else ""
    return Progress(
        hardware=hardware.detect(server=installed.server_or_none()),
        runtime=label,
        local_models=tuple(m.name for m in library.list_models()),
        running_model=status.model or "" if status.running else "",
        pick=load_pick(),
    )


def install_runtime(job) -> str:
    from ..core.llamacpp import runtime

    installed = runtime.install_release(backend="auto", progress=job.report, cancel=job.cancel)
    return f"{installed.tag or installed.version} ({installed.backend})"


def recommendations(job, hw: hardware.Hardware) -> list[Pick]:
    from ..core.models import recommend

    return [
        Pick(
            name=r.name,
            repo=r.repo,
            file=r.file,
            quant=r.quant,
            memory_bytes=r.memory_bytes,
            tokens_per_s=r.tokens_per_s or 0.0,
        )
        for r in recommend.recommend(hw).picks
    ]


def download(job, pick: Pick) -> str:
    from ..core.models import downloads

    return downloads.pull(pick.repo, pick.file, progress=job.report, cancel=job.cancel).name


def start(job, name: str) -> server.ServerStatus:
    from ..core.serving import supervisor

    status = server.status(probe_health=False)
    if status.state == ServerPhase.RUNNING and server_state.serves(status, (), name):
        return server.status()  # already served (a crashed router's model is not: it is switched back in)
    return supervisor.switch_model(name, progress=job.report, cancel=job.cancel)
