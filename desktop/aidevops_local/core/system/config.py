"""Every environment variable and on-disk path the tool uses, read in one place.

`AIDEVOPS_HOME` (default ``~/.aidevops``) roots every file.  The human-editable settings live in
``<root>/local-models/config.toml``; a missing file means defaults, a missing key means its default.
"""

from __future__ import annotations

import os
import platform
import re
import sys
import tomllib
import urllib.parse
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .errors import ConfigError
from .files import write_atomically
from .settings_checks import (  # re-exported: the CLI's argument types check against the same bounds
    CTX_RANGE as CTX_RANGE,
)
from .settings_checks import (
    DAYS_RANGE as DAYS_RANGE,
)
from .settings_checks import (
    GRACE_RANGE_S as GRACE_RANGE_S,
)
from .settings_checks import (
    PORT_RANGE as PORT_RANGE,
)
from .settings_checks import (
    THREADS_RANGE as THREADS_RANGE,
)
from .settings_checks import (
    check_settings as check_settings,
)
from .settings_checks import (
    is_valid_host as is_valid_host,
)

DEFAULT_RELEASES_URL = "https://api.github.com/repos/ggml-org/llama.cpp/releases"
DEFAULT_HF_ENDPOINT = "https://huggingface.co"


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def env_bool(name: str, default: bool = False) -> bool:
    value = env_str(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Paths:
    """Where everything lives under the root."""

    root: Path

    @property
    def bin_dir(self) -> Path:
        """The active llama.cpp build: llama-server beside its shared libraries."""
        return self.root / "bin"

    @property
    def app_dir(self) -> Path:
        """This tool's own files (config, state, logs, previous builds)."""
        return self.root / "local-models"

    @property
    def previous_bin_dir(self) -> Path:
        return self.app_dir / "bin.previous"

    @property
    def runtime_manifest(self) -> Path:
        return self.bin_dir / "aidevops-runtime.json"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def partial_dir(self) -> Path:
        """Downloads in progress, named by their LFS sha256 so that a re-run finds and resumes them."""
        return self.models_dir / ".partial"

    @property
    def database(self) -> Path:
        return self.root / ".agent-workspace" / "memory" / "local-models.db"

    @property
    def config_file(self) -> Path:
        return self.app_dir / "config.toml"

    @property
    def state_file(self) -> Path:
        return self.app_dir / "server.json"

    @property
    def router_presets(self) -> Path:
        """The models a router-mode server offers, with their plans (rewritten at each start)."""
        return self.app_dir / "router-models.ini"

    @property
    def logs_dir(self) -> Path:
        return self.app_dir / "logs"

    @property
    def cache_dir(self) -> Path:
        return self.app_dir / "cache"

    @property
    def legacy_dir(self) -> Path:
        """Where the framework's earlier shell helper kept its binary, models and usage.db."""
        return self.root / "local-models"


def root_dir() -> Path:
    return Path(env_str("AIDEVOPS_HOME", str(Path.home() / ".aidevops"))).expanduser()


def agents_dir() -> Path:
    """The aidevops framework's deployed agents (its setup.sh: ~/.aidevops/agents, AIDEVOPS_AGENTS_DIR wins)."""
    return Path(env_str("AIDEVOPS_AGENTS_DIR") or root_dir() / "agents").expanduser()


def paths() -> Paths:
    return Paths(root_dir())


def releases_url() -> str:
    return _http_address("AIDEVOPS_LLAMA_RELEASES_URL", "llama.cpp's releases API", DEFAULT_RELEASES_URL)


def app_releases_url() -> str | None:
    """Where this app's own releases are published: AIDEVOPS_APP_RELEASES_URL, else the package's `Releases`
    project URL (the release workflow stamps it into pyproject.toml); None when neither names one."""
    if env_str("AIDEVOPS_APP_RELEASES_URL") is None:
        return releases_page_from(_project_urls())
    return _http_address("AIDEVOPS_APP_RELEASES_URL", "the releases page", "")


def _http_address(variable: str, what: str, default: str) -> str:
    """The address an environment variable gives (else ``default``), checked here so that a typo is a
    ConfigError naming the variable, not a traceback from the HTTP client."""
    given = env_str(variable)
    if given is None:
        return default.rstrip("/")
    address = given.strip()
    try:
        parts = urllib.parse.urlsplit(address)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and not re.search(r"\s", address)
    except ValueError:
        valid = False
    if not valid:
        raise ConfigError(
            f"{variable} is not an http(s) address: {given!r}",
            hint=f"Set {variable} to {what} (https://...), or unset it.",
        )
    return address.rstrip("/")


def releases_page_from(project_urls: list[str]) -> str | None:
    """The `Releases` entry of core metadata's Project-URL lines ("Label, URL")."""
    for line in project_urls:
        label, _, url = line.partition(",")
        if label.strip().lower() == "releases" and url.strip().startswith(("https://", "http://")):
            return url.strip()
    return None


def _project_urls() -> list[str]:
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        return metadata("aidevops-local").get_all("Project-URL") or []
    except PackageNotFoundError:
        return []


def github_token() -> str | None:
    """Optional; lifts GitHub's anonymous rate limit. Sent only to the releases API, never logged."""
    return env_str("GITHUB_TOKEN")


def hf_endpoint() -> str:
    return _http_address("HF_ENDPOINT", "the Hugging Face Hub (https://huggingface.co)", DEFAULT_HF_ENDPOINT)


def hf_offline() -> bool:
    """huggingface_hub reads HF_HUB_OFFLINE once at import; we read it per call so a running tray follows it."""
    return env_bool("HF_HUB_OFFLINE") or env_bool("TRANSFORMERS_OFFLINE")


def _xdg_cache() -> Path:
    return Path(env_str("XDG_CACHE_HOME", str(Path.home() / ".cache"))).expanduser()


def hf_hub_cache() -> Path:
    """The Hugging Face cache (`hf download`, llama.cpp's -hf on recent builds), as huggingface_hub finds it."""
    explicit = env_str("HF_HUB_CACHE") or env_str("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    hf_home = env_str("HF_HOME")
    return (Path(hf_home).expanduser() if hf_home else _xdg_cache() / "huggingface") / "hub"


def llama_cache_dir() -> Path:
    """Where llama.cpp's -hf/-mu downloads land when they do not use the Hugging Face cache."""
    explicit = env_str("LLAMA_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    if platform.system() == "Darwin":
        return Path.home() / "Library" / "Caches" / "llama.cpp"
    return _xdg_cache() / "llama.cpp"


def lmstudio_model_dirs() -> list[Path]:
    """LM Studio's models folders: the current default and the one older versions used."""
    return [Path.home() / ".lmstudio" / "models", _xdg_cache() / "lm-studio" / "models"]


def hardware_profile() -> Path | None:
    """A JSON file describing a machine, used instead of probing this one (to preview `recommend` for
    another machine, and in tests)."""
    value = env_str("AIDEVOPS_HARDWARE_PROFILE")
    return Path(value).expanduser() if value else None


def hf_token_from_env() -> str | None:
    """A token in the environment wins over the keyring's (CI, one-off runs). Never logged."""
    return env_str("HF_TOKEN") or env_str("HUGGING_FACE_HUB_TOKEN")


def llama_arg_env() -> dict[str, str]:
    """llama-server also reads its flags from LLAMA_ARG_* variables, which the server we start inherits."""
    return {k: v for k, v in os.environ.items() if k.startswith("LLAMA_ARG_") and v}


def xdg_config_home() -> Path:
    """Where Linux desktops look for autostart entries (``$XDG_CONFIG_HOME/autostart``)."""
    return Path(env_str("XDG_CONFIG_HOME", str(Path.home() / ".config"))).expanduser()


def graphical_session() -> bool:
    """Whether a GUI can open here: always on macOS; on Linux an X or Wayland display (or a Qt platform the
    user chose, such as offscreen)."""
    if sys.platform == "darwin":
        return True
    return any(env_str(name) for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"))


def appimage_path() -> Path | None:
    """The AppImage file we run from, as its runtime announces it; None outside an AppImage."""
    value = env_str("APPIMAGE")
    return Path(value) if value else None


def launch_agents_dir() -> Path:
    """Where macOS looks for per-user LaunchAgents."""
    return Path.home() / "Library" / "LaunchAgents"


@dataclass
class Settings:
    """User settings from config.toml. Zero means "choose from the machine"."""

    port: int = 8080
    host: str = "127.0.0.1"
    ctx_size: int = 0
    threads: int = 0
    parallel: int = 0
    gpu_layers: int = -1  # -1: all layers when the build has a GPU backend, else 0
    extra_server_args: list[str] = field(default_factory=list)
    health_timeout_s: float = 120.0
    stop_grace_s: float = 10.0
    default_model: str = ""
    stale_days: int = 30  # cleanup and the nudge: a model unused this long is stale
    stale_nudge_gb: float = 5.0  # the nudge speaks when stale models take more than this (GiB)
    # The tray's settings.
    start_at_login: bool = False
    keep_server_on_quit: bool = True  # quitting the tray leaves the server serving other tools
    idle_unload_s: int = 0  # llama-server's --sleep-idle-seconds where the build has it; 0: never
    auto_restart: bool = False  # restart a crashed server with backoff instead of offering to
    # Router mode where the build has it: switching model is a load request, and a request names its model
    # (llama-server then answers 400 to a request without a known model name). False: one model per server.
    router_mode: bool = True
    # The server's API key: generated once, kept in the OS keyring, given to llama-server in its environment.
    require_api_key: bool = False
    # Host names (or addresses) the server answers besides localhost and loopback addresses: every other
    # Host header gets 403, so a web page cannot reach the model by re-pointing its own name (DNS rebinding).
    allowed_hosts: list[str] = field(default_factory=list)
    # Other machines whose memory a start pools (llama.cpp's RPC backend, core/rpc): "user@host" through an SSH
    # tunnel, or "host:port" straight to a worker's RPC server on a network you trust.
    workers: list[str] = field(default_factory=list)


def load_settings(path: Path | None = None) -> Settings:
    """Read and check config.toml. Call it once where a command or a tray refresh begins and pass the
    result down: the file can change between two reads, and one command should act on one set of settings."""
    path = path or paths().config_file
    data = _parse(path)
    if data is None:
        return Settings()
    known = {f.name: f for f in fields(Settings)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(
            f"Unknown setting(s) in {path}: {', '.join(unknown)}", hint=f"Known settings: {', '.join(known)}."
        )
    settings = Settings(**data)
    check_settings(settings, path)
    return settings


def read_text(path: Path, what: str, *, hint: str) -> str | None:
    """One of our files as text, None when there is none. Any other failure to read it (a folder in its place,
    AIDEVOPS_HOME a file, no permission) is a ConfigError naming the file or the root: a traceback would not
    say what to fix."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        root = root_dir()
        if root.exists() and not root.is_dir():
            raise ConfigError(
                f"AIDEVOPS_HOME ({root}) is not a folder.",
                hint="Point AIDEVOPS_HOME at a folder (or unset it to use ~/.aidevops).",
            ) from None
        raise ConfigError(f"Cannot read {what} {path}: {exc.strerror or exc}", hint=hint) from None


def _parse(path: Path) -> dict | None:
    """The file's TOML as a dict, None when there is no file (the one place config.toml is parsed)."""
    try:
        text = read_text(
            path, "the settings file", hint="Make it a readable file, or move it away to use the defaults."
        )
        return None if text is None else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"The settings file {path} is not valid TOML: {exc}",
            hint="Fix the line it names, or delete the file to use the defaults.",
        ) from exc


def save_settings(settings: Settings, path: Path | None = None) -> Path:
    """Write the settings, keeping the user's comments and layout: a changed value is replaced where it is,
    a setting the file leaves out is added only when it differs from its default (so a deleted line still
    means "the default"). A new file lists every setting. The TOML library escapes what a value holds."""
    import tomlkit  # here: every command reads the settings, few write them (the import costs ~25 ms)

    path = path or paths().config_file
    check_settings(settings, path)
    document = _existing_document(path)
    values = asdict(settings)
    if document is None:
        document = tomlkit.document()
        document.add(tomlkit.comment("aidevops-local settings. Delete a line to get its default back."))
        for key, value in values.items():
            document[key] = value
    else:
        defaults = asdict(Settings())
        for key, value in values.items():
            if key in document:
                if document[key] != value:  # an unchanged line keeps its own spelling
                    document[key] = value
            elif value != defaults[key]:
                document[key] = value
    write_atomically(path, tomlkit.dumps(document))
    return path


def _existing_document(path: Path):
    """The file as the user wrote it (a tomlkit document), or None when there is none, or none worth keeping
    (not TOML)."""
    import tomlkit
    import tomlkit.exceptions

    try:
        return tomlkit.parse(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (tomlkit.exceptions.ParseError, UnicodeDecodeError):
        return None  # loading it fails with the reason; saving replaces it with settings that load
