"""The core is the layer the CLI and the tray share: it must import without Qt, and the modules `status`
needs must not pull in the Hub client (it costs time on every call)."""

import subprocess
import sys
from pathlib import Path

import pytest

import aidevops_local.core

CORE = Path(aidevops_local.core.__file__).parent
CORE_MODULES = sorted(
    ".".join(p.relative_to(CORE).with_suffix("").parts) for p in CORE.glob("*/*.py") if p.stem != "__init__"
)


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_module_imports_neither_qt_nor_hub(module):
    code = (
        f"import sys, aidevops_local.core.{module}; "
        "bad = [m for m in ('PySide6', 'huggingface_hub') if m in sys.modules]; "
        "print(','.join(bad)); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, f"importing core.{module} imported {done.stdout.strip()} {done.stderr}"


def test_cli_status_path_imports_neither_qt_nor_hub():
    code = (
        "import sys; from aidevops_local.cli import main; main.build_parser(); "
        "bad = [m for m in ('PySide6', 'huggingface_hub') if m in sys.modules]; print(','.join(bad)); "
        "sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, f"the CLI imported {done.stdout.strip()} {done.stderr}"
