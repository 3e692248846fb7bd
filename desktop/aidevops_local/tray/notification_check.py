"""The doctor's notifications check: on macOS, whether the notification centre will show the tray's notices.

It asks desktop-notifier (the tray's library, which core must not import), so it lives with the tray and
imports no Qt: `aidevops-local doctor` hands it to core's doctor.run, which places it between the tray host
and the disk checks."""

from __future__ import annotations

from ..core.maintenance.doctor_result import OK, WARN, Check
from ..core.system import hardware


def check_notifications() -> Check | None:
    """macOS: whether the notification centre will show the tray's notices. Its send drops them without a
    word when the user has not allowed the app, so the tray shows crashes as dialogs then; this says why."""
    if hardware.os_name() != "darwin":
        return None  # freedesktop notification services ask no permission
    try:
        import asyncio

        from desktop_notifier import DesktopNotifier
        from desktop_notifier.main import get_backend_class
    except ImportError:
        return None  # the tray (the `gui` extra) is not installed: nothing sends notifications
    try:
        backend = get_backend_class().__name__
    except ImportError as exc:  # its macOS backend needs rubicon-objc, which the app bundle carries
        return Check(
            "notifications",
            WARN,
            f"the notification centre cannot be reached from here ({exc.name} is missing)",
            fix="Use the aidevops Local Models app, which brings it.",
        )
    if backend == "DummyNotificationCenter":
        return Check(
            "notifications",
            WARN,
            "the notification centre serves only an app bundle: run outside "
            "one, the tray shows its notices as menu-bar messages",
            fix="Use the aidevops Local Models app for notifications with buttons.",
        )

    async def allowed() -> bool:
        return await asyncio.wait_for(DesktopNotifier(app_name="aidevops Local Models").has_authorisation(), 5)

    try:
        granted = asyncio.run(allowed())
    except Exception as exc:  # noqa: BLE001 - reported as the check's result: the doctor must not fall over it
        return Check("notifications", WARN, f"permission could not be read ({type(exc).__name__})")
    if granted:
        return Check("notifications", OK, "allowed in the notification centre")
    return Check(
        "notifications",
        WARN,
        "not allowed: crashes and start failures are shown as dialogs instead",
        fix="Allow them in System Settings > Notifications > aidevops Local Models.",
    )
