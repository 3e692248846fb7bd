"""The code's shape, checked like its behaviour: the import layers (import-linter's contracts in pyproject.toml),
one format (ruff format) and clean lint (ruff check), and rooms small enough to read: no module over 400 lines, no
function over 60."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "desktop" / "aidevops_local"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def tool(name: str) -> str:
    """A console script of the test extra, beside this interpreter (or on PATH)."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    assert found, f"{name} is missing: pip install -e '.[test]' installs it"
    return found


def run(*argv: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)


def test_the_import_contracts_hold():
    # From desktop/, where the package is: lint-imports builds its graph from sys.path.
    done = run(tool("lint-imports"), str(REPO / "pyproject.toml"), cwd=REPO / "desktop")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_code_is_formatted_and_lint_clean():
    formatted = run(tool("ruff"), "format", "--check", "desktop", "tests", "packaging")
    assert formatted.returncode == 0, f"run `ruff format desktop tests packaging`:\n{formatted.stdout}"
    linted = run(tool("ruff"), "check", "desktop", "tests", "packaging")
    assert linted.returncode == 0, linted.stdout


def test_no_module_or_function_is_too_long():
    too_long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        name = path.relative_to(PACKAGE.parent)
        if (lines := source.count("\n")) > MAX_MODULE_LINES:
            too_long.append(f"{name}: {lines} lines (at most {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if (length := node.end_lineno - node.lineno + 1) > MAX_FUNCTION_LINES:
                    too_long.append(f"{name}:{node.lineno} {node.name}: {length} lines (at most {MAX_FUNCTION_LINES})")
    assert not too_long, "\n".join(too_long)
