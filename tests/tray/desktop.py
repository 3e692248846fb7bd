"""A private desktop session for the tray tests and benchmark: its own D-Bus session bus (no service
activation, so nothing starts behind the tests' back), gnome-keyring-daemon unlocked headless on it, Xvfb on a
display it picks itself (-displayfd) with `trayer` as the XEmbed tray host, dunst as the notification daemon
(with a scripted "dmenu" so a test can pick a notification's action), and dbus-monitor recording every Notify
call and ActionInvoked signal. ``start_desktop(root)`` starts it all; ``stop_desktop`` ends what it started.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

TOOLS = (
    "dbus-daemon",
    "dbus-monitor",
    "dbus-send",
    "stdbuf",
    "gnome-keyring-daemon",
    "Xvfb",
    "trayer",
    "dunst",
    "dunstctl",
    "xdotool",
    "xwininfo",
    "import",
)
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir={dir}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""

DUNSTRC = """[global]
    dmenu = {dmenu}
    mouse_left_click = do_action, close_current
    font = DejaVu Sans 9
[urgency_low]
    timeout = 0
[urgency_normal]
    timeout = 0
[urgency_critical]
    timeout = 0
"""

# dunst's context menu hands its choices to "dmenu" on stdin; this one picks the line naming the action.
DMENU = """#!/bin/sh
cat > "{seen}"
grep -F -- "$(cat "{pick}")" "{seen}" | head -1
"""


@dataclass
class NotifyCall:
    app_name: str
    summary: str
    body: str
    actions: dict[str, str]  # action id -> label
    urgency: int | None = None
    icon: str = ""  # the app_icon argument: a file URI or an icon name


@dataclass
class Desktop:
    root: Path
    bus: str
    display: str
    env: dict[str, str]
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def monitor_log(self) -> Path:
        return self.root / "dbus-monitor.log"

    def notifications(self) -> list[NotifyCall]:
        return parse_notify_calls(self.monitor_log.read_text(errors="replace"))

    def actions_invoked(self) -> list[str]:
        text = self.monitor_log.read_text(errors="replace")
        return re.findall(r'member=ActionInvoked\n\s+uint32 \d+\n\s+string "([^"]*)"', text)

    def wait_action_invoked(self, action: str, timeout: float = 10) -> None:
        _wait_for(lambda: action in self.actions_invoked(), timeout, f"ActionInvoked {action!r}")

    def wait_notification(self, summary: str, timeout: float = 10, containing: str = "") -> NotifyCall:
        """The latest notification with this summary (and ``containing`` in its body: the desktop is shared by
        every tray test, so an earlier test's notice of the same kind may be there already)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [n for n in self.notifications() if n.summary == summary and containing in n.body]
            if found:
                return found[-1]
            _pause(0.1)
        raise AssertionError(
            f"no notification {summary!r} reached dunst; saw {[n.summary for n in self.notifications()]}"
        )

    def choose_action(self, summary: str, label: str) -> None:
        """Pick an action from dunst's context menu, as a user would."""
        (self.root / "dmenu.pick").write_text(f"#{label} ({summary})")
        self.run(["dunstctl", "context"])

    def close_all(self) -> None:
        self.run(["dunstctl", "close-all"])

    def run(self, argv: list[str], **kw) -> subprocess.CompletedProcess:
        return subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=30, **kw)

    def screenshot(self, name: str, crop: str | None = None) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        self.run(["import", "-window", "root"] + (["-crop", crop] if crop else []) + [str(path)], check=True)
        return path

    def window_tree(self) -> str:
        return self.run(["xwininfo", "-root", "-tree"]).stdout

    def tray_panel(self) -> tuple[int, int, int, int]:
        """trayer's panel geometry: x, y, width, height."""
        found = re.search(r'"panel": \("panel" "trayer"\)\s+(\d+)x(\d+)\+\S+\s+\+(\d+)\+(\d+)', self.window_tree())
        assert found, "trayer's panel window is not on the display"
        w, h, x, y = map(int, found.groups())
        return x, y, w, h


def parse_notify_calls(text: str) -> list[NotifyCall]:
    calls = []
    for block in re.split(r"\n(?=method call|signal|method return|error)", text):
        if "member=Notify" not in block.split("\n", 1)[0]:
            continue
        if not re.search(r"^\s+int32 -?\d+\s*\Z", block.rstrip() + "\n", re.MULTILINE):
            continue  # dbus-monitor is still writing it: its last argument (the timeout) is not there yet
        strings = re.findall(r'^\s+string "((?:[^"\\]|\\.)*)"', block, re.MULTILINE)
        if len(strings) < 4:
            continue
        app_name, icon, summary, body, *rest = strings
        actions_part = block.split("array [", 1)[1].split("]", 1)[0] if "array [" in block else ""
        action_strings = re.findall(r'string "((?:[^"\\]|\\.)*)"', actions_part)
        actions = dict(zip(action_strings[::2], action_strings[1::2]))
        urgency = re.search(r'string "urgency"\s+variant\s+byte (\d+)', block)
        level = int(urgency.group(1)) if urgency else None
        calls.append(NotifyCall(app_name, summary, body, actions, level, icon))
    return calls


def _start(desktop: Desktop, name: str, argv: list[str], **kw) -> subprocess.Popen:
    # setpriv --pdeathsig: SIGTERM when the test process dies, so a run that is killed or aborts (no teardown)
    # leaves no daemons behind. (A preexec_fn could do the same, but is unsafe once the tests run threads.)
    if shutil.which("setpriv"):
        argv = ["setpriv", "--pdeathsig", "TERM", "--", *argv]
    log = open(desktop.root / f"{name}.log", "wb")
    proc = subprocess.Popen(
        argv, env=desktop.env, stdout=kw.pop("stdout", log), stderr=log, start_new_session=True, **kw
    )
    desktop.procs[name] = proc
    return proc


def _pause(seconds: float) -> None:
    """Sleep, but keep an in-process Qt app's event loop turning: its jobs report back through it."""
    qt = sys.modules.get("PySide6.QtCore")
    app = qt.QCoreApplication.instance() if qt else None
    if app is None:
        time.sleep(seconds)
        return
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents(qt.QEventLoop.ProcessEventsFlag.AllEvents, 20)
        time.sleep(0.01)


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        _pause(0.05)
    raise RuntimeError(f"{what} did not come up within {timeout} s")


def _bus_has(desktop: Desktop, name: str) -> bool:
    out = desktop.run(
        [
            "dbus-send",
            "--session",
            "--print-reply",
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.NameHasOwner",
            f"string:{name}",
        ]
    ).stdout
    return "boolean true" in out


def missing_tools() -> list[str]:
    return [t for t in TOOLS if shutil.which(t) is None]


def start_desktop(root: Path) -> Desktop:
    runtime_dir = root / "run"
    runtime_dir.mkdir(mode=0o700, parents=True)
    (root / "bus.conf").write_text(BUS_CONFIG.format(dir=root))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBUS_", "XDG_", "DISPLAY", "WAYLAND"))}
    env.update(
        XDG_RUNTIME_DIR=str(runtime_dir),
        XDG_DATA_HOME=str(root / "data"),
        XDG_CONFIG_HOME=str(root / "config"),
        XDG_CACHE_HOME=str(root / "cache"),
    )
    desktop = Desktop(root=root, bus="", display="", env=env)
    try:
        bus = _start(
            desktop,
            "dbus-daemon",
            ["dbus-daemon", f"--config-file={root / 'bus.conf'}", "--nofork", "--print-address=1"],
            stdout=subprocess.PIPE,
        )
        desktop.bus = bus.stdout.readline().decode().strip()
        env["DBUS_SESSION_BUS_ADDRESS"] = desktop.bus

        read_fd, write_fd = os.pipe()
        _start(
            desktop,
            "xvfb",
            [
                "Xvfb",
                "-displayfd",
                str(write_fd),
                "-screen",
                "0",
                "1280x800x24",
                "-nolisten",
                "tcp",
                "-noreset",
            ],
            pass_fds=(write_fd,),
        )
        os.close(write_fd)
        with os.fdopen(read_fd) as pipe:
            desktop.display = ":" + pipe.readline().strip()
        env["DISPLAY"] = desktop.display

        keyring = _start(
            desktop,
            "gnome-keyring",
            ["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
            stdin=subprocess.PIPE,
        )
        keyring.stdin.write(b"test-password")
        keyring.stdin.close()
        _wait_for(lambda: _bus_has(desktop, "org.freedesktop.secrets"), 10, "gnome-keyring-daemon")

        (root / "dmenu.sh").write_text(DMENU.format(seen=root / "dmenu.seen", pick=root / "dmenu.pick"))
        (root / "dmenu.sh").chmod(0o755)
        (root / "dunstrc").write_text(DUNSTRC.format(dmenu=root / "dmenu.sh"))
        _start(desktop, "dunst", ["dunst", "-config", str(root / "dunstrc")])
        _wait_for(lambda: _bus_has(desktop, "org.freedesktop.Notifications"), 10, "dunst")
        # stdbuf: dbus-monitor's stdio would hold a file's output in a block buffer, out of the tests' sight.
        _start(
            desktop,
            "dbus-monitor",
            ["stdbuf", "-oL", "dbus-monitor", "--session", "interface='org.freedesktop.Notifications'"],
            stdout=open(root / "dbus-monitor.log", "wb"),
        )
        _start(
            desktop,
            "trayer",
            [
                "trayer",
                "--edge",
                "top",
                "--align",
                "right",
                "--widthtype",
                "pixel",
                "--width",
                "160",
                "--height",
                "28",
                "--SetDockType",
                "true",
                "--transparent",
                "false",
                "--tint",
                "0x303030",
            ],
        )
        _wait_for(lambda: '"panel": ("panel" "trayer")' in desktop.window_tree(), 10, "trayer")
        _wait_for(lambda: desktop.monitor_log.stat().st_size > 0, 10, "dbus-monitor")
    except BaseException:
        stop_desktop(desktop)
        raise
    return desktop


def stop_desktop(desktop: Desktop) -> None:
    for proc in reversed(list(desktop.procs.values())):
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
