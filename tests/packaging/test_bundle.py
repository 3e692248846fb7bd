"""The Linux bundle, built for real (PyInstaller, then the AppDir) and run as a user runs it: through the
AppDir's AppRun, the very entry point the AppImage runtime calls, in a private desktop with a tray host, a
D-Bus session and an unlocked Secret Service keyring. (The AppImage itself cannot be made on machines that
cannot reach GitHub; AppRun with the same arguments is what it would run.)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
sys.path.insert(0, str(PACKAGING))

import identity

from tests.packaging.tray_host import tray_icon_in_panel

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(360),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="builds the Linux bundle"),
]

ARTIFACTS = ROOT / "test-artifacts"
# Module paths inside the bundle that would mean tests or test tooling were frozen in.
TEST_MODULE = re.compile(r"(^|\.)(tests?|conftest|pytest|_pytest|pytestqt)(\.|$)|^keyrings(\.|$)")


@dataclass(frozen=True)
class Built:
    bundle: Path  # dist/aidevops-local (the one-folder bundle)
    appdir: Path  # build/AppDir

    @property
    def exe(self) -> Path:
        return self.bundle / identity.EXE

    @property
    def apprun(self) -> Path:
        return self.appdir / "AppRun"


# Its own corner of build/, so that a test run and a developer's `build.py linux` never clobber each other.
TEST_BUILD = ROOT / "build" / "pytest-packaging"


@pytest.fixture(scope="module")
def built() -> Built:
    import PyInstaller  # noqa: F401 - tests/run.sh installs the packaging extra: missing, the bundle test fails

    dirs = ["--build-dir", str(TEST_BUILD), "--dist-dir", str(TEST_BUILD / "dist")]
    for target in ("bundle", "appdir"):
        result = subprocess.run(
            [sys.executable, str(PACKAGING / "build.py"), target, *dirs],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, f"build.py {target} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return Built(TEST_BUILD / "dist" / identity.EXE, TEST_BUILD / "AppDir")


@pytest.fixture
def app_env(desktop, isolated_home, tmp_path) -> dict[str, str]:
    """The desktop's environment, rooted at this test's home, with nothing of the test's Python in it."""
    env = {k: v for k, v in desktop.env.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "QT_"))}
    env.update(AIDEVOPS_HOME=str(isolated_home), HF_HOME=str(tmp_path / "hf-home"), HF_HUB_DISABLE_TELEMETRY="1")
    return env


def run(argv, env=None, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], env=env, capture_output=True, text=True, timeout=timeout, check=False)


# ---- through the bundle ----------------------------------------------------------------------------------


def test_version_comes_from_the_package_metadata(built, app_env):
    expected = f"aidevops-local {version(identity.DIST_NAME)}"
    for entry in (built.exe, built.apprun):
        result = run([entry, "--version"], env=app_env)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == expected
    desktop_file = (built.appdir / f"{identity.APP_ID}.desktop").read_text()
    assert f"X-AppImage-Version={version(identity.DIST_NAME)}" in desktop_file
    metainfo = (built.appdir / "usr/share/metainfo" / f"{identity.APP_ID}.appdata.xml").read_text()
    assert f'<release version="{version(identity.DIST_NAME)}"' in metainfo


def test_status_json_through_apprun(built, app_env):
    result = run([built.apprun, "status", "--json"], env=app_env)
    assert result.returncode in (0, 3), result.stderr  # 3: the server is not running
    status = json.loads(result.stdout)
    assert status["state"] == "stopped" and status["running"] is False
    assert status["ram_total_bytes"] > 0


def test_the_app_installs_itself_into_a_framework(built, app_env, tmp_path):
    from tests.test_agents_install import tree, write_framework

    framework = write_framework(tmp_path / "agents")
    before = tree(framework)
    result = run([built.apprun, "agents", "install", "--framework", str(framework)], env=app_env)
    assert result.returncode == 0, result.stderr
    helper = framework / "scripts" / "local-model-helper.sh"
    assert "CREATE TABLE model_usage" in helper.read_text(encoding="utf-8")
    result = run([built.apprun, "agents", "uninstall", "--framework", str(framework)], env=app_env)
    assert result.returncode == 0, result.stderr
    assert tree(framework) == before


def test_keyring_backend_is_the_secret_service(built, app_env):
    result = run([built.apprun, "--bundle-info"], env=app_env)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    keyring = info["keyring"]
    assert keyring["classes"] == ["keyring.backends.SecretService.Keyring"], keyring
    assert keyring["usable"] is True
    assert "keyring.backends.SecretService.Keyring" in keyring["discovered"]  # found through entry points
    assert not [b for b in keyring["discovered"] if "keyrings.alt" in b or "null" in b.lower()]
    assert info["frozen"] is True and info["version"] == version(identity.DIST_NAME)
    broken = {name: p for name, p in info["packages"].items() if not p["importable"]}
    assert not broken, broken


def test_children_get_the_users_library_path_not_the_bundles(built, app_env):
    """llama-server and anything the tray opens must not load the bundle's libraries (runtime hook)."""
    for given in ("/opt/users-own-libs", None):
        env = dict(app_env)
        env.pop("LD_LIBRARY_PATH", None)
        if given:
            env["LD_LIBRARY_PATH"] = given
        info = json.loads(run([built.apprun, "--bundle-info"], env=env).stdout)
        assert info["library_path"]["LD_LIBRARY_PATH"] == given
        assert info["library_path"]["LD_LIBRARY_PATH_ORIG"] is None


def test_no_secret_service_means_the_fail_backend_not_a_plaintext_file(built, app_env):
    env = dict(app_env, DBUS_SESSION_BUS_ADDRESS="unix:path=/nonexistent")
    info = json.loads(run([built.exe, "--bundle-info"], env=env).stdout)
    assert info["keyring"]["usable"] is False
    assert info["keyring"]["classes"] == ["keyring.backends.fail.Keyring"]


def test_tray_icon_appears_when_started_without_arguments(built, desktop, app_env):
    log = Path(app_env["AIDEVOPS_HOME"]) / "apprun.log"
    started = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(built.apprun)], env=app_env, stdout=out, stderr=subprocess.STDOUT)
    try:
        while not tray_icon_in_panel(desktop):
            assert proc.poll() is None, (
                f"the tray exited ({proc.returncode}):\n" + log.read_text(errors="replace")[-3000:]
            )
            assert time.monotonic() - started < 30, "no tray icon in trayer's panel after 30 s"
            time.sleep(0.05)
        print(f"tray icon shown {time.monotonic() - started:.2f} s after start")
        x, y, w, h = desktop.tray_panel()
        desktop.screenshot("packaging-tray-panel.png", crop=f"{w}x{h}+{x}+{y}")
    finally:
        proc.send_signal(signal.SIGTERM)  # the tray quits cleanly on SIGTERM
        try:
            code = proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
            code = None
    assert code == 0, log.read_text(errors="replace")[-3000:]
    assert not tray_icon_in_panel(desktop)


# ---- what is in it ---------------------------------------------------------------------------------------


def test_bundle_holds_no_tests_caches_or_plaintext_keyring(built):
    offenders = []
    for path in built.bundle.rglob("*"):
        rel = path.relative_to(built.bundle).as_posix()
        name = path.name
        if (
            name in ("__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", "conftest.py")
            or name.endswith((".pyc", ".pyo"))
            or re.match(r"test_.*\.py$", name)
            or (path.is_dir() and name in ("tests", "test", "testing"))
            or "keyrings" in rel.split("/")
        ):
            offenders.append(rel)
    assert not offenders, offenders[:20]

    from PyInstaller.archive.readers import CArchiveReader

    pyz = CArchiveReader(str(built.exe)).open_embedded_archive("PYZ.pyz")
    frozen_tests = sorted(m for m in pyz.toc if TEST_MODULE.search(m))
    assert not frozen_tests, frozen_tests[:20]
    assert "aidevops_local.cli.runtime_cmd" in pyz.toc  # the CLI's command modules, imported by name


def test_every_library_in_the_bundle_resolves(built):
    """Nothing the trimming dropped is still needed: every ELF file finds its libraries."""
    internal = built.bundle / "_internal"
    env = dict(os.environ, LD_LIBRARY_PATH=f"{internal}:{internal / 'PySide6/Qt/lib'}")
    missing = {}
    for path in sorted(internal.rglob("*.so*")):
        if path.is_symlink() or not path.is_file() or path.read_bytes()[:4] != b"\x7fELF":
            continue
        out = run(["ldd", path], env=env).stdout
        lost = re.findall(r"^\s*(\S+) => not found", out, re.MULTILINE)
        if lost:
            missing[path.relative_to(internal).as_posix()] = lost
    assert not missing, missing


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_appdir_has_desktop_entry_icons_and_metainfo(built):
    appdir = built.appdir
    assert os.access(appdir / "AppRun", os.X_OK)
    entry = (appdir / f"{identity.APP_ID}.desktop").read_text()
    assert f"Icon={identity.APP_ID}\n" in entry and "Exec=aidevops-local tray\n" in entry
    assert png_size(appdir / f"{identity.APP_ID}.png") == (256, 256)
    assert (appdir / ".DirIcon").resolve() == (appdir / f"{identity.APP_ID}.png").resolve()
    for size in identity.ICON_SIZES:
        icon = appdir / "usr/share/icons/hicolor" / f"{size}x{size}" / "apps" / f"{identity.APP_ID}.png"
        assert png_size(icon) == (size, size)
    assert os.access(appdir / "usr/bin" / identity.EXE, os.X_OK)
    for tool, args in (
        ("desktop-file-validate", [appdir / "usr/share/applications" / f"{identity.APP_ID}.desktop"]),
        ("appstreamcli", ["validate", "--no-net", appdir / "usr/share/metainfo" / f"{identity.APP_ID}.appdata.xml"]),
    ):
        if shutil.which(tool) is None:
            continue
        result = run([tool, *args])
        assert result.returncode == 0, result.stdout + result.stderr
