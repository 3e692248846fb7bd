"""What the menu-bar app does differently on macOS, in one place so tests can fake the platform here.

Objective-C is reached through rubicon-objc, which desktop-notifier already brings on macOS; where it is
missing the calls are skipped and logged, never fatal.
"""

from __future__ import annotations

import logging
import sys

log = logging.getLogger(__name__)

NS_ACTIVATION_POLICY_ACCESSORY = 1  # NSApplicationActivationPolicyAccessory: no Dock icon, no app menu


def is_macos() -> bool:
    return sys.platform == "darwin"


def in_app_bundle() -> bool:
    """Run from the .app, whose Info.plist says LSUIElement (menu bar only)."""
    return ".app/Contents/MacOS/" in sys.executable


def _ns_app():
    """NSApplication.sharedApplication, or None without rubicon-objc."""
    try:
        from rubicon.objc import ObjCClass
    except ImportError:
        log.warning("rubicon-objc is not installed: the tray cannot talk to NSApplication")
        return None
    return ObjCClass("NSApplication").sharedApplication


def use_accessory_policy() -> bool:
    """From a pip install there is no Info.plist to say LSUIElement, so macOS would show a Python icon in the
    Dock: ask for the accessory policy instead. True when it was asked."""
    if not is_macos() or in_app_bundle():
        return False
    ns_app = _ns_app()
    if ns_app is None:
        return False
    ns_app.setActivationPolicy_(NS_ACTIVATION_POLICY_ACCESSORY)
    return True


def activate_app() -> None:
    """An accessory app is not the active app after a menu pick: without this its dialogs open behind the
    window the user was in."""
    if not is_macos():
        return
    ns_app = _ns_app()
    if ns_app is not None:
        ns_app.activateIgnoringOtherApps_(True)
