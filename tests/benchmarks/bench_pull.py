"""`pull` against `hf download` (huggingface_hub's own CLI), and what a resume re-transfers. Asserts nothing.

    python -m tests.benchmarks.bench_pull            # about 30 s on 2 cores
    python -m tests.benchmarks.bench_pull --model smollm2

Both commands run as subprocesses against the same local Hub (tests/fakes/hf_hub.py, plain HTTP, no Xet)
serving the same real GGUF file, one run each, each into an empty folder:

1. Throughput: wall time of `aidevops-local pull ORG/REPO` (which also checks the sha256) and of
   `hf download ORG/REPO FILE --local-dir DIR`; prints MB/s of each and the ratio pull / hf.
2. Resume: each command is killed with SIGKILL once about half of the file has arrived (the Hub throttled
   so that the kill lands there), then run again; the Hub's per-file byte counter says how many bytes the
   second run transferred. `pull` should send only the rest; `hf download` starts again from byte 0.

``run(quick)`` returns the figures for tests/benchmarks/run.py (Gemma 3 either way); ``main`` prints the numbers.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.benchmarks.figures import Figure, ratio_figure
from tests.fakes.hf_hub import FakeHub
from tests.fixtures.prepare import prepare

REPO = "bench/model-GGUF"
HF = Path(sys.executable).with_name("hf")


def _env(hub: FakeHub, home: Path) -> dict:
    return {
        **os.environ,
        "HF_ENDPOINT": hub.endpoint,
        "HF_HUB_DISABLE_XET": "1",
        "HF_HOME": str(home / "hf"),
        "AIDEVOPS_HOME": str(home / "aidevops"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def _pull_cmd() -> list[str]:
    return [sys.executable, "-m", "aidevops_local", "pull", REPO]


def _hf_cmd(filename: str, dest: Path) -> list[str]:
    return [str(HF), "download", REPO, filename, "--local-dir", str(dest)]


def _timed(cmd: list[str], env: dict) -> float:
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{cmd[:4]} failed: {done.stderr[-2000:]}")
    return time.perf_counter() - started


def _settled(hub: FakeHub, filename: str) -> int:
    last, since = -1, time.monotonic()
    while time.monotonic() - since < 0.5:
        now = hub.served(REPO, filename)
        if now != last:
            last, since = now, time.monotonic()
        time.sleep(0.05)
    return last


def _kill_at_half(cmd: list[str], env: dict, hub: FakeHub, filename: str, size: int) -> int:
    """Start cmd, SIGKILL it once the Hub has sent half the file; returns the bytes sent by then."""
    start = hub.served(REPO, filename)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if hub.served(REPO, filename) - start >= size // 2:
            break
        time.sleep(0.01)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    return _settled(hub, filename) - start


@dataclass(frozen=True)
class Result:
    filename: str
    size: int  # bytes
    hf_s: float  # wall time of `hf download` into an empty folder
    pull_s: float  # wall time of `pull` into an empty root (includes the sha256 check)
    resume: dict[str, tuple[int, int]]  # "pull", "hf download": (bytes sent before SIGKILL, bytes the re-run sent)

    def mb_per_s(self, seconds: float) -> float:
        return self.size / 1e6 / seconds


def measure(source: Path) -> Result:
    size, filename = source.stat().st_size, source.name
    with FakeHub() as hub, tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        hub.add_repo(REPO, {filename: source})
        hub.served(REPO, filename)

        # 1. throughput, one run each, cold output folders (the Hub's hashes are computed at add_repo).
        t_hf = _timed(_hf_cmd(filename, tmp / "hf-out"), _env(hub, tmp / "a"))
        t_pull = _timed(_pull_cmd(), _env(hub, tmp / "b"))

        # 2. resume after kill -9 at about half way.
        hub.throttle(max(1, size // 4), REPO, filename)  # ~4 s for the whole file: the kill lands mid-way
        env_pull, env_hf = _env(hub, tmp / "c"), _env(hub, tmp / "d")
        first_pull = _kill_at_half(_pull_cmd(), env_pull, hub, filename, size)
        first_hf = _kill_at_half(_hf_cmd(filename, tmp / "hf-resume"), env_hf, hub, filename, size)
        hub.clear_faults()
        before = hub.served(REPO, filename)
        _timed(_pull_cmd(), env_pull)
        again_pull = _settled(hub, filename) - before
        before = hub.served(REPO, filename)
        _timed(_hf_cmd(filename, tmp / "hf-resume"), env_hf)
        again_hf = _settled(hub, filename) - before
    return Result(filename, size, t_hf, t_pull, {"pull": (first_pull, again_pull), "hf download": (first_hf, again_hf)})


def report(r: Result) -> None:
    print(f"\nfile: {r.filename}, {r.size / 1e6:.0f} MB, local fake Hub on 127.0.0.1 (plain HTTP)")
    print(f"hf download : {r.hf_s:6.2f} s  {r.mb_per_s(r.hf_s):7.1f} MB/s")
    print(f"pull        : {r.pull_s:6.2f} s  {r.mb_per_s(r.pull_s):7.1f} MB/s  (includes the sha256 check)")
    print(f"throughput ratio pull / hf download: {r.hf_s / r.pull_s:.2f}")
    print(f"\nresume after SIGKILL (file {r.size:,} bytes):")
    for label, (first, again) in r.resume.items():
        print(
            f"{label:12}: killed after {first:,} bytes sent ({100 * first / r.size:.0f}%); the re-run "
            f"transferred {again:,} bytes ({100 * again / r.size:.0f}% of the file, "
            f"{100 * (first + again - r.size) / r.size:+.1f}% more than the file in all)"
        )


def figures(r: Result) -> list[Figure]:
    (killed_pull, again_pull), (killed_hf, again_hf) = r.resume["pull"], r.resume["hf download"]
    return [
        ratio_figure(
            "pull: throughput vs hf download",
            r.mb_per_s(r.pull_s),
            r.mb_per_s(r.hf_s),
            unit="MB/s",
            goal="not set (issue 3: report)",
            ok=None,
            note=f"{r.filename}, {r.size / 1e6:.0f} MB from the local fake Hub; pull includes its sha256 check",
        ),
        ratio_figure(
            "pull: bytes re-sent after kill -9 at half way",
            again_pull / 1e6,
            again_hf / 1e6,
            unit="MB",
            goal="only the rest (< hf)",
            ok=again_pull < again_hf,
            note=f"killed after {100 * killed_pull / r.size:.0f}% (pull) and "
            f"{100 * killed_hf / r.size:.0f}% (hf); hf download starts over",
        ),
    ]


def run(quick: bool = True) -> list[Figure]:
    """Gemma 3 270M (a 253 MB file, about 30 s) either way: one run each is the benchmark's only length."""
    result = measure(prepare().gemma3_gguf)
    report(result)  # into the benchmark's log: the times and percentages the figures leave out
    return figures(result)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["gemma3", "smollm2"], default="gemma3")
    args = parser.parse_args(argv)
    fx = prepare()
    report(measure(fx.gemma3_gguf if args.model == "gemma3" else fx.smollm2_gguf))
    return 0


if __name__ == "__main__":
    sys.exit(main())
