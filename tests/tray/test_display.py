"""The tray as a real process on a virtual display: its icon embedded in a real tray host (trayer, XEmbed),
a real right-click opening the menu (screenshot saved under test-artifacts/), a second launch handing over to
the first, and the window shown instead where the display has no tray at all."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest

from aidevops_local.core.serving import server
from tests.waiting import wait_for


@dataclass
class Geometry:
    wid: str
    x: int
    y: int
    w: int
    h: int

    @property
    def center(self) -> tuple[int, int]:
        return self.x + self.w // 2, self.y + self.h // 2


def tray_windows(desktop, *, visible: bool = True) -> list[Geometry]:
    args = ["xdotool", "search"] + (["--onlyvisible"] if visible else []) + ["--class", "aidevops-local-tray"]
    found = []
    for wid in desktop.run(args).stdout.split():
        out = desktop.run(["xdotool", "getwindowgeometry", wid]).stdout
        pos = re.search(r"Position: (-?\d+),(-?\d+)", out)
        size = re.search(r"Geometry: (\d+)x(\d+)", out)
        if pos and size:
            found.append(Geometry(wid, *map(int, pos.groups()), *map(int, size.groups())))
    return found


def embedded_icon(desktop) -> Geometry:
    px, py, pw, ph = desktop.tray_panel()

    def inside_panel():
        icons = [g for g in tray_windows(desktop) if px <= g.x < px + pw and py <= g.y < py + ph and g.w <= 64]
        return icons[0] if icons else None

    return wait_for(inside_panel, 10, "the tray icon inside trayer's panel")


def test_icon_embeds_in_trayer_and_right_click_opens_the_menu(served, start_tray, desktop):
    tray = start_tray()
    assert tray.ready_s < 10
    icon = embedded_icon(desktop)
    before = {g.wid for g in tray_windows(desktop)}
    time.sleep(1.0)  # let a poll see the running server, so the menu's first line says so
    desktop.run(["xdotool", "mousemove", *map(str, icon.center), "click", "3"], check=True)
    menu = wait_for(
        lambda: next((g for g in tray_windows(desktop) if g.wid not in before and g.h > 150), None),
        10,
        "the menu window",
    )
    assert menu.w > 150
    time.sleep(0.3)  # drawn
    shot = desktop.screenshot(
        "tray-menu-running.png",
        crop=f"{menu.w + 20}x{menu.h + 20}+{max(0, menu.x - 10)}+{max(0, menu.y - 10)}",
    )
    assert shot.stat().st_size > 2000
    desktop.run(["xdotool", "key", "Escape"])
    assert server.status().state == "running"  # the tray leaves the server alone
    assert tray.stop() == 0
    assert server.status().state == "running"  # quitting by signal leaves it serving other tools


def test_second_launch_brings_the_first_forward(system_runtime, start_tray, desktop, tray_env):
    first = start_tray()
    embedded_icon(desktop)
    begun = time.monotonic()
    second = subprocess.run(
        [sys.executable, "-m", "aidevops_local.tray"],
        env=tray_env,
        timeout=30,
        capture_output=True,
        text=True,
    )
    assert second.returncode == 0 and time.monotonic() - begun < 10
    window = wait_for(
        lambda: next((g for g in tray_windows(desktop) if g.w > 300), None),
        10,
        "the control window of the first instance",
    )
    assert first.proc.poll() is None
    assert window.h > 100


@pytest.fixture
def bare_display(desktop, tmp_path):
    """A second X display with no tray host on it, as on GNOME without the AppIndicator extension."""
    import os

    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1024x700x24", "-nolisten", "tcp"],
        pass_fds=(write_fd,),
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        display = ":" + pipe.readline().strip()
    yield display
    proc.terminate()
    proc.wait(5)


def test_no_tray_on_the_desktop_opens_the_window_instead(served, start_tray, desktop, tray_env, bare_display):
    tray_env["DISPLAY"] = bare_display
    tray = start_tray()
    env = dict(desktop.env, DISPLAY=bare_display)
    out = subprocess.run(
        ["xdotool", "search", "--onlyvisible", "--class", "aidevops-local-tray"],
        env=env,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert out, "no window was shown on a display without a tray"
    time.sleep(1.5)
    from tests.tray.conftest import ARTIFACTS

    ARTIFACTS.mkdir(exist_ok=True)
    subprocess.run(
        ["import", "-window", "root", "-crop", "640x300+0+0", str(ARTIFACTS / "no-tray-window.png")],
        env=env,
        check=True,
    )
    tray.stop()


@pytest.fixture
def sni_watcher(desktop):
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.tray.sni_watcher"], env=desktop.env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "ready"
    yield proc
    proc.terminate()
    proc.wait(5)


async def _dbusmenu_labels(service: str) -> tuple[str, list[str]]:
    """Ask the item for its menu the way a shell does: AboutToShow, then GetLayout."""
    from dbus_fast.aio import MessageBus

    bus = await MessageBus().connect()
    try:
        intro = await bus.introspect(service, "/StatusNotifierItem")
        item = bus.get_proxy_object(service, "/StatusNotifierItem", intro).get_interface("org.kde.StatusNotifierItem")
        menu_path = await item.get_menu()
        tooltip = await item.get_tool_tip()
        intro = await bus.introspect(service, menu_path)
        dbusmenu = bus.get_proxy_object(service, menu_path, intro).get_interface("com.canonical.dbusmenu")
        await dbusmenu.call_about_to_show(0)
        await asyncio.sleep(0.3)
        _rev, (_id, _props, children) = await dbusmenu.call_get_layout(0, -1, ["label"])
        labels = [c.value[1]["label"].value for c in children if "label" in c.value[1]]
        return tooltip[2], labels
    finally:
        bus.disconnect()


def test_statusnotifieritem_path_exports_the_menu_over_dbus(served, sni_watcher, start_tray, desktop):
    start_tray()
    line = sni_watcher.stdout.readline().strip()
    assert line.startswith("item "), line
    service = line.split(" ", 1)[1]
    tooltip_title, labels = asyncio.run(_dbusmenu_labels(service))
    # The display name once the first full look has read the model's header; its cleaned name before that.
    assert re.fullmatch(r"Running · (Tiny Random Llama \(tiny-a\)|tiny a)", labels[0])
    assert "Stop server" in labels and "Switch model" in labels and "Quit" in labels
    assert tooltip_title.startswith("Running · ")
