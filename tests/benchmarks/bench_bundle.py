"""Benchmark: the Linux bundle's size, and the cold start of the frozen tray beside the unfrozen one.

    .venv/bin/python -m pytest tests/benchmarks/bench_bundle.py -s -p no:cacheprovider
    BENCH_RUNS=7 BENCH_REUSE=1 .venv/bin/python -m pytest tests/benchmarks/bench_bundle.py -s ...

It builds the bundle and the AppDir (under build/bench-bundle; BENCH_REUSE=1 keeps an earlier one), then
prints:
- sizes: the one-folder bundle, and the compressed artifact: the AppImage when one was made, else the AppImage's
  payload (the AppDir as squashfs with appimagetool's settings, the runtime adds about 1 MB) and a tar.zst of
  the AppDir (zstd -19), the goal being under 90 MB;
- start-up, frozen (the AppDir's AppRun with no arguments) and unfrozen (`python -m aidevops_local tray`),
  alternating in one run on the same private desktop: from spawn to the tray icon embedded in the tray host's
  panel, each from a fresh AIDEVOPS_HOME. The first launch of each is reported apart ("first"); the page cache
  is not dropped (that would disturb everything else on the machine), so "cold" means a new process, not a
  cold disk.
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
sys.path.insert(0, str(PACKAGING))

import identity
from tests.packaging.tray_host import tray_icon_in_panel
from tests.private_desktop import private_desktop  # noqa: F401 - the fixture, used by name below

BENCH_BUILD = ROOT / "build" / "bench-bundle"
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
GOAL_MB = 90


def mb(n: int) -> str:
    return f"{n / 1e6:6.1f} MB"


def tree_size(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def build() -> tuple[Path, Path]:
    dist = BENCH_BUILD / "dist"
    bundle, appdir = dist / identity.EXE, BENCH_BUILD / "AppDir"
    if os.environ.get("BENCH_REUSE") == "1" and (appdir / "AppRun").exists():
        return bundle, appdir
    dirs = ["--build-dir", str(BENCH_BUILD), "--dist-dir", str(dist)]
    for target in ("bundle", "appdir", "appimage"):
        subprocess.run([sys.executable, str(PACKAGING / "build.py"), target, *dirs], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
    return bundle, appdir


def sizes(bundle: Path, appdir: Path) -> list[str]:
    lines = [f"one-folder bundle (uncompressed)      {mb(tree_size(bundle))}"]
    appimages = sorted((BENCH_BUILD / "dist").glob("*.AppImage"))
    if appimages:
        size = appimages[-1].stat().st_size
        lines.append(f"AppImage {appimages[-1].name:28} {mb(size)}  goal < {GOAL_MB} MB: "
                     f"{'met' if size < GOAL_MB * 1e6 else 'MISSED'}")
        return lines
    lines.append("AppImage                              not made here (appimagetool is on GitHub only)")
    if shutil.which("mksquashfs"):
        payload = BENCH_BUILD / "payload.squashfs"
        started = time.monotonic()
        subprocess.run(["mksquashfs", str(appdir), str(payload), "-comp", "zstd", "-b", "1M", "-root-owned",
                        "-noappend", "-mkfs-time", "0", "-quiet", "-no-progress"], check=True)
        size = payload.stat().st_size
        lines.append(f"AppImage payload (squashfs zstd 1M)   {mb(size)}  + runtime ~1 MB; goal < {GOAL_MB} MB: "
                     f"{'met' if size + 1e6 < GOAL_MB * 1e6 else 'MISSED'}  ({time.monotonic() - started:.0f} s)")
    if shutil.which("zstd") and shutil.which("tar"):
        archive = BENCH_BUILD / "AppDir.tar.zst"
        started = time.monotonic()
        subprocess.run(f"tar -C '{appdir.parent}' -cf - '{appdir.name}' | zstd -q -19 -T0 -f -o '{archive}'",
                       shell=True, check=True)
        lines.append(f"AppDir.tar.zst (zstd -19)             {mb(archive.stat().st_size)}"
                     f"  ({time.monotonic() - started:.0f} s)")
    return lines


def time_to_tray_icon(argv: list[str], env: dict[str, str], host, home: Path) -> float:
    env = dict(env, AIDEVOPS_HOME=str(home))
    home.mkdir(parents=True)
    with open(home / "app.log", "wb") as log:
        started = time.monotonic()
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        while not tray_icon_in_panel(host):
            if proc.poll() is not None:
                raise AssertionError(f"{argv[0]} exited {proc.returncode}: {(home / 'app.log').read_text()[-2000:]}")
            if time.monotonic() - started > 60:
                raise AssertionError(f"{argv[0]}: no tray icon after 60 s")
            time.sleep(0.02)
        return time.monotonic() - started
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        deadline = time.monotonic() + 10
        while tray_icon_in_panel(host) and time.monotonic() < deadline:
            time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux bundle")
def test_bundle_size_and_start_up(private_desktop, tmp_path):  # noqa: F811 - the fixture
    pytest.importorskip("PyInstaller", reason="pip install -e '.[packaging]'")
    started = time.monotonic()
    bundle, appdir = build()
    built_in = time.monotonic() - started
    size_lines = sizes(bundle, appdir)

    desktop = private_desktop
    env = {k: v for k, v in desktop.env.items() if not k.startswith(("PYTHON", "QT_"))}
    env.update(HF_HOME=str(tmp_path / "hf-home"), HF_HUB_DISABLE_TELEMETRY="1")
    commands = {"frozen (AppRun)": [str(appdir / "AppRun")],
                "unfrozen (python -m aidevops_local tray)": [sys.executable, "-m", "aidevops_local", "tray"]}
    timings: dict[str, list[float]] = {name: [] for name in commands}
    for run in range(RUNS + 1):  # alternate, so that neither gets the quieter moments
        for name, argv in commands.items():
            timings[name].append(time_to_tray_icon(argv, env, desktop, tmp_path / f"{len(timings[name])}-{run}"
                                                   f"-{'f' if 'AppRun' in name else 'u'}"))

    print(f"\n== bundle (built in {built_in:.0f} s; {'reused' if os.environ.get('BENCH_REUSE') else 'fresh'})")
    for line in size_lines:
        print("  " + line)
    print(f"== start to tray icon shown ({os.cpu_count()} CPUs, {RUNS} runs after a first)")
    print(f"  {'':44} {'first':>7} {'median':>7} {'min':>7} {'max':>7}")
    for name, values in timings.items():
        rest = values[1:]
        print(f"  {name:44} {values[0]:7.2f} {statistics.median(rest):7.2f} {min(rest):7.2f} {max(rest):7.2f}  s")


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-s", "-p", "no:cacheprovider", *sys.argv[1:]]))
