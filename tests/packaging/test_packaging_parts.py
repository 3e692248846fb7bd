"""The packaging's own parts, fast and without building a bundle: icons and the .icns writer, the trimming
rules, the frozen entry point's dispatch, the AppImage assembly and the message when GitHub is out of reach."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
sys.path.insert(0, str(PACKAGING))

import bundle_trim
import identity


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_icons_at_every_hicolor_size_and_an_icns_macos_can_read(tmp_path):
    import icons  # renders the SVG with PySide6.QtSvg, which the gui extra brings: missing, this must fail

    written = icons.build(tmp_path)
    for size in identity.ICON_SIZES:
        assert png_size(written[f"png{size}"].read_bytes()) == (size, size)
    entries = icons.read_icns(written["icns"].read_bytes())
    expected = {
        b"icp4": 16,
        b"icp5": 32,
        b"ic11": 32,
        b"ic12": 64,
        b"ic07": 128,
        b"ic13": 256,
        b"ic08": 256,
        b"ic14": 512,
        b"ic09": 512,
        b"ic10": 1024,
    }
    assert {kind: png_size(data)[0] for kind, data in entries.items()} == expected


@pytest.mark.parametrize(
    "dest, dropped",
    [
        ("PySide6/Qt/plugins/platforms/libqxcb.so", False),
        ("PySide6/Qt/plugins/platforms/libqwayland.so", False),
        ("PySide6/Qt/plugins/platforms/libqoffscreen.so", False),
        ("PySide6/Qt/plugins/platforms/libqeglfs.so", True),
        ("PySide6/Qt/plugins/platformthemes/libqgtk3.so", True),
        ("PySide6/Qt/plugins/platformthemes/libqxdgdesktopportal.so", False),
        ("PySide6/Qt/plugins/imageformats/libqsvg.so", False),
        ("PySide6/Qt/plugins/imageformats/libqpdf.so", True),
        ("PySide6/Qt/plugins/platforminputcontexts/libibusplatforminputcontextplugin.so", False),
        ("PySide6/Qt/translations/qtbase_de.qm", True),
        ("PySide6/Qt/lib/libQt6Quick.so.6", True),
        ("PySide6/Qt/lib/libQt6Widgets.so.6", False),
        ("PySide6/Qt/lib/libQt6OpenGL.so.6", False),  # pyqtgraph imports QtOpenGL when it loads
        ("PySide6/Qt/lib/QtQml.framework/Versions/A/QtQml", True),
        ("PySide6/Qt/lib/QtGui.framework/Versions/A/QtGui", False),
    ],
)
def test_qt_trimming_rules(dest, dropped):
    assert bundle_trim.dropped(dest) is dropped


def test_symlinks_to_dropped_files_go_with_them():
    toc = [
        ("libQt6Quick.so.6", "PySide6/Qt/lib/libQt6Quick.so.6", "SYMLINK"),
        ("PySide6/Qt/lib/libQt6Quick.so.6", "/x/libQt6Quick.so.6", "BINARY"),
        ("libQt6Core.so.6", "PySide6/Qt/lib/libQt6Core.so.6", "SYMLINK"),
    ]
    assert [e[0] for e in bundle_trim.filter_toc(toc)] == ["libQt6Core.so.6"]


def _system_lib(name: str) -> Path | None:
    for folder in (
        "/lib/x86_64-linux-gnu",
        "/usr/lib/x86_64-linux-gnu",
        "/lib/aarch64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
    ):
        if (Path(folder) / name).exists():
            return Path(folder) / name
    return None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ELF")
def test_system_libraries_nothing_kept_links_are_pruned():
    import PySide6 as pyside

    xcb = Path(pyside.__file__).parent / "Qt/plugins/platforms/libqxcb.so"
    wanted, unwanted = _system_lib("libxkbcommon-x11.so.0"), _system_lib("libsqlite3.so.0")
    if not (xcb.exists() and wanted and unwanted):  # the machine's own libraries, not ours: a platform skip
        pytest.skip("needs PySide6's xcb plugin, libxkbcommon-x11 and libsqlite3")
    assert "libxkbcommon-x11.so.0" in bundle_trim.elf_needed(str(xcb))
    toc = [
        ("PySide6/Qt/plugins/platforms/libqxcb.so", str(xcb), "BINARY"),
        ("libxkbcommon-x11.so.0", str(wanted), "BINARY"),
        ("libsqlite3.so.0", str(unwanted), "BINARY"),
    ]
    assert [e[0] for e in bundle_trim.prune_orphan_libraries(toc)] == [toc[0][0], toc[1][0]]


def test_elf_needed_of_a_non_elf_file_is_empty(tmp_path):
    (tmp_path / "x.so").write_bytes(b"not an ELF file at all")
    assert bundle_trim.elf_needed(str(tmp_path / "x.so")) == []


# ---- the frozen entry point ------------------------------------------------------------------------------


def test_entry_is_the_cli_and_drops_finder_process_serial_numbers(capsys):
    import entry

    with pytest.raises(SystemExit) as exited:
        entry.main(["-psn_0_12345", "--version"])
    assert exited.value.code == 0
    from aidevops_local import __version__

    assert capsys.readouterr().out.strip() == f"aidevops-local {__version__}"


def test_entry_runs_the_host_guard_front_for_serve(capsys, monkeypatch):
    """The frozen app has no `python -m`: serve starts the Host-checking front as `<app> --host-guard`."""
    import entry

    from aidevops_local.core.serving import host_guard

    monkeypatch.setattr(sys, "frozen", True, raising=False)
    argv = host_guard.command()
    assert argv[:2] == [sys.executable, "--host-guard"]
    with pytest.raises(SystemExit) as exited:
        entry.main([*argv[1:], "--help"])
    assert exited.value.code == 0 and "--upstream" in capsys.readouterr().out


def test_entry_bundle_info_reports_the_keyring_and_packages():
    import entry

    info = entry.bundle_info()
    assert info["frozen"] is False
    assert info["keyring"]["classes"] and isinstance(info["keyring"]["usable"], bool)
    assert info["packages"]["keyring"]["importable"] is True


# ---- the AppImage step -----------------------------------------------------------------------------------


@pytest.fixture
def build_module(monkeypatch, tmp_path):
    import build

    monkeypatch.setattr(build, "BUILD", tmp_path / "build")
    monkeypatch.setattr(build, "DIST", tmp_path / "dist")
    # Somewhere that refuses at once, whatever the network: the test must not download anything.
    monkeypatch.setattr(build, "PINNED", {k: ("http://127.0.0.1:9/" + k[0], v[1]) for k, v in build.PINNED.items()})
    monkeypatch.delenv("APPIMAGETOOL", raising=False)
    monkeypatch.delenv("APPIMAGE_RUNTIME", raising=False)
    appdir = tmp_path / "AppDir"
    appdir.mkdir()
    (appdir / "AppRun").write_text("#!/bin/sh\necho hello\n")
    (appdir / "AppRun").chmod(0o755)
    (tmp_path / "dist").mkdir()
    return build, appdir


def test_without_github_the_build_says_so_and_keeps_the_appdir(build_module, capsys):
    build, appdir = build_module
    assert build.build_appimage(appdir) is None
    out = capsys.readouterr().out
    assert "cannot download" in out and "GitHub" in out and str(appdir) in out and "APPIMAGETOOL=" in out
    with pytest.raises(build.BuildError):
        build.build_appimage(appdir, require=True)


@pytest.mark.skipif(shutil.which("mksquashfs") is None or shutil.which("unsquashfs") is None, reason="squashfs-tools")
def test_runtime_plus_squashfs_assembly(build_module, monkeypatch, tmp_path):
    """With a runtime but no appimagetool, the AppImage is the runtime followed by the AppDir as squashfs, as
    appimagetool makes it. A stand-in runtime is enough to check the layout."""
    build, appdir = build_module
    runtime = tmp_path / "runtime-stand-in"
    runtime.write_bytes(b"\x7fELF" + b"\0" * 4092)
    monkeypatch.setenv("APPIMAGE_RUNTIME", str(runtime))
    out = build.build_appimage(appdir)
    data = out.read_bytes()
    assert data[:4096] == runtime.read_bytes() and data[4096:4100] == b"hsqs"
    listing = subprocess.run(
        ["unsquashfs", "-o", "4096", "-l", str(out)], capture_output=True, text=True, check=False
    ).stdout
    assert "squashfs-root/AppRun" in listing


def test_a_tampered_download_is_refused(build_module, monkeypatch):
    build, _ = build_module
    import http.server
    import threading

    class Serve(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"not the pinned file")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Serve)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/runtime"
        monkeypatch.setattr(build, "PINNED", {("runtime", build.arch()): (url, "0" * 64)})
        with pytest.raises(build.BuildError, match="sha256"):
            build.find_tool("runtime", "APPIMAGE_RUNTIME")
        assert not list((build.BUILD / "tools").glob("*"))
    finally:
        server.shutdown()


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck")
def test_shell_scripts_pass_shellcheck():
    scripts = [PACKAGING / "linux" / "AppRun", PACKAGING / "macos" / "sign-and-notarize.sh"]
    result = subprocess.run(["shellcheck", "-x", *map(str, scripts)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


# ---- macOS: the Qt the app needs and the system it asks for ----------------------------------------------


def test_the_pyside6_pin_skips_the_click_abort_and_the_leaking_release():
    import tomllib
    from importlib.metadata import version

    from packaging.requirements import Requirement

    gui = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["gui"]
    [pin] = [Requirement(r) for r in gui if Requirement(r).name == "PySide6-Essentials"]
    assert not pin.specifier.contains("6.11.2")  # QTBUG-147449: a click on the icon aborts on macOS 27
    assert not pin.specifier.contains("6.12.0")  # leaks a reference to None per void call on Python 3.11
    assert pin.specifier.contains("6.11.3") and pin.specifier.contains("6.12.1")
    assert pin.specifier.contains(version("PySide6-Essentials"))  # what the tests run with


def fake_dist(root: Path, name: str, *tags: str) -> None:
    info = root / f"{name}-6.11.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 6.11.3\n")
    (info / "WHEEL").write_text("Wheel-Version: 1.0\nRoot-Is-Purelib: false\n" + "".join(f"Tag: {t}\n" for t in tags))


def test_the_minimum_macos_is_the_bundled_qt_wheels(tmp_path):
    fake_dist(tmp_path, "PySide6_Essentials", "cp39-abi3-macosx_13_0_universal2")
    fake_dist(tmp_path, "shiboken6", "cp39-abi3-macosx_12_0_universal2")
    assert identity.macos_minimum([str(tmp_path)]) == "13.0"


def test_a_wheel_for_each_architecture_counts_its_lowest(tmp_path):
    fake_dist(tmp_path, "PySide6_Essentials", "cp39-abi3-macosx_14_0_arm64", "cp39-abi3-macosx_13_0_x86_64")
    fake_dist(tmp_path, "shiboken6", "cp39-abi3-macosx_11_0_universal2")
    assert identity.macos_minimum([str(tmp_path)]) == "13.0"


def test_off_macos_the_minimum_falls_back_to_what_qt_6_10_and_later_need(tmp_path):
    fake_dist(tmp_path, "PySide6_Essentials", "cp310-abi3-manylinux_2_34_x86_64")
    assert identity.macos_minimum([str(tmp_path)]) == identity.MACOS_MIN_FALLBACK == "13.0"


def test_the_info_plist_takes_the_minimum_from_the_wheels():
    spec = (PACKAGING / "aidevops-local.spec").read_text()
    assert '"LSMinimumSystemVersion": identity.macos_minimum()' in spec
