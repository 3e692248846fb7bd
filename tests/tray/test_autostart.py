"""Start at login: an XDG autostart entry on Linux, a LaunchAgent plist on macOS; on, off, and toggled from
the Settings window."""

from __future__ import annotations

import configparser
import plistlib
import shlex

import pytest

from aidevops_local.core.system import autostart, config


@pytest.fixture
def xdg_config(tmp_path, monkeypatch):
    folder = tmp_path / "xdg-config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(folder))
    monkeypatch.setattr(autostart.hardware, "os_name", lambda: "linux")
    return folder


def read_desktop_entry(path):
    parser = configparser.RawConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read(path)
    return parser["Desktop Entry"]


def test_linux_entry_under_xdg_config_home(xdg_config):
    entry = autostart.enable(["/opt/my apps/aidevops-local-tray", "--flag"])
    assert entry.path == xdg_config / "autostart" / "aidevops-local-tray.desktop"
    assert autostart.status().enabled
    fields = read_desktop_entry(entry.path)
    assert fields["Type"] == "Application"
    assert shlex.split(fields["Exec"]) == ["/opt/my apps/aidevops-local-tray", "--flag"]
    assert fields["X-GNOME-Autostart-enabled"] == "true"
    autostart.disable()
    assert not entry.path.exists() and not autostart.status().enabled


def test_exec_escapes_reserved_characters(xdg_config):
    entry = autostart.enable(["/x/it's$HOME", "50%"])
    exec_line = read_desktop_entry(entry.path)["Exec"]
    assert exec_line == '"/x/it\'s\\\\$HOME" 50%%'


def test_default_command_runs_this_install(xdg_config):
    command = autostart.launch_command()
    assert command[-1].endswith("aidevops-local-tray") or command[-2:] == ["-m", "aidevops_local.tray"]


def test_macos_launch_agent(tmp_path, monkeypatch):
    monkeypatch.setattr(autostart.hardware, "os_name", lambda: "darwin")
    monkeypatch.setattr(config, "launch_agents_dir", lambda: tmp_path / "LaunchAgents")
    entry = autostart.enable(["/Applications/aidevops.app/Contents/MacOS/aidevops-local-tray"])
    assert entry.path == tmp_path / "LaunchAgents" / f"{autostart.LABEL}.plist"
    plist = plistlib.loads(entry.path.read_bytes())
    assert plist["Label"] == autostart.LABEL and plist["RunAtLoad"] is True
    assert plist["ProgramArguments"] == ["/Applications/aidevops.app/Contents/MacOS/aidevops-local-tray"]
    assert plist["LimitLoadToSessionType"] == "Aqua"
    autostart.disable()
    assert not entry.path.exists()


def test_settings_window_toggles_start_at_login(qtbot, xdg_config):
    from aidevops_local.tray.app import TrayApp
    from aidevops_local.tray.settings_window import SettingsWindow

    app = TrayApp(use_tray=False, native_notifications=False)
    window = SettingsWindow(app)
    qtbot.addWidget(window)
    qtbot.waitUntil(lambda: window.save_button.isEnabled(), timeout=10_000)
    assert not window.login.isChecked() and window.router.isChecked()
    window.login.setChecked(True)
    window.port.setValue(8099)
    window.router.setChecked(False)  # one model per server
    window.save()
    qtbot.waitUntil(lambda: window.status.text().startswith("Saved"), timeout=10_000)
    assert autostart.status().enabled
    settings = config.load_settings()
    assert settings.start_at_login and settings.port == 8099 and not settings.router_mode
    window.login.setChecked(False)
    window.save()
    qtbot.waitUntil(lambda: not autostart.status().enabled, timeout=10_000)


def test_inside_an_appimage_the_entry_starts_the_image_itself(monkeypatch, tmp_path):
    image = tmp_path / "aidevops-local.AppImage"
    monkeypatch.setenv("APPIMAGE", str(image))
    assert autostart.launch_command() == [str(image)]


def test_a_frozen_bundle_starts_its_own_executable_with_tray(monkeypatch):
    monkeypatch.delenv("APPIMAGE", raising=False)
    monkeypatch.setattr(autostart.sys, "frozen", True, raising=False)
    monkeypatch.setattr(autostart.sys, "executable", "/opt/aidevops-local/aidevops-local")
    assert autostart.launch_command() == ["/opt/aidevops-local/aidevops-local", "tray"]
    assert autostart._icon_path() == "com.aidevops.LocalModels"


APP = "/Applications/aidevops Local Models.app"


@pytest.fixture
def macos_bundle(tmp_path, monkeypatch):
    """The platform faked as macOS, this process as the frozen .app at ``where(path)``."""
    monkeypatch.setattr(autostart.hardware, "os_name", lambda: "darwin")
    monkeypatch.setattr(config, "launch_agents_dir", lambda: tmp_path / "LaunchAgents")
    monkeypatch.delenv("APPIMAGE", raising=False)
    monkeypatch.setattr(autostart.sys, "frozen", True, raising=False)

    def where(app: str) -> None:
        monkeypatch.setattr(autostart.sys, "executable", f"{app}/Contents/MacOS/aidevops-local")

    where(APP)
    return where


def test_inside_the_bundle_login_opens_the_app_by_its_bundle_id(macos_bundle):
    entry = autostart.enable()
    plist = plistlib.loads(entry.path.read_bytes())
    assert plist["ProgramArguments"] == ["/usr/bin/open", "-g", "-b", "com.aidevops.LocalModels"]


@pytest.mark.parametrize(
    "app",
    [
        "/Volumes/aidevops Local Models/aidevops Local Models.app",
        "/private/var/folders/x1/abc_123/T/AppTranslocation/6F0C2B4E-1111-2222-3333-444455556666/d/"
        "aidevops Local Models.app",
    ],
)
def test_enabling_from_the_disk_image_or_a_translocated_copy_is_refused(macos_bundle, app):
    from aidevops_local.core.system.errors import Refused

    macos_bundle(app)
    with pytest.raises(Refused) as err:
        autostart.enable()
    assert "Applications" in err.value.hint and err.value.exit_code == 12
    assert not autostart.status().enabled


def test_the_entry_is_refreshed_at_each_start(macos_bundle, tmp_path):
    agent = tmp_path / "LaunchAgents" / f"{autostart.LABEL}.plist"
    agent.parent.mkdir(parents=True)
    stale = ["/Volumes/aidevops Local Models/aidevops Local Models.app/Contents/MacOS/aidevops-local", "tray"]
    agent.write_bytes(autostart._plist(stale))  # what an older version wrote while run from the .dmg
    assert autostart.refresh() is True
    assert plistlib.loads(agent.read_bytes())["ProgramArguments"][:3] == ["/usr/bin/open", "-g", "-b"]
    assert autostart.refresh() is False  # already current: nothing written


def test_refresh_never_turns_start_at_login_on(macos_bundle):
    assert autostart.refresh() is False
    assert not autostart.status().enabled


def test_refresh_from_the_disk_image_leaves_the_entry_alone(macos_bundle, tmp_path):
    autostart.enable()
    before = autostart.entry_path().read_bytes()
    macos_bundle("/Volumes/aidevops Local Models/aidevops Local Models.app")
    assert autostart.refresh() is False
    assert autostart.entry_path().read_bytes() == before


def test_the_tray_refreshes_the_entry_when_it_starts(qtbot, macos_bundle, tmp_path, monkeypatch):
    from aidevops_local.tray.app import TrayApp
    from tests.tray.conftest import dispose

    agent = tmp_path / "LaunchAgents" / f"{autostart.LABEL}.plist"
    agent.parent.mkdir(parents=True)
    agent.write_bytes(autostart._plist(["/Users/me/Downloads/old.app/Contents/MacOS/aidevops-local", "tray"]))
    monkeypatch.setattr(TrayApp, "refresh", lambda self, full=False: None)  # no polling on a faked macOS
    app = TrayApp(use_tray=False, native_notifications=False)
    app._wizard_offered = True
    try:
        app.start()
        qtbot.waitUntil(
            lambda: plistlib.loads(agent.read_bytes())["ProgramArguments"][0] == "/usr/bin/open", timeout=10_000
        )
    finally:
        dispose(app)
