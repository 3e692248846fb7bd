"""The tray tests' private desktop session (tests/tray/desktop.py: its own D-Bus session bus, gnome-keyring
unlocked on it, Xvfb with trayer as the tray host) as a module-scoped fixture for tests outside tests/tray/.
Import the fixture by name: ``from tests.private_desktop import private_desktop  # noqa: F401``.

Only the bus address goes into this process's environment (keyring then finds the real Secret Service);
a test that needs the display sets DISPLAY itself from ``private_desktop.display``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import keyring
import pytest

from tests.tray.desktop import Desktop, missing_tools, start_desktop, stop_desktop


@contextlib.contextmanager
def desktop_session(folder) -> Iterator[Desktop]:
    """The private desktop, its bus in this process's environment and keyring on its Secret Service, until the
    block ends; then the bus address as it was and the daemons stopped, whatever happened. Skips the test when
    the desktop tools are missing."""
    missing = missing_tools()
    if missing:
        pytest.skip(f"desktop tools missing ({', '.join(missing)}): run tests/install-deps.sh")
    desktop = start_desktop(folder)
    saved = os.environ.get("DBUS_SESSION_BUS_ADDRESS")
    os.environ["DBUS_SESSION_BUS_ADDRESS"] = desktop.bus
    choose_keyring()  # now that a Secret Service is on the bus
    try:
        yield desktop
    finally:
        try:
            if saved is None:
                os.environ.pop("DBUS_SESSION_BUS_ADDRESS", None)
            else:
                os.environ["DBUS_SESSION_BUS_ADDRESS"] = saved
            choose_keyring()
        finally:
            stop_desktop(desktop)  # whatever happened above: never leave the daemons running


@pytest.fixture(scope="module")
def private_desktop(tmp_path_factory) -> Iterator[Desktop]:
    with desktop_session(tmp_path_factory.mktemp("desktop")) as desktop:
        yield desktop


def choose_keyring() -> None:
    """The backend keyring would choose for the bus in the environment now: the Secret Service when there is a
    bus, else none. Set explicitly: keyring's own choice is remembered from its first look (a once-cache) and
    would chain any backend class a test module defined."""
    from keyring.backends import SecretService, fail

    keyring.set_keyring(SecretService.Keyring() if os.environ.get("DBUS_SESSION_BUS_ADDRESS") else fail.Keyring())
