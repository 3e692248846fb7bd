"""One human_bytes for the CLI, the tray and core: its shape at each unit boundary."""

import pytest

from aidevops_local.cli import render
from aidevops_local.core.system.units import human_bytes
from aidevops_local.tray import menu

KB, MB, GB, TB = 1 << 10, 1 << 20, 1 << 30, 1 << 40


@pytest.mark.parametrize(
    "n,expected",
    [
        (None, "-"),
        (0, "0 B"),
        (1023, "1023 B"),
        (KB, "1 KB"),
        (MB - 1, "1024 KB"),
        (MB, "1 MB"),
        (218 * MB, "218 MB"),
        (GB - 1, "1024 MB"),
        (GB, "1.0 GB"),
        (12 * GB, "12.0 GB"),
        (TB, "1.0 TB"),
        (2048 * TB, "2048.0 TB"),
    ],
)
def test_human_bytes_at_the_unit_boundaries(n, expected):
    assert human_bytes(n) == expected


def test_the_cli_and_the_tray_use_the_same_function():
    assert render.human_bytes is human_bytes and menu.human_bytes is human_bytes
