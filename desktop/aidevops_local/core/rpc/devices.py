"""What a worker offers: its devices and their free memory, as llama-server itself sees them
(``llama-server --rpc ENDPOINT --list-devices``), so the plan uses the engine's own figures. A worker that does
not answer has no devices. The answer is data from the network: only well-formed lines are taken.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..llamacpp import installed

MIB = 1 << 20
TIMEOUT_S = 20.0
# "  RPC0: 127.0.0.1:50052 (24105 MiB, 24000 MiB free)" (the description may hold more than the endpoint)
_LINE = re.compile(r"^\s*(RPC\S*?):\s*(.{1,200}?)\s*\((\d{1,9}) MiB, (\d{1,9}) MiB free\)\s*$")


@dataclass(frozen=True)
class Device:
    name: str  # llama.cpp's name for it (RPC0, ...)
    description: str
    total_bytes: int
    free_bytes: int


def list_devices(endpoints: list[str], *, binary: Path | None = None) -> dict[str, list[Device]]:
    """endpoint -> its devices (empty for one that does not answer). One llama-server run for all of them."""
    if not endpoints:
        return {}
    binary = binary or installed.find_llama_server()
    try:
        done = subprocess.run(
            [str(binary), "--rpc", ",".join(endpoints), "--list-devices"],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=TIMEOUT_S,
            stdin=subprocess.DEVNULL,
            env=installed.runtime_env(binary),
        )
        text = done.stdout + "\n" + done.stderr
    except (OSError, subprocess.TimeoutExpired):
        text = ""
    return parse(text, endpoints)


def parse(text: str, endpoints: list[str]) -> dict[str, list[Device]]:
    found: dict[str, list[Device]] = {e: [] for e in endpoints}
    for line in text.splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        name, description, total, free = match.groups()
        owner = next((e for e in endpoints if e in description), None)
        if owner is not None:
            found[owner].append(Device(name, description, int(total) * MIB, min(int(free), int(total)) * MIB))
    return found
