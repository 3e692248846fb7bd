"""The doctor's checks of the app and its runtime: the app's version, the llama-server build (runs, a previous
build kept, the macOS it needs) and what that build does to keep the server to this machine's own clients."""

from __future__ import annotations

from pathlib import Path

from ... import __version__
from ..llamacpp import build_features, runtime
from ..serving import launch, server
from ..serving import state as server_state
from ..system import config, hardware, listening, mac_memory, macho, macos
from ..system.errors import ConfigError, RuntimeNotInstalled, VerificationFailed
from .doctor_result import FAIL, OK, WARN, Check


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
