"""What one llama-server build can do, read from its ``--help`` once.

llama.cpp adds and renames flags from build to build, and a flag passed to a build that lacks it stops the
server at start. So every optional flag the tool passes is first looked up here. ``--help`` runs once per
binary, keyed by its resolved path, size and mtime (an update or a rollback is asked again), memoised in the
process and cached in ``<cache>/llama-server-features.json`` so the CLI does not pay ~50 ms per command.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ..system import config
from ..system.files import write_atomically

HELP_TIMEOUT_S = 30.0
_CACHE_NAME = "llama-server-features.json"


@dataclass(frozen=True)
class BuildFeatures:
    """Flags (and environment variables) a llama-server build understands. All False: an unknown build,
    or one whose --help did not run: then nothing optional is passed."""

    help_ran: bool = False
    cors_origins: bool = False  # --cors-origins; without it CORS allows every origin
    cors_localhost: bool = False  # --cors-origins localhost: reflect the Origin only when it is localhost
    api_key: bool = False  # --api-key
    api_key_env: bool = False  # LLAMA_API_KEY read from the environment (keeps the key out of argv)
    api_key_file: bool = False  # --api-key-file
    trace_verbosity: bool = False  # -lv 4 means "trace" (older builds: 4 was "debug", which logs bodies)
    router: bool = False  # --models-dir and /models/load
    models_preset: bool = False  # --models-preset
    models_max: bool = False  # --models-max
    sleep_idle: bool = False  # --sleep-idle-seconds
    list_devices: bool = False  # --list-devices
    no_webui: bool = False  # --no-webui
    metrics: bool = False  # --metrics
    cache_ram: bool = False  # --cache-ram: a cap on the prompt cache (8 GiB by default)
    unix_socket: bool = False  # --host PATH.sock: the private socket behind the Host-checking front (2025-03 on)
    model_aliases: bool = False  # --alias takes a list (a router's preset gives each model its extra names)
    embedding: bool = False  # --embedding: serve /v1/embeddings (only for embedding models: it stops chat)
    reranking: bool = False  # --reranking: serve /v1/rerank with a reranker (2024-09 on)
    pooling_rank: bool = False  # --pooling takes "rank" (a reranker's score head)


# Each feature: a pattern that must match somewhere in the help text.
_PATTERNS: dict[str, re.Pattern[str]] = {
    "cors_origins": re.compile(r"--cors-origins\b"),
    "api_key": re.compile(r"--api-key\b(?!-)"),
    "api_key_env": re.compile(r"\(env:\s*LLAMA_API_KEY\)"),
    "api_key_file": re.compile(r"--api-key-file\b"),
    "trace_verbosity": re.compile(r"^\s*-\s*4:\s*trace\b", re.MULTILINE),
    "router": re.compile(r"--models-dir\b"),
    "models_preset": re.compile(r"--models-preset\b"),
    "models_max": re.compile(r"--models-max\b"),
    "sleep_idle": re.compile(r"--sleep-idle-seconds\b"),
    "list_devices": re.compile(r"--list-devices\b"),
    "no_webui": re.compile(r"--no-webui\b"),
    "metrics": re.compile(r"--metrics\b"),
    "cache_ram": re.compile(r"--cache-ram\b"),
    "unix_socket": re.compile(r"UNIX socket"),
    "model_aliases": re.compile(r"--alias\b[^\n]*\baliases, comma-separated"),
    "embedding": re.compile(r"--embedding\b"),
    "reranking": re.compile(r"--rerank(?:ing)?\b"),
    "pooling_rank": re.compile(r"--pooling\b[^\n]*\brank\b"),
}

_memo: dict[tuple[str, int, int], BuildFeatures] = {}
_memo_lock = threading.Lock()


def features(binary: Path) -> BuildFeatures:
    """The features of this llama-server build. Never raises: a binary that is missing or whose --help
    fails has none (and is asked again next time, since that may be passing)."""
    try:
        st = binary.stat()
        key = (str(binary.resolve()), st.st_size, st.st_mtime_ns)
    except OSError:
        return BuildFeatures()
    with _memo_lock:
        if key in _memo:
            return _memo[key]
    disk_key = "|".join(map(str, key))
    found = _from_cache(disk_key)
    if found is None:
        text = help_text(binary)
        found = parse_help(text)
        if found.help_ran:
            _store_in_cache(disk_key, found)
    if found.help_ran:
        with _memo_lock:
            _memo[key] = found
    return found


def parse_help(text: str) -> BuildFeatures:
    if not text.strip():
        return BuildFeatures()
    found = {name: bool(pattern.search(text)) for name, pattern in _PATTERNS.items()}
    # The special value is documented in the option's own description, not as a flag of its own.
    found["cors_localhost"] = found["cors_origins"] and "'localhost'" in _option_block(text, "--cors-origins")
    return BuildFeatures(help_ran=True, **found)


def _option_block(text: str, flag: str) -> str:
    """The lines that describe one option: its own line (flags start at column 0) and the indented ones
    below it."""
    lines = text.splitlines()
    flag_re = re.compile(rf"{re.escape(flag)}\b")
    for i, line in enumerate(lines):
        if line[:1] == "-" and flag_re.search(line.split("  ", 1)[0]):
            block = [line]
            for follow in lines[i + 1 :]:
                if follow.strip() and not follow.startswith(" "):
                    break
                block.append(follow)
            return "\n".join(block)
    return ""


def help_text(binary: Path) -> str:
    """``llama-server --help`` (stdout and stderr together); "" when it does not run."""
    try:
        done = subprocess.run(
            [str(binary), "--help"],
            capture_output=True,
            text=True,
            timeout=HELP_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
            cwd=binary.parent,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    if done.returncode != 0:
        return ""
    return (done.stdout or "") + (done.stderr or "")


def forget() -> None:
    """Drop the in-process memo (tests; after replacing a binary in place with the same size and mtime)."""
    with _memo_lock:
        _memo.clear()


def _cache_file() -> Path:
    return config.paths().cache_dir / _CACHE_NAME


def _from_cache(disk_key: str) -> BuildFeatures | None:
    try:
        entry = json.loads(_cache_file().read_text(encoding="utf-8")).get(disk_key)
    except (OSError, ValueError, AttributeError):
        return None
    names = {f.name for f in fields(BuildFeatures)}
    # An entry written before a feature was added lacks it: ask the binary again rather than guess.
    if not isinstance(entry, dict) or set(entry) != names:
        return None
    return BuildFeatures(**{k: bool(v) for k, v in entry.items()})


def _store_in_cache(disk_key: str, found: BuildFeatures) -> None:
    path = _cache_file()
    try:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            data = data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            data = {}
        data[disk_key] = asdict(found)
        write_atomically(path, json.dumps(data, indent=1))
    except OSError:
        pass  # a cache that cannot be written costs one --help run next time
