"""What the CLI prints is what it means to print: text from the network loses its control characters (no
escape sequence from a Hub reaches the terminal), and brackets in messages and names are not eaten as rich
markup."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from aidevops_local.cli import render
from aidevops_local.core.system.errors import LocalModelsError
from aidevops_local.core.system.untrusted import printable

HOSTILE = "evil/\x1b]0;pwned\x07\x1b[2J\x9b31m\u202ered-GGUF\r"


@pytest.fixture
def hub_env(fake_hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    return fake_hub


def _cli(*args, code: str | None = None):
    argv = [sys.executable, "-c", code] if code else [sys.executable, "-m", "aidevops_local", *args]
    return subprocess.run(
        argv, capture_output=True, text=True, env={**os.environ, "COLUMNS": "300"}, timeout=120, check=False
    )


def test_printable_strips_control_characters():
    assert printable(HOSTILE) == "evil/]0;pwned[2J31mred-GGUF"
    assert printable("line one\nline\ttwo", multiline=True) == "line one\nline two"
    assert printable("a\nb") == "ab"
    assert printable("Qwen3 · 8B [gui] é") == "Qwen3 · 8B [gui] é"


def test_search_prints_no_escape_sequence_from_the_hub(hub_env):
    """A result whose repo id holds escape sequences is left out (no repository can have that name); when it is
    the only one, the error says so in one line. Neither prints a control character."""
    hub_env.add_repo(HOSTILE.strip("\r"), {"x-Q4_K_M.gguf": b"GGUF"}, downloads=7)
    hub_env.add_repo("org/red-GGUF", {"x-Q4_K_M.gguf": b"GGUF"}, downloads=5)
    done = _cli("search", "red")
    assert done.returncode == 0, done.stderr
    assert "org/red-GGUF" in done.stdout and "pwned" not in done.stdout
    assert not any(c in done.stdout + done.stderr for c in "\x1b\x07\x9b\u202e\r")
    assert [r["repo_id"] for r in json.loads(_cli("search", "red", "--json").stdout)] == ["org/red-GGUF"]
    only = _cli("search", "pwned")
    assert only.returncode != 0 and "Traceback" not in only.stderr
    assert not any(c in only.stdout + only.stderr for c in "\x1b\x07\x9b\u202e\r")


def test_brackets_in_errors_and_hints_are_printed_as_written(capsys):
    render.error(
        LocalModelsError(
            "No [bold]model[/bold] here.", hint="pip install 'aidevops-local[gui]'", details="[red]details[/red]"
        )
    )
    render.warn("a [link=x]name[/link]")
    render.table(["name"], [["[b]m[/b]"]], title="[gui]")
    captured = capsys.readouterr()
    assert "No [bold]model[/bold] here." in captured.err and "pip install 'aidevops-local[gui]'" in captured.err
    assert "[red]details[/red]" in captured.err and "a [link=x]name[/link]" in captured.err
    assert "[b]m[/b]" in captured.out and "[gui]" in captured.out


def test_tray_without_the_gui_extra_names_the_extra():
    code = (
        "import sys; sys.modules['PySide6'] = None\nfrom aidevops_local.cli.main import main\nsys.exit(main(['tray']))"
    )
    done = _cli(code=code)
    assert done.returncode == 1, done.stderr
    assert "pip install 'aidevops-local[gui]'" in done.stderr
