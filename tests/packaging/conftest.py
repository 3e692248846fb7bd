"""The packaging tests run the built bundle inside the tray tests' private desktop (Xvfb with trayer as the
tray host, a D-Bus session bus, gnome-keyring unlocked on it): tests/private_desktop.py's fixture."""

import pytest

from tests.private_desktop import private_desktop  # noqa: F401 - re-exported fixture


@pytest.fixture(scope="module")
def desktop(private_desktop):  # noqa: F811 - the fixture above, under the name these tests use
    return private_desktop
