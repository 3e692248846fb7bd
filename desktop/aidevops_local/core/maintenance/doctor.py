"""`doctor`: check what the tool depends on and say what to fix.

Each check only looks (opening the database applies its pending migrations, as every command does): the
runtime (installed, runs, a previous build kept), what the build does for security, the models' files
(present, their recorded size, and with ``hashes`` their sha256), the usage database (readable, undamaged,
migrated), the keyring, the port, the tray host and the free disk. A check that cannot finish says so as its
own result instead of stopping the others.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import os
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psutil

from ... import __version__
from ..database import migrations
from ..llamacpp import build_features, runtime
from ..serving import launch, server
from ..serving import state as server_state
from ..system import config, hardware, listening, mac_memory, macho, macos, secrets
from ..system.errors import ConfigError, LocalModelsError, PortInUse, RuntimeNotInstalled, VerificationFailed
from ..system.progress import ProgressCallback, report

OK, WARN, FAIL = "ok", "warn", "fail"
DISK_FAIL_BYTES = 1 << 30  # below this a pull or an update fails part-way
DISK_WARN_BYTES = 5 << 30  # about one 7B model at Q4
SNI_WATCHER = "org.kde.StatusNotifierWatcher"
GNOME_TRAY_HINT = (
    "On GNOME, install and enable the AppIndicator extension (Debian/Ubuntu: "
    "`sudo apt install gnome-shell-extension-appindicator`, then "
    "`gnome-extensions enable ubuntu-appindicators@ubuntu.com` and log in again). KDE, XFCE, "
    "Cinnamon and waybar have a tray already. The command line works without one."
)


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # "ok", "warn" or "fail"
    summary: str
    fix: str = ""  # what to do, when status is not ok
    details: tuple[str, ...] = ()


@dataclass(frozen=True)
class DoctorReport:
    checks: tuple[Check, ...]
    failed: int = 0
    warned: int = 0
    ok: bool = True  # no check failed


def run(*, hashes: bool = False, progress: ProgressCallback | None = None) -> DoctorReport:
    settings, settings_check = _settings()
    checks = [
        settings_check,
        check_app_version(),
        _guarded("runtime", check_runtime),
        _guarded("previous runtime", check_previous_runtime),
        _guarded("macOS", check_macos),
        _guarded("server security", lambda: check_server_security(settings)),
        _guarded("database", check_database),
        _guarded("models", lambda: check_models(hashes=hashes, progress=progress)),
        _guarded("keyring", lambda: check_keyring(settings)),
        _guarded("port", lambda: check_port(settings)),
        _guarded("tray host", check_tray_host),
        _guarded("notifications", check_notifications),
        _guarded("disk", check_disk),
    ]
    checks = [c for c in checks if c is not None]
    failed = sum(c.status == FAIL for c in checks)
    warned = sum(c.status == WARN for c in checks)
    return DoctorReport(checks=tuple(checks), failed=failed, warned=warned, ok=failed == 0)


def _settings() -> tuple[config.Settings, Check]:
    """The settings and their check. A file that does not load fails that check, and the others look at the
    defaults (what would be used once the file is fixed or deleted)."""
    path = config.paths().config_file
    try:
        settings = config.load_settings()
    except LocalModelsError as exc:
        return config.Settings(), Check("settings", FAIL, exc.message, fix=exc.hint)
    where = str(path) if path.exists() else f"defaults (no {path})"
    return settings, Check("settings", OK, f"{where}: every value in range")


def _guarded(name: str, check: Callable[[], Check | None]) -> Check | None:
    """A check that hits an error reports it as its result: the doctor must not fall over what it examines."""
    try:
        return check()
    except LocalModelsError as exc:
        return Check(name, FAIL, f"could not be checked: {exc.message}", fix=exc.hint)
    except OSError as exc:
        return Check(name, FAIL, f"could not be checked: {exc}")


# ---- the app itself ----------------------------------------------------------------------------------------


def check_app_version() -> Check:
    """The installed version and where newer ones are published, for a user who wonders if theirs is current."""
    named = f"aidevops-local {__version__}"
    try:
        url = config.app_releases_url()
    except ConfigError as exc:
        return Check("app", WARN, f"{named}; {exc.message}", fix=exc.hint)
    if url is None:
        return Check(
            "app",
            OK,
            f"{named}; where newer releases are published is not configured",
            details=(
                "name the page with AIDEVOPS_APP_RELEASES_URL, or `Releases` under [project.urls] "
                "in pyproject.toml before building",
            ),
        )
    return Check("app", OK, f"{named}; newer releases are published at {url}")


# ---- runtime ------------------------------------------------------------------------------------------------


def check_runtime() -> Check:
    installed = runtime.installed_runtime()
    try:
        binary = runtime.find_llama_server()
    except RuntimeNotInstalled as exc:
        return Check("runtime", FAIL, exc.message, fix=exc.hint)
    try:
        version = runtime.check_server_runs(binary)
    except VerificationFailed as exc:
        back = (
            " or `aidevops-local update --rollback` to go back to the previous build"
            if runtime.previous_runtime()
            else ""
        )
        return Check(
            "runtime",
            FAIL,
            f"{binary} does not run: {exc.message}",
            fix=f"Reinstall it with `aidevops-local install --force`{back}. {exc.hint}".strip(),
            details=tuple(exc.details.splitlines()),
        )
    where = (
        "system llama-server"
        if installed and installed.source == "system"
        else (f"release {installed.tag} ({installed.backend})" if installed else "llama-server")
    )
    summary = f"{where}, `--version` runs: {version}"
    if installed and not installed.verified:
        return Check(
            "runtime",
            WARN,
            summary + "; installed without checking its checksum",
            fix="Install a release that publishes sha256 digests: `aidevops-local install --force`.",
        )
    return Check("runtime", OK, summary, details=(str(binary),))


def check_macos() -> Check | None:
    """On a Mac: the runtime's minimum macOS against the running one, Rosetta, the GPU's working set and the
    performance cores; None elsewhere."""
    running = macos.running_version()
    if running is None:
        return None
    arch = hardware.normalized_arch()
    notes, fixes, status = [f"macOS {macho.shown(running)} ({arch})"], [], OK
    try:
        binary = runtime.find_llama_server()
    except RuntimeNotInstalled:
        binary = None
    needed = macho.minimum_macos(binary, arch=arch) if binary else None
    if needed is not None and needed > running:
        status = FAIL
        notes.append(f"llama-server needs macOS {macho.shown(needed)}: it will not start here")
        fixes.append(
            "Run `aidevops-local install --force` for the newest build that runs on this macOS, or "
            "`brew install llama.cpp` and `aidevops-local install --use-system`."
        )
    elif needed is not None:
        notes.append(f"llama-server needs macOS {macho.shown(needed)} or later")
    if macos.under_rosetta():
        status = WARN if status == OK else status
        notes.append("this app runs under Rosetta: it sees an Intel CPU and no Metal GPU")
        fixes.append(macos.ROSETTA_HINT)
    if arch == "arm64":
        total = hardware.memory().total
        working = mac_memory.gpu_working_set(total, server=binary)
        notes.append(f"GPU working set {working.bytes / 2**30:.1f} GiB of {total / 2**30:.1f} GiB ({working.source})")
    performance = macos.performance_cores()
    if performance:
        notes.append(f"{performance} performance cores of {hardware.physical_cores()} (llama.cpp's threads)")
    return Check("macOS", status, "; ".join(notes), fix=" ".join(fixes))


def check_previous_runtime() -> Check:
    previous = runtime.previous_runtime()
    if previous is None:
        return Check("previous runtime", OK, "none kept yet (an update keeps the replaced build for rollback)")
    label = previous.tag or previous.version
    try:
        runtime.check_server_runs(Path(previous.server_path))
    except VerificationFailed as exc:
        return Check(
            "previous runtime",
            WARN,
            f"{label} is kept but does not run: {exc.message}",
            fix="A rollback would not help; the next `aidevops-local update` replaces it.",
        )
    return Check("previous runtime", OK, f"{label} kept for `aidevops-local update --rollback`")


def check_server_security(settings: config.Settings) -> Check | None:
    """What the build does to keep the server to this machine's own clients; None without a runtime."""
    try:
        binary = runtime.find_llama_server()
    except RuntimeNotInstalled:
        return None
    found = build_features.features(binary)
    notes, status, fixes = [], OK, []
    if settings.require_api_key and not found.api_key_env:
        status = FAIL
        notes.append("require_api_key is on, but this build cannot take the key from its environment")
        fixes.append("Run `aidevops-local update` for a newer build, or set `require_api_key = false`.")
    if not launch.is_loopback(settings.host):
        status = FAIL if not settings.require_api_key else WARN
        notes.append(
            f"the server binds {settings.host}: other machines can reach it"
            + ("" if settings.require_api_key else ", with no API key")
        )
        fixes.append('Set `host = "127.0.0.1"` unless you mean to share it (then also `require_api_key = true`).')
    running = _running_listen_addresses()
    if running is not None:
        state, addresses = running
        exposed = [str(a) for a in addresses if not a.loopback]
        where = ", ".join(map(str, addresses)) or "nothing yet"
        notes.append(f"the running server (pid {state.pid}) listens on {where}")
        if exposed and launch.is_loopback(state.host):  # reachable from elsewhere, though not told to be
            status = FAIL if not state.api_key_required or status == FAIL else WARN
            notes[-1] += ": other machines can reach it"
            fixes.append("Stop it (`aidevops-local stop`) and serve again: it binds only the `host` setting.")
    if found.cors_localhost:
        notes.insert(0, "browsers: only localhost pages may read its answers (--cors-origins localhost)")
    else:
        status = WARN if status == OK else status
        notes.insert(
            0,
            "this build has no --cors-origins localhost: any web page you open may call the server "
            "and read its answers",
        )
        fixes.append("Run `aidevops-local update` for a build that can limit CORS to localhost.")
    notes.append("API key: " + ("required" if settings.require_api_key else "off (require_api_key = false)"))
    return Check("server security", status, "; ".join(notes), fix=" ".join(fixes))


def _running_listen_addresses() -> tuple[server.ServerState, list[listening.ListenAddress]] | None:
    """Our running server's state and where it really listens (not where it was told to), or None."""
    state = server_state.running()
    if state is None:
        return None
    return state, listening.tcp_listen_addresses(server.listening_pids(state))


# ---- models -------------------------------------------------------------------------------------------------


def check_models(*, hashes: bool, progress: ProgressCallback | None = None) -> Check:
    from ..database import store

    path = config.paths().database
    if not path.exists():
        return Check("models", OK, "no models recorded yet")
    if store.check_health(path) != "ok":
        return Check("models", WARN, "not checked: the database that records them is damaged (see database)")
    store.database()
    # A row without a file is history (the old helper's model_access, a file gone before it was imported).
    rows = [r for r in store.ModelInventory.select().order_by(store.ModelInventory.model) if r.file_paths()]
    if not rows:
        return Check("models", OK, "no models recorded yet")
    problems: list[str] = []
    worst = OK
    hashed = 0
    for row in rows:
        files = row.file_paths()
        pulled = row.source == "pulled"
        missing = [f for f in files if not (f.is_absolute() and f.exists())]  # relative: where to is unknown
        if missing:
            # Another tool's file may go away with that tool; ours should not.
            worst = FAIL if pulled or worst == FAIL else WARN
            problems.append(f"{row.model}: file missing: {', '.join(map(str, missing))}")
            continue
        size = sum(f.stat().st_size for f in files)
        if row.size_bytes and size != row.size_bytes:
            worst = FAIL
            problems.append(f"{row.model}: {size} bytes on disk, {row.size_bytes} recorded when it was pulled")
            continue
        if hashes and row.sha256:
            bad = _hash_mismatches(row.model, files, row.sha256, progress)
            hashed += 1
            if bad:
                worst = FAIL
                problems += [f"{row.model}: {name} does not match its recorded hash" for name in bad]
    counted = f"{len(rows)} model{'s' if len(rows) != 1 else ''}"
    if not problems:
        checked = f"; {hashed} hashed, all match" if hashes else "; hashes not checked (--hashes, slow)"
        return Check("models", OK, f"{counted}: every file present at its recorded size{checked}")
    return Check(
        "models",
        worst,
        f"{len(problems)} problem{'s' if len(problems) != 1 else ''} in {counted}",
        fix="Pull a damaged or missing model again (`aidevops-local pull REPO`), or remove it "
        "(`aidevops-local models rm NAME`).",
        details=tuple(problems),
    )


def _hash_mismatches(name: str, files: list[Path], recorded: str, progress: ProgressCallback | None) -> list[str]:
    """Files whose content differs from what pull verified: the Hub's LFS sha256, or for a file kept in git,
    its blob id (sha1 of "blob <size>\\0" + content). A split set records one per part, comma-separated."""
    expected = recorded.split(",")
    if len(expected) != len(files):
        return [f"{len(files)} files but {len(expected)} recorded hashes"]
    bad = []
    for path, want in zip(files, expected):
        size = path.stat().st_size
        if len(want) == 40:
            digest = hashlib.sha1()
            digest.update(b"blob %d\0" % size)
        else:
            digest = hashlib.sha256()
        done = 0
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
                done += len(chunk)
                report(progress, f"Hashing {path.name}", done, size)
        if digest.hexdigest() != want.strip().lower():
            bad.append(path.name)
    return bad


# ---- database -----------------------------------------------------------------------------------------------


def check_database() -> Check:
    from ..database import store

    path = config.paths().database
    if not path.exists():
        return Check("database", OK, f"not created yet ({path} is made on first use)")
    problem = store.check_health(path)
    if problem != "ok":
        return Check(
            "database",
            FAIL,
            f"{path} is damaged: {problem}",
            fix="`aidevops-local usage --reset-db` moves it aside (nothing is deleted) and starts a fresh one.",
        )
    applied, newer = _migrations(path)
    known = [fn.__name__ for fn in migrations.MIGRATIONS]
    pending = [name for name in known if name not in applied]
    if newer:
        return Check(
            "database",
            WARN,
            f"{path} was migrated by a newer aidevops-local ({', '.join(newer)})",
            fix="Update aidevops-local; this version may not read every column.",
        )
    if pending:
        return Check(
            "database",
            WARN,
            f"{len(pending)} migration(s) not applied yet: {', '.join(pending)}",
            fix="They run the next time the tool opens it, e.g. `aidevops-local usage`.",
        )
    return Check("database", OK, f"integrity ok, {len(known)} migrations applied", details=(str(path),))


def _migrations(path: Path) -> tuple[set[str], list[str]]:
    """Applied migration names, and those this version does not know (read-only)."""
    from ..database import store

    conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=store.BUSY_TIMEOUT_S)
    try:
        rows = conn.execute("SELECT name FROM schema_migrations").fetchall()
    except sqlite3.OperationalError:
        rows = []  # no table yet: nothing applied
    finally:
        conn.close()
    applied = {r[0] for r in rows}
    known = {fn.__name__ for fn in migrations.MIGRATIONS}
    return applied, sorted(applied - known)


# ---- keyring, port, tray host, disk ----------------------------------------------------------------------


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


def check_notifications() -> Check | None:
    """macOS: whether the notification centre will show the tray's notices. Its send drops them without a
    word when the user has not allowed the app, so the tray shows crashes as dialogs then; this says why."""
    if hardware.os_name() != "darwin":
        return None  # freedesktop notification services ask no permission
    try:
        import asyncio

        from desktop_notifier import DesktopNotifier
        from desktop_notifier.main import get_backend_class
    except ImportError:
        return None  # the tray (the `gui` extra) is not installed: nothing sends notifications
    try:
        backend = get_backend_class().__name__
    except ImportError as exc:  # its macOS backend needs rubicon-objc, which the app bundle carries
        return Check(
            "notifications",
            WARN,
            f"the notification centre cannot be reached from here ({exc.name} is missing)",
            fix="Use the aidevops Local Models app, which brings it.",
        )
    if backend == "DummyNotificationCenter":
        return Check(
            "notifications",
            WARN,
            "the notification centre serves only an app bundle: run outside "
            "one, the tray shows its notices as menu-bar messages",
            fix="Use the aidevops Local Models app for notifications with buttons.",
        )

    async def allowed() -> bool:
        return await asyncio.wait_for(DesktopNotifier(app_name="aidevops Local Models").has_authorisation(), 5)

    try:
        granted = asyncio.run(allowed())
    except Exception as exc:  # noqa: BLE001 - reported as the check's result: the doctor must not fall over it
        return Check("notifications", WARN, f"permission could not be read ({type(exc).__name__})")
    if granted:
        return Check("notifications", OK, "allowed in the notification centre")
    return Check(
        "notifications",
        WARN,
        "not allowed: crashes and start failures are shown as dialogs instead",
        fix="Allow them in System Settings > Notifications > aidevops Local Models.",
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


def check_disk() -> Check:
    from ..models import library

    models_dir = config.paths().models_dir
    where = models_dir
    while not where.exists() and where != where.parent:
        where = where.parent
    free = shutil.disk_usage(where).free
    details = []
    partial = library.partial_downloads()
    if partial:
        size = sum(p.stat().st_size for p in partial if p.exists())
        details.append(
            f"{len(partial)} unfinished download(s) hold {size / 2**30:.1f} GiB in "
            f"{config.paths().partial_dir}: pull again to finish them"
        )
    summary = f"{free / 2**30:.1f} GiB free for {models_dir}"
    if free < DISK_FAIL_BYTES:
        return Check(
            "disk",
            FAIL,
            summary,
            fix="Free some space: `aidevops-local cleanup` lists unused models.",
            details=tuple(details),
        )
    if free < DISK_WARN_BYTES:
        return Check(
            "disk",
            WARN,
            summary + ": too little for most models",
            fix="Free some space: `aidevops-local cleanup` lists unused models.",
            details=tuple(details),
        )
    return Check("disk", OK, summary, details=tuple(details))
