"""The tray's costs, measured with the real parts. Prints; asserts nothing.

    python -m tests.benchmarks.bench_tray                       # about 1.5 minutes on 2 cores
    python -m tests.benchmarks.bench_tray --idle-seconds 10     # a shorter idle window

1. Cold start to icon shown: the tray as a real process on a private Xvfb with trayer as the tray host; the
   time from the process's creation to its first state on the icon ("ready", reported by the tray itself) and,
   from outside, to its icon window appearing in trayer's panel. Median of --starts runs (goal: under 1 s).
2. Idle resident memory of the tray process, settled, with the real llama-server serving (goal: under 100 MB).
3. Idle CPU of the tray process over --idle-seconds with the server running (goal: under 0.5 % of one core).
4. Menu open time with --models local models: building the menu on aboutToShow and filling the model submenu,
   in-process from the cached snapshot (what the GUI thread pays), the worker's full refresh that reads
   them (off the GUI thread), and a real right-click to the menu window mapped on the display.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from tests.fixtures.prepare import free_port, prepare
from tests.tray.desktop import missing_tools, start_desktop, stop_desktop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--starts", type=int, default=3)
    args = parser.parse_args(argv)
    missing = missing_tools()
    if missing:
        print(f"bench_tray: missing {', '.join(missing)}: run tests/install-deps.sh", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="bench-tray-"))
    root = work / "aidevops"
    root.mkdir()
    os.environ["AIDEVOPS_HOME"] = str(root)  # before the product reads any path
    os.environ["QT_QPA_PLATFORM"] = "offscreen"  # this process's own Qt (part 4); the tray gets the display
    fixtures = prepare()
    os.environ["PATH"] = f"{fixtures.llama_server_dir}{os.pathsep}{os.environ['PATH']}"

    from aidevops_local.core import config, runtime, server

    runtime.use_system()
    config.save_settings(config.Settings(threads=1, ctx_size=2048, parallel=1, port=free_port()))
    models = root / "models"
    models.mkdir()
    names = [f"tiny-{i:03d}" for i in range(args.models)]
    for name in names:
        os.link(fixtures.tiny_gguf, models / f"{name}.gguf")  # hard links: 100 models, one file's space
    desktop = start_desktop(work / "desktop")
    try:
        status = server.serve(names[0])
        print(f"server: {status.model} pid {status.pid}, {args.models} local models")
        env = dict(desktop.env, AIDEVOPS_HOME=str(root), PATH=os.environ["PATH"], PYTHONUNBUFFERED="1")
        env.pop("QT_QPA_PLATFORM", None)
        cold_start(desktop, env, args.starts)
        idle(desktop, env, args.idle_seconds)
        menu_open(desktop, env, args.models)
    finally:
        server.stop(grace=2)
        stop_desktop(desktop)
    return 0


def launch(env: dict) -> tuple[subprocess.Popen, float]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "aidevops_local.tray", "--report-ready"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = proc.stdout.readline()
    if not line.startswith("ready "):
        raise RuntimeError(f"the tray did not start: {line!r}")
    return proc, float(line.split()[1])


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(15)


def icon_in_panel(desktop) -> bool:
    px, py, pw, ph = desktop.tray_panel()
    for wid in desktop.run(
        ["xdotool", "search", "--onlyvisible", "--class", "aidevops-local-tray"]
    ).stdout.split():
        out = desktop.run(["xdotool", "getwindowgeometry", wid]).stdout
        pos = re.search(r"Position: (-?\d+),(-?\d+)", out)
        if pos and px <= int(pos.group(1)) < px + pw and py <= int(pos.group(2)) < py + ph:
            return True
    return False


def cold_start(desktop, env: dict, starts: int) -> None:
    reported, seen = [], []
    for _ in range(starts):
        begun = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "aidevops_local.tray", "--report-ready"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        while not icon_in_panel(desktop):
            if time.monotonic() - begun > 30:
                raise RuntimeError("the icon never appeared in the tray")
            time.sleep(0.01)
        seen.append(time.monotonic() - begun)
        reported.append(float(proc.stdout.readline().split()[1]))
        stop(proc)
    print(
        f"cold start to icon shown: {statistics.median(reported):.3f} s "
        f"(tray's own report, median of {starts}: "
        f"{', '.join(f'{r:.3f}' for r in reported)}); icon seen in trayer's panel after "
        f"{statistics.median(seen):.3f} s (polled from outside)"
    )


def idle(desktop, env: dict, seconds: float) -> None:
    proc, _ = launch(env)
    try:
        tray = psutil.Process(proc.pid)
        time.sleep(5)  # the first full refresh and the imports it triggers are over
        rss = tray.memory_info().rss
        uss = tray.memory_full_info().uss
        before, t0 = tray.cpu_times(), time.monotonic()
        time.sleep(seconds)
        after, t1 = tray.cpu_times(), time.monotonic()
        used = (after.user - before.user) + (after.system - before.system)
        print(
            f"idle resident memory: {rss / 2**20:.1f} MiB RSS ({uss / 2**20:.1f} MiB unique to the process)"
        )
        print(
            f"idle CPU over {seconds:.0f} s with the server running: "
            f"{100 * used / (t1 - t0):.3f} % of one core "
            f"({used * 1000:.0f} ms CPU)"
        )
    finally:
        stop(proc)


def menu_open(desktop, env: dict, n_models: int) -> None:
    from PySide6.QtWidgets import QApplication, QMenu

    from aidevops_local.tray import menu, snapshot
    from aidevops_local.tray.app import TrayApp

    app = QApplication.instance() or QApplication([])
    t0 = time.perf_counter()
    snap = snapshot.collect(full=True)
    collect_s = time.perf_counter() - t0
    tray = TrayApp(use_tray=False, native_notifications=False)
    tray.snapshot = snap
    builds, submenus = [], []
    for _ in range(20):
        m = QMenu()
        t0 = time.perf_counter()
        menu.build(m, tray)
        builds.append(time.perf_counter() - t0)
        switch = next(a for a in m.actions() if a.objectName() == "switch").menu()
        t0 = time.perf_counter()
        switch.aboutToShow.emit()
        submenus.append(time.perf_counter() - t0)
        m.deleteLater()
        app.processEvents()
    assert len(snap.models) == n_models, f"expected {n_models} models, the snapshot has {len(snap.models)}"
    print(
        f"menu open with {n_models} local models: build {1000 * statistics.median(builds):.2f} ms, "
        f"model submenu {1000 * statistics.median(submenus):.2f} ms (GUI thread, median of 20); "
        f"full refresh reading them {1000 * collect_s:.0f} ms (worker thread)"
    )

    proc, _ = launch(env)
    try:
        time.sleep(3)
        px, py, pw, ph = desktop.tray_panel()
        click = []
        for _ in range(5):
            before = set(
                desktop.run(
                    ["xdotool", "search", "--onlyvisible", "--class", "aidevops-local-tray"]
                ).stdout.split()
            )
            t0 = time.monotonic()
            desktop.run(["xdotool", "mousemove", str(px + pw - 12), str(py + ph // 2), "click", "3"])
            while True:
                now = set(
                    desktop.run(
                        ["xdotool", "search", "--onlyvisible", "--class", "aidevops-local-tray"]
                    ).stdout.split()
                )
                if now - before or time.monotonic() - t0 > 5:
                    break
            click.append(time.monotonic() - t0)
            desktop.run(["xdotool", "key", "Escape"])
            time.sleep(0.5)
        print(
            f"right-click to menu window mapped on the display: {1000 * statistics.median(click):.0f} ms "
            f"(median of 5, includes xdotool's own start-up)"
        )
    finally:
        stop(proc)


if __name__ == "__main__":
    sys.exit(main())
