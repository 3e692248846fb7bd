"""The doctor's checks of this machine's desktop and network: the keyring, the port, and whether a tray host
(a StatusNotifierWatcher on the session bus, or an XEmbed tray on the X display) will show the icon."""

from __future__ import annotations

import ctypes
import ctypes.util
import os

import psutil

from ..serving import launch
from ..serving import state as server_state
from ..system import config, hardware, secrets
from ..system.errors import PortInUse
from .doctor_result import FAIL, OK, WARN, Check

SNI_WATCHER = "org.kde.StatusNotifierWatcher"
GNOME_TRAY_HINT = (
    "On GNOME, install and enable the AppIndicator extension (Debian/Ubuntu: "
    "`sudo apt install gnome-shell-extension-appindicator`, then "
    "`gnome-extensions enable ubuntu-appindicators@ubuntu.com` and log in again). KDE, XFCE, "
    "Cinnamon and waybar have a tray already. The command line works without one."
)


def check_keyring(settings: config.Settings) -> Check:
    status = secrets.keyring_status()
    if not status.usable:
        needed = settings.require_api_key
        return Check(
            "keyring",
            FAIL if needed else WARN,
            status.reason + (" The server's API key (require_api_key) cannot be kept." if needed else ""),
            fix=status.hint,
        )
    token = secrets.hf_token_info()
    where = {"environment": "in HF_TOKEN", "keyring": "in the keyring"}.get(token.source, "not set")
    return Check("keyring", OK, f"{status.backend}; Hugging Face token {where}")


def check_port(settings: config.Settings) -> Check:
    host, port = settings.host, settings.port
    state = server_state.running()
    ours = state is not None
    if ours and state.port == port:
        return Check("port", OK, f"{host}:{port} is held by our server (pid {state.pid})")
    try:
        launch.check_port_free(host, port)
    except PortInUse:
        holder = _listener(port)
        return Check(
            "port",
            FAIL,
            f"{host}:{port} is held by another program{f': {holder}' if holder else ''}",
            fix=f"Stop that program, or set `port = {port + 1}` in {config.paths().config_file} "
            f"(or serve with --port {port + 1}).",
        )
    running = f"; our server runs on port {state.port}" if ours else ""
    return Check("port", OK, f"{host}:{port} is free{running}")


def _listener(port: int) -> str:
    """Which program listens on the port, where the system lets us see it."""
    try:
        conns = psutil.net_connections(kind="inet")
    except (psutil.AccessDenied, OSError):
        return ""
    for conn in conns:
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
            try:
                return f"{psutil.Process(conn.pid).name()} (pid {conn.pid})"
            except psutil.Error:
                return f"pid {conn.pid}"
    return ""


def check_tray_host() -> Check:
    if hardware.os_name() == "darwin":
        return Check("tray host", OK, "the macOS menu bar")
    sni = _sni_watcher_present()
    xembed = _xembed_tray_present()
    found = [
        what
        for what, present in (
            ("a StatusNotifierWatcher on the session bus", sni),
            ("an XEmbed system tray on the X display", xembed),
        )
        if present
    ]
    if found:
        return Check("tray host", OK, " and ".join(found))
    where = os.environ.get("XDG_CURRENT_DESKTOP") or "this desktop"
    return Check(
        "tray host",
        WARN,
        f"no tray host found on {where}: the tray icon would have nowhere to show",
        fix=GNOME_TRAY_HINT,
    )


def _sni_watcher_present() -> bool:
    """Is org.kde.StatusNotifierWatcher owned on the session bus (KDE, GNOME's AppIndicator extension...)?"""
    if not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        return False
    try:
        from jeepney.bus_messages import message_bus
        from jeepney.io.blocking import open_dbus_connection
    except ImportError:  # jeepney comes with keyring on Linux
        return False
    try:
        with open_dbus_connection(bus="SESSION") as conn:
            reply = conn.send_and_get_reply(message_bus.NameHasOwner(SNI_WATCHER), timeout=2)
            return bool(reply.body and reply.body[0])
    except (OSError, ValueError, KeyError, TimeoutError, RuntimeError):
        return False


def _xembed_tray_present() -> bool:
    """Does a window own the _NET_SYSTEM_TRAY_S<screen> selection on $DISPLAY (the XEmbed tray protocol)?"""
    display = os.environ.get("DISPLAY")
    name = ctypes.util.find_library("X11")
    if not display or not name:
        return False
    try:
        xlib = ctypes.CDLL(name)
    except OSError:
        return False
    xlib.XOpenDisplay.restype = ctypes.c_void_p
    xlib.XOpenDisplay.argtypes = [ctypes.c_char_p]
    xlib.XDefaultScreen.argtypes = [ctypes.c_void_p]
    xlib.XInternAtom.restype = ctypes.c_ulong
    xlib.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    xlib.XGetSelectionOwner.restype = ctypes.c_ulong
    xlib.XGetSelectionOwner.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
    xlib.XCloseDisplay.argtypes = [ctypes.c_void_p]
    dpy = xlib.XOpenDisplay(display.encode())
    if not dpy:
        return False
    try:
        atom = xlib.XInternAtom(dpy, f"_NET_SYSTEM_TRAY_S{xlib.XDefaultScreen(dpy)}".encode(), 0)
        return xlib.XGetSelectionOwner(dpy, atom) != 0
    finally:
        xlib.XCloseDisplay(dpy)
