"""Numbers on the command line are range-checked by argparse: a usage error (exit 2) in one line, before
anything starts, never a traceback, a crash of llama-server or a model removed by mistake."""

from __future__ import annotations

import pytest

from aidevops_local.cli.main import main as cli
from aidevops_local.core.system.errors import ExitCode

OUT_OF_RANGE = [
    ["serve", "--port", "70000"],
    ["serve", "--port", "-1"],
    ["serve", "--port", "0"],  # would mean "the setting's port", silently
    ["serve", "--ctx", "-5"],
    ["serve", "--ctx", "0"],
    ["serve", "--threads", "100000"],  # llama-server dies with SIGSEGV beyond 512
    ["serve", "--threads", "0"],
    ["serve", "--port", "8080x"],
    ["stop", "--grace", "-1"],
    ["stop", "--grace", "nan"],
    ["stop", "--grace", "inf"],
    ["cleanup", "--days", "0"],  # would remove a model pulled seconds ago
    ["cleanup", "--days", "-1"],
    ["cleanup", "--days", "99999999999"],
    ["usage", "--since", "99999999999d"],
    ["usage", "--since", "0d"],
    ["usage", "--since", "7 days"],
    ["search", "--limit", "0"],
    ["search", "--limit", "-3"],
]


@pytest.mark.parametrize("argv", OUT_OF_RANGE, ids=" ".join)
def test_a_number_out_of_range_is_a_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as done:
        cli(argv)
    assert done.value.code == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"error: argument {argv[1]}: " in err.splitlines()[-1]


def test_the_edges_of_the_ranges_are_accepted(capsys):
    assert cli(["cleanup", "--days", "36500", "--dry-run"]) == 0
    assert cli(["cleanup", "--days", "1", "--dry-run"]) == 0
    assert cli(["usage", "--since", "36500d"]) == 0
    assert "last 36500d" in capsys.readouterr().err  # the period is printed as the user wrote it
