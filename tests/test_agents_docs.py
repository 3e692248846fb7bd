"""The aidevops framework integration under .agents/: the docs show only commands that the real command line
accepts, the helper hands every subcommand to `aidevops-local` and says clearly when it is missing, the index
points at files that exist, and the lint is clean.

Every `aidevops-local ...` (and `local-model-helper.sh ...`) invocation inside a shell code block (bash, sh,
shell, zsh, console or unlabelled) of .agents/**/*.md and README.md is parsed with the real argparse parser
(`aidevops_local.cli.main.build_parser`). Commands of CLI modules that have not landed yet fail here until
they do: that is the point.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
AGENTS = REPO / ".agents"
HELPER = AGENTS / "scripts" / "local-model-helper.sh"
LINT = REPO / "tests" / "lint-agents.sh"
INDEX = AGENTS / "subagent-index.toon"
DOCS = sorted(AGENTS.rglob("*.md")) + [REPO / "README.md"]
GUIDES = [
    AGENTS / "tools" / "context" / "model-routing.md",
    AGENTS / "tools" / "local-models" / "local-models.md",
    AGENTS / "tools" / "local-models" / "huggingface.md",
]

SHELL_FENCES = {"", "bash", "sh", "shell", "zsh", "console"}
TOOL = "aidevops-local"
HELPER_NAME = "local-model-helper.sh"
# The subcommands the framework expects of the helper (each a cmd_<name> handing over to aidevops-local).
HELPER_SUBCOMMANDS = (
    "install",
    "serve",
    "stop",
    "status",
    "models",
    "search",
    "pull",
    "recommend",
    "usage",
    "cleanup",
    "update",
)
HELPER_ALIASES = {"setup": "install", "start": "serve", "download": "pull"}
NOT_INSTALLED_MESSAGE = "aidevops-local is not installed"

_INVOCATION = re.compile(
    r"(?:^|(?<=[\s;&|(`\"']))(?:[\w.~/-]*/)?(aidevops-local|local-model-helper\.sh)"
    r"(?=$|[\s;&|)`\"'])"
)
_STOPS = set("|;&)`<>")


# ---- extracting the commands the docs show -----------------------------------------------------------------


@dataclass(frozen=True)
class DocCommand:
    path: Path
    line: int
    program: str  # "aidevops-local" or "local-model-helper.sh"
    argv: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}: {shlex.join([self.program, *self.argv])}"


def _shell_blocks(text: str):
    """(first line number, lines) of each fenced code block whose language is a shell."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = re.match(r"^ {0,3}(`{3,}|~{3,})\s*([\w+-]*)", lines[i])
        if not opening:
            i += 1
            continue
        fence, lang = opening.group(1), opening.group(2).lower()
        body, start = [], i + 2
        i += 1
        closing = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        while i < len(lines) and not closing.match(lines[i]):
            body.append(lines[i])
            i += 1
        i += 1
        if lang in SHELL_FENCES:
            yield start, body


def _logical_lines(start: int, body: list[str]):
    """Join backslash continuations; yield (line number, text)."""
    pending, first = "", start
    for offset, line in enumerate(body):
        if not pending:
            first = start + offset
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        yield first, pending + line
        pending = ""
    if pending:
        yield first, pending


def _end_of_command(text: str) -> int:
    """Index where a simple command ends: the first unquoted operator, redirection or comment."""
    quote = ""
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = ""
            elif ch == "\\" and quote == '"':
                continue
        elif ch in "'\"":
            quote = ch
        elif ch in _STOPS or (ch == "#" and (i == 0 or text[i - 1].isspace())):
            return i
    return len(text)


def _without_comment(text: str) -> str:
    quote = ""
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1].isspace()):
            return text[:i]
    return text


def doc_commands(paths=DOCS) -> list[DocCommand]:
    found = []
    for path in paths:
        for start, body in _shell_blocks(path.read_text(encoding="utf-8")):
            for number, line in _logical_lines(start, body):
                line = _without_comment(line)
                for match in _INVOCATION.finditer(line):
                    rest = line[match.end() :]
                    end = _end_of_command(rest)
                    segment = rest[:end]
                    if end < len(rest) and rest[end] in "<>":
                        segment = segment.rstrip("0123456789")  # `2>/dev/null`: the fd is not an argument
                    found.append(DocCommand(path, number, match.group(1), tuple(shlex.split(segment))))
    return found


COMMANDS = doc_commands()


# ---- parsing them with the real command line ---------------------------------------------------------------


def _cli_argv(command: DocCommand) -> list[str] | None:
    """The aidevops-local arguments a documented command amounts to; None for the helper's own `help`."""
    if command.program == TOOL:
        return list(command.argv)
    assert command.argv, f"{command}: the helper needs a subcommand"
    sub, *rest = command.argv
    if sub in ("help", "-h", "--help"):
        return None
    sub = HELPER_ALIASES.get(sub, sub)
    assert sub in (*HELPER_SUBCOMMANDS, "nudge"), f"{command}: the helper has no subcommand {sub!r}"
    return [sub, *rest]


def _parse(argv: list[str]):
    from aidevops_local.cli.main import build_parser

    parser = build_parser()
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            return parser.parse_args(argv), ""
        except SystemExit as exc:
            if exc.code in (0, None):  # --help, --version
                return None, ""
            return None, stderr.getvalue().strip() or f"exit {exc.code}"


@pytest.mark.parametrize("command", COMMANDS, ids=[f"{c.path.name}:{c.line}:{' '.join(c.argv[:2])}" for c in COMMANDS])
def test_documented_command_parses(command):
    argv = _cli_argv(command)
    if argv is None:
        return
    args, error = _parse(argv)
    assert not error, f"{command}\n  does not parse: {error}"
    if args is not None:
        assert getattr(args, "func", None), f"{command}\n  names no command"


def test_every_guide_shows_commands_and_routing_shows_discovery():
    by_file = {}
    for command in COMMANDS:
        by_file.setdefault(command.path, []).append(command)
    for guide in GUIDES:
        assert by_file.get(guide), f"{guide.relative_to(REPO)} shows no aidevops-local command in a shell block"
    routing = [c.argv for c in by_file[GUIDES[0]] if c.program == TOOL]
    assert ("status", "--json") in routing, "model-routing.md must show aidevops-local status --json"


def test_extractor_reads_shell_the_way_a_shell_would(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text(
        textwrap.dedent("""\
        ```bash
        aidevops-local pull org/repo:Q4_K_M   # trailing comment
        # aidevops-local not a command, a comment
        out="$(aidevops-local status --json)" || rc=$?
        aidevops-local search "two words" \\
          --limit 5 | head
        $ .venv/bin/aidevops-local stop 2>/dev/null
        ```
        ```text
        aidevops-local anything goes in a text block
        ```
        ```sh
        local-model-helper.sh download org/repo
        ```
        """),
        encoding="utf-8",
    )
    found = [(c.line, c.program, c.argv) for c in doc_commands([doc])]
    assert found == [
        (2, TOOL, ("pull", "org/repo:Q4_K_M")),
        (4, TOOL, ("status", "--json")),
        (5, TOOL, ("search", "two words", "--limit", "5")),
        (7, TOOL, ("stop",)),
        (13, HELPER_NAME, ("download", "org/repo")),
    ]


def test_status_json_example_uses_the_real_fields():
    from aidevops_local.core.serving.server import ServerStatus

    text = GUIDES[0].read_text(encoding="utf-8")
    example = re.search(r"```json\n(\{.*?\})\n```", text, re.DOTALL)
    assert example, "model-routing.md should show an example of `status --json`"
    documented = set(json.loads(example.group(1)))
    real = {f.name for f in dataclasses.fields(ServerStatus)}
    assert documented <= real, f"fields that status --json does not have: {sorted(documented - real)}"
    assert {"state", "running", "endpoint", "model", "ctx_size"} <= documented


# ---- the helper --------------------------------------------------------------------------------------------


def _helper_source() -> str:
    return HELPER.read_text(encoding="utf-8")


def test_helper_defines_and_dispatches_a_function_per_subcommand():
    source = _helper_source()
    defined = set(re.findall(r"^cmd_(\w+)\(\)", source, re.MULTILINE))
    missing = [name for name in HELPER_SUBCOMMANDS if name not in defined]
    assert not missing, f"local-model-helper.sh lacks cmd_ functions for: {missing}"
    for name in defined - {"help"}:
        assert re.search(rf"^\s*{name}\b.*\)\s*cmd_{name} \"\$@\"", source, re.MULTILINE), (
            f'main() does not dispatch {name} to cmd_{name} with "$@"'
        )
        handover = rf"^cmd_{name}\(\) \{{\n(?:.*\n)*?\s*run_tool {name} \"\$@\""
        assert re.search(handover, source, re.MULTILINE), f'cmd_{name} does not hand over to aidevops-local {name} "$@"'


def test_helper_exit_code_for_missing_tool_is_the_clis_not_installed():
    from aidevops_local.core.system.errors import ExitCode

    declared = re.search(r"^readonly EXIT_NOT_INSTALLED=(\d+)$", _helper_source(), re.MULTILINE)
    assert declared and int(declared.group(1)) == ExitCode.NOT_INSTALLED


def test_helper_is_valid_bash():
    done = subprocess.run(["bash", "-n", str(HELPER)], check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def _run_helper(*args: str, path: str, extra_env: dict[str, str] | None = None, timeout: float = 60):
    env = {k: v for k, v in os.environ.items() if k != "AIDEVOPS_LOCAL_BIN"}
    env["PATH"] = path
    env.update(extra_env or {})
    bash = shutil.which("bash")
    return subprocess.run(
        [bash, str(HELPER), *args], check=False, capture_output=True, text=True, env=env, timeout=timeout
    )


@pytest.mark.parametrize("subcommand", HELPER_SUBCOMMANDS)
def test_helper_without_the_tool_says_so_and_exits_not_installed(subcommand, tmp_path):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    done = _run_helper(subcommand, "--json" if subcommand == "status" else "--help", path=str(empty))
    assert done.returncode == 4, done.stderr
    assert NOT_INSTALLED_MESSAGE in done.stderr
    assert "AIDEVOPS_LOCAL_BIN" in done.stderr and "haiku" in done.stderr
    assert done.stdout == ""


def test_helper_names_a_bad_aidevops_local_bin(tmp_path):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    missing = tmp_path / "nowhere" / "aidevops-local"
    done = _run_helper("status", path=str(empty), extra_env={"AIDEVOPS_LOCAL_BIN": str(missing)})
    assert done.returncode == 4
    assert str(missing) in done.stderr and "not an executable" in done.stderr


def test_helper_nudge_is_silent_without_the_tool(tmp_path):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    done = _run_helper("nudge", path=str(empty))
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_helper_help_lists_every_subcommand_and_rejects_unknown_ones(tmp_path):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    for words in ((), ("help",), ("--help",)):
        done = _run_helper(*words, path=str(empty))
        assert done.returncode == 0, done.stderr
        for name in HELPER_SUBCOMMANDS:
            assert re.search(rf"^  {name}\s", done.stdout, re.MULTILINE), f"help does not list {name}"
    done = _run_helper("frobnicate", path=str(empty))
    assert done.returncode == 2
    assert "unknown command 'frobnicate'" in done.stderr


def test_helper_passes_arguments_and_exit_code_through_unchanged(tmp_path):
    record = tmp_path / "argv"
    stub = tmp_path / "recording-aidevops-local"
    stub.write_text(f"#!/bin/sh\nprintf '%s\\0' \"$@\" > '{record}'\nexit 7\n", encoding="utf-8")
    stub.chmod(0o755)
    env = {"AIDEVOPS_LOCAL_BIN": str(stub)}
    cases = [
        (
            ("pull", "org/repo:Q4_K_M", "--file", "name with spaces.gguf", ""),
            ["pull", "org/repo:Q4_K_M", "--file", "name with spaces.gguf", ""],
        ),
        (("download", "org/repo"), ["pull", "org/repo"]),
        (("setup", "--backend", "cpu"), ["install", "--backend", "cpu"]),
        (("start", "--port", "8081"), ["serve", "--port", "8081"]),
        (("models", "rm", "a*b"), ["models", "rm", "a*b"]),
    ]
    for words, expected in cases:
        done = _run_helper(*words, path="/usr/bin:/bin", extra_env=env)
        assert done.returncode == 7, done.stderr
        assert record.read_bytes().split(b"\0")[:-1] == [w.encode() for w in expected]


def test_helper_hands_over_to_the_real_cli():
    tool = Path(sys.executable).parent / TOOL
    assert tool.exists(), f"{TOOL} is not installed beside {sys.executable}: pip install -e '.[test]'"
    path = f"{tool.parent}{os.pathsep}/usr/bin{os.pathsep}/bin"
    done = _run_helper("status", "--json", path=path)
    assert done.returncode == 3, done.stderr  # nothing runs under the test's own AIDEVOPS_HOME
    assert json.loads(done.stdout)["state"] == "stopped"
    done = _run_helper("install", "--help", path=path)
    assert done.returncode == 0 and "--backend" in done.stdout


# ---- the index ---------------------------------------------------------------------------------------------


def _toon_blocks(text: str):
    for match in re.finditer(r"<!--TOON:(\w+)\[(\d+)\]\{([^}]*)\}:\n(.*?)-->", text, re.DOTALL):
        fields = match.group(3).split(",")
        rows = [line.split(",") for line in match.group(4).splitlines() if line.strip()]
        yield match.group(1), int(match.group(2)), fields, rows


def test_subagent_index_is_consistent_and_points_at_real_files():
    text = INDEX.read_text(encoding="utf-8")
    blocks = {name: (count, fields, rows) for name, count, fields, rows in _toon_blocks(text)}
    assert {"model_tiers", "subagents", "scripts"} <= set(blocks)
    for name, (count, fields, rows) in blocks.items():
        assert len(rows) == count, f"{name}: declares {count} rows, has {len(rows)}"
        for row in rows:
            assert len(row) == len(fields), f"{name}: row {row} does not have the fields {fields}"
    tiers = [row[0] for row in blocks["model_tiers"][2]]
    assert tiers == ["local"], "the index rows merge into the framework's own blocks: only the local tier is ours"
    guides = set()
    for folder, _purpose, key_files in blocks["subagents"][2]:
        for key in key_files.split("|"):
            guide = AGENTS / folder / f"{key}.md"
            assert guide.is_file(), f"index names {guide.relative_to(REPO)}, which does not exist"
            guides.add(guide)
    assert set(GUIDES) <= guides
    for script, _purpose in blocks["scripts"][2]:
        assert (AGENTS / "scripts" / script).is_file()


def test_agents_index_has_a_local_models_entry_and_doc_paths_exist():
    index = (AGENTS / "AGENTS.md").read_text(encoding="utf-8")
    assert re.search(r"^\| local-models \| `tools/local-models/local-models\.md` \|", index, re.MULTILINE)
    for doc in [p for p in DOCS if p.is_relative_to(AGENTS)]:
        for ref in re.findall(r"`((?:tools|scripts)/[\w./-]+\.(?:md|sh))`", doc.read_text(encoding="utf-8")):
            assert (AGENTS / ref).is_file(), f"{doc.relative_to(REPO)} refers to {ref}, which does not exist"


def test_routing_cost_table_is_the_tools_own_price_table():
    from aidevops_local.core.accounting import prices

    text = GUIDES[0].read_text(encoding="utf-8")
    assert prices.AS_OF.isoformat() in text, "model-routing.md should date its prices as core/accounting/prices.py does"
    rows = {
        m.group(1): m.groups()[1:]
        for m in re.finditer(
            r"^\| `(\w+)` \| ([^|]+?) \| \$([\d.]+) \| \$([\d.]+) \| \$([\d.]+) \|$", text, re.MULTILINE
        )
    }
    assert rows.get("local", (None, "0", "0", "0"))[1:] == ("0", "0", "0")
    for price in prices.PRICES:
        assert price.tier in rows, f"the cost table has no row for {price.tier}"
        model, per_in, per_out, example = rows[price.tier]
        assert (model, float(per_in), float(per_out)) == (price.model, price.input_per_m, price.output_per_m)
        expected = prices.cloud_costs(tokens_in=2_000_000, tokens_out=500_000)[price.tier]
        assert float(example) == pytest.approx(expected), f"{price.tier}: 1,000 x (2,000 in + 500 out)"


def test_routing_guide_has_the_local_tier_row():
    text = GUIDES[0].read_text(encoding="utf-8")
    assert re.search(r"^\| `local` \|.*\$0", text, re.MULTILINE)
    assert "fail closed" in text.lower()  # the framework's own guide has the decision flowchart


# ---- lint --------------------------------------------------------------------------------------------------


def test_shell_scripts_pass_shellcheck():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (tests/install-deps.sh installs the Debian package)")
    done = subprocess.run(
        ["bash", str(LINT), "--shell"], check=False, capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_markdown_passes_markdownlint():
    if shutil.which("markdownlint") is None:
        pytest.skip(
            "markdownlint is not installed: tests/install-deps.sh should run `npm install -g markdownlint-cli@0.48.0`"
        )
    done = subprocess.run(
        ["bash", str(LINT), "--markdown"], check=False, capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
