"""A minimal org.kde.StatusNotifierWatcher (the D-Bus tray protocol's registry) for the tests.

Desktop shells that show StatusNotifierItems (KDE, GNOME with AppIndicator, waybar) own this name; with it on
the bus, Qt exports the tray icon as an item and its menu over com.canonical.dbusmenu instead of embedding it
by XEmbed. Run as ``python -m tests.tray.sni_watcher``; prints "ready" and then each registered item.
"""

from __future__ import annotations

import asyncio
import sys

from dbus_fast import BusType
from dbus_fast.aio import MessageBus
from dbus_fast.service import PropertyAccess, ServiceInterface, dbus_property, method, signal


class Watcher(ServiceInterface):
    def __init__(self):
        super().__init__("org.kde.StatusNotifierWatcher")
        self.items: list[str] = []

    @method()
    def RegisterStatusNotifierItem(self, service: s):  # noqa: F821 - dbus-fast reads the annotation
        print(f"item {service}", flush=True)
        self.items.append(service)
        self.StatusNotifierItemRegistered(service)

    @method()
    def RegisterStatusNotifierHost(self, service: s):  # noqa: F821
        pass

    @signal()
    def StatusNotifierItemRegistered(self, service: s) -> s:  # noqa: F821
        return service

    @dbus_property(access=PropertyAccess.READ)
    def RegisteredStatusNotifierItems(self) -> "as":  # noqa: F722
        return self.items

    @dbus_property(access=PropertyAccess.READ)
    def IsStatusNotifierHostRegistered(self) -> b:  # noqa: F821
        return True

    @dbus_property(access=PropertyAccess.READ)
    def ProtocolVersion(self) -> i:  # noqa: F821
        return 0


async def main() -> None:
    bus = await MessageBus(bus_type=BusType.SESSION).connect()
    bus.export("/StatusNotifierWatcher", Watcher())
    await bus.request_name("org.kde.StatusNotifierWatcher")
    print("ready", flush=True)
    await bus.wait_for_disconnect()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
