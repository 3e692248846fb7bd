"""Build the desktop bundles. Run with the project's virtual environment (`pip install -e '.[gui,packaging]'`):

    python packaging/build.py linux      # dist/aidevops-local/ (one folder), build/AppDir, and the AppImage
    python packaging/build.py bundle     # only the PyInstaller one-folder bundle (and the .app on macOS)
    python packaging/build.py appdir     # the AppDir from an existing bundle (Linux)
    python packaging/build.py appimage   # the AppImage from an existing AppDir (Linux)
    python packaging/build.py macos      # dist/aidevops Local Models.app (run on a Mac), then
                                         # packaging/macos/sign-and-notarize.sh for the signed .dmg

The AppImage needs appimagetool and the AppImage type 2 runtime, published only as GitHub release assets:
APPIMAGETOOL and APPIMAGE_RUNTIME name local copies, otherwise the pinned versions below are downloaded and
their sha256 checked. Where GitHub cannot be reached the build says so, leaves the AppDir built and tested,
and exits 0 (or 3 with --require-appimage). Everything is written under build/ and dist/.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import stat
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version as dist_version
from pathlib import Path
from string import Template

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import icons
import identity

# Defaults; --build-dir and --dist-dir move them (the packaging test builds under build/pytest-packaging so
# that it never clobbers a developer's dist/).
BUILD = ROOT / "build"
DIST = ROOT / "dist"
SPEC = HERE / "aidevops-local.spec"


def bundle_dir() -> Path:
    return DIST / identity.EXE


def appdir_dir() -> Path:
    return BUILD / "AppDir"


# Pinned tools for the AppImage. The sha256s are GitHub's published digests for these release assets.
APPIMAGETOOL_VERSION = "1.9.1"
RUNTIME_VERSION = "20251108"
PINNED = {
    ("appimagetool", "x86_64"): (
        (
            f"https://github.com/AppImage/appimagetool/releases/download/{APPIMAGETOOL_VERSION}/"
            "appimagetool-x86_64.AppImage"
        ),
        "ed4ce84f0d9caff66f50bcca6ff6f35aae54ce8135408b3fa33abfc3cb384eb0",
    ),
    ("runtime", "x86_64"): (
        f"https://github.com/AppImage/type2-runtime/releases/download/{RUNTIME_VERSION}/runtime-x86_64",
        "2fca8b443c92510f1483a883f60061ad09b46b978b2631c807cd873a47ec260d",
    ),
}
# appimagetool's own mksquashfs settings, used when the AppImage is assembled from the runtime directly.
MKSQUASHFS_ARGS = ["-comp", "zstd", "-b", "1M", "-root-owned", "-noappend", "-mkfs-time", "0"]

NO_GITHUB = """\
appimage: cannot download {what} from GitHub here ({error}).
  appimagetool and the AppImage runtime are published only as GitHub release assets; no package on PyPI,
  in Debian or on npm carries them (checked 2026-11), and these machines reach only those registries.
  The AppDir is built at {appdir}; `{appdir}/AppRun status` runs it as the AppImage would.
  To make the AppImage, run this where GitHub is reachable, or point at local copies:
    APPIMAGETOOL=/path/to/appimagetool-{arch}.AppImage APPIMAGE_RUNTIME=/path/to/runtime-{arch} \\
      python packaging/build.py appimage
  (appimagetool {tool_version} and type2-runtime {runtime_version}; sha256s in packaging/build.py.)"""


class BuildError(Exception):
    pass


def log(message: str) -> None:
    print(message, flush=True)


def arch() -> str:
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def app_version() -> str:
    """The installed package's version, after checking that it is pyproject.toml's: a stale editable install
    would otherwise stamp an old version into every bundle."""
    installed = dist_version(identity.DIST_NAME)
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"].get("version")
    if declared and declared != installed:
        raise BuildError(
            f"pyproject.toml says {declared} but the installed metadata says {installed}: "
            "reinstall with `pip install -e .` first"
        )
    return installed


def release_date() -> str:
    """SOURCE_DATE_EPOCH when set (reproducible builds), else the last commit's date, else today."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if not epoch:
        try:
            epoch = subprocess.run(
                ["git", "-C", str(ROOT), "log", "-1", "--format=%ct"], capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            epoch = ""
    moment = datetime.fromtimestamp(int(epoch), UTC) if epoch else datetime.now(UTC)
    return moment.strftime("%Y-%m-%d")


# ---- the PyInstaller bundle ------------------------------------------------------------------------------


def build_bundle() -> Path:
    version = app_version()
    started = time.monotonic()
    log(f"bundle: PyInstaller {SPEC.name} -> {bundle_dir()} (version {version})")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "PyInstaller",
            "--noconfirm",
            "--clean",
            "--log-level",
            "WARN",
            "--distpath",
            str(DIST),
            "--workpath",
            str(BUILD / "pyinstaller"),
            str(SPEC),
        ],
        cwd=ROOT,
        check=True,
    )
    log(f"bundle: done in {time.monotonic() - started:.0f} s, {tree_size(bundle_dir()) / 2**20:.0f} MiB")
    return bundle_dir()


def tree_size(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


# ---- the AppDir ------------------------------------------------------------------------------------------


def fill(template: str, **values: str) -> str:
    return Template((HERE / "linux" / template).read_text()).substitute(values)


def build_appdir(bundle: Path | None = None, appdir: Path | None = None) -> Path:
    bundle, appdir = bundle or bundle_dir(), appdir or appdir_dir()
    if not (bundle / identity.EXE).is_file():
        raise BuildError(f"no bundle at {bundle}: run `python packaging/build.py bundle` first")
    version = app_version()
    if appdir.exists():
        shutil.rmtree(appdir)
    log(f"appdir: {appdir}")
    lib = appdir / "usr" / "lib" / identity.EXE
    shutil.copytree(bundle, lib, symlinks=True)
    (appdir / "usr" / "bin").mkdir(parents=True)
    (appdir / "usr" / "bin" / identity.EXE).symlink_to(Path("..") / "lib" / identity.EXE / identity.EXE)
    shutil.copy2(HERE / "linux" / "AppRun", appdir / "AppRun")
    (appdir / "AppRun").chmod(0o755)

    rendered = icons.build(BUILD / "icons")
    for size in identity.ICON_SIZES:
        dest = appdir / "usr" / "share" / "icons" / "hicolor" / f"{size}x{size}" / "apps" / f"{identity.APP_ID}.png"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(rendered[f"png{size}"], dest)
    shutil.copy2(rendered["png256"], appdir / f"{identity.APP_ID}.png")
    (appdir / ".DirIcon").symlink_to(f"{identity.APP_ID}.png")

    categories = "".join(f"{c};" for c in identity.CATEGORIES)
    desktop = fill(
        "app.desktop.in",
        name=identity.NAME,
        summary=identity.SUMMARY,
        exe=identity.EXE,
        app_id=identity.APP_ID,
        categories=categories,
        version=version,
    )
    applications = appdir / "usr" / "share" / "applications"
    applications.mkdir(parents=True)
    (applications / f"{identity.APP_ID}.desktop").write_text(desktop)
    (appdir / f"{identity.APP_ID}.desktop").symlink_to(f"usr/share/applications/{identity.APP_ID}.desktop")

    url_xml = f'  <url type="homepage">{identity.HOMEPAGE}</url>\n' if identity.HOMEPAGE else ""
    metainfo = fill(
        "app.metainfo.xml.in",
        app_id=identity.APP_ID,
        license=identity.LICENSE,
        name=identity.NAME,
        summary=identity.SUMMARY,
        exe=identity.EXE,
        version=version,
        date=release_date(),
        categories_xml="\n".join(f"    <category>{c}</category>" for c in identity.CATEGORIES),
        url_xml=url_xml,
    )
    metainfo_dir = appdir / "usr" / "share" / "metainfo"
    metainfo_dir.mkdir(parents=True)
    # appimagetool looks for <id>.appdata.xml; AppStream reads either name.
    (metainfo_dir / f"{identity.APP_ID}.appdata.xml").write_text(metainfo)
    validate_appdir(appdir)
    return appdir


def validate_appdir(appdir: Path) -> None:
    desktop = appdir / "usr" / "share" / "applications" / f"{identity.APP_ID}.desktop"
    metainfo = appdir / "usr" / "share" / "metainfo" / f"{identity.APP_ID}.appdata.xml"
    checks = [
        ("desktop-file-validate", [str(desktop)], "desktop-file-utils"),
        ("appstreamcli", ["validate", "--no-net", "--no-color", str(metainfo)], "appstream"),
    ]
    for tool, args, package in checks:
        if shutil.which(tool) is None:
            log(f"appdir: {tool} not found, {package} not validated (apt-get install {package})")
            continue
        result = subprocess.run([tool, *args], capture_output=True, text=True, check=False)
        output = (result.stdout + result.stderr).strip()
        if result.returncode != 0:
            raise BuildError(f"{tool} rejected {Path(args[-1]).name}:\n{output}")
        log(f"appdir: {tool} ok" + "".join(f"\n  {line}" for line in output.splitlines()))


# ---- the AppImage ----------------------------------------------------------------------------------------


@dataclass
class Tool:
    path: Path | None
    problem: str = ""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_tool(kind: str, env: str) -> Tool:
    """A local copy named by the environment, else the pinned download (cached under build/tools)."""
    given = os.environ.get(env)
    if given:
        path = Path(given).expanduser().resolve()
        if not path.is_file():
            raise BuildError(f"{env}={given}: no such file")
        pin = PINNED.get((kind, arch()))
        if pin and sha256(path) != pin[1]:
            log(f"appimage: note: {env} is not the pinned {kind} (sha256 differs); using it as given")
        return Tool(path)
    pin = PINNED.get((kind, arch()))
    if pin is None:
        return Tool(None, f"no pinned {kind} for {arch()}; set {env}")
    url, expected = pin
    dest = BUILD / "tools" / url.rsplit("/", 1)[1]
    if dest.is_file() and sha256(dest) == expected:
        return Tool(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        log(f"appimage: downloading {url}")
        with urllib.request.urlopen(url, timeout=30) as response, open(part, "wb") as out:
            shutil.copyfileobj(response, out)
    except (urllib.error.URLError, OSError) as exc:
        part.unlink(missing_ok=True)
        return Tool(None, str(getattr(exc, "reason", exc)))
    actual = sha256(part)
    if actual != expected:
        part.unlink()
        raise BuildError(f"{url}: sha256 {actual}, expected {expected}: refusing it")
    part.replace(dest)
    dest.chmod(dest.stat().st_mode | stat.S_IXUSR)
    return Tool(dest)


def appimage_path(version: str) -> Path:
    return DIST / f"{identity.EXE}-{version}-{arch()}.AppImage"


def build_appimage(appdir: Path | None = None, *, require: bool = False) -> Path | None:
    appdir = appdir or appdir_dir()
    if not (appdir / "AppRun").is_file():
        raise BuildError(f"no AppDir at {appdir}: run `python packaging/build.py appdir` first")
    version = app_version()
    out = appimage_path(version)
    runtime = find_tool("runtime", "APPIMAGE_RUNTIME")
    tool = find_tool("appimagetool", "APPIMAGETOOL")
    if tool.path and runtime.path:
        # --runtime-file: appimagetool would otherwise download the runtime itself, unpinned.
        env = dict(os.environ, ARCH=arch(), APPIMAGE_EXTRACT_AND_RUN="1", VERSION=version)
        subprocess.run(
            [
                str(tool.path),
                "--no-appstream" if not shutil.which("appstreamcli") else "--verbose",
                "--runtime-file",
                str(runtime.path),
                str(appdir),
                str(out),
            ],
            env=env,
            check=True,
        )
    elif runtime.path and shutil.which("mksquashfs"):
        # What appimagetool does, with Debian's squashfs-tools: the runtime, then the AppDir as squashfs.
        log(f"appimage: appimagetool unavailable ({tool.problem}); assembling runtime + squashfs with mksquashfs")
        payload = BUILD / "appimage-payload.squashfs"
        subprocess.run(
            ["mksquashfs", str(appdir), str(payload), *MKSQUASHFS_ARGS, "-quiet", "-no-progress"], check=True
        )
        with open(out, "wb") as f:
            f.write(runtime.path.read_bytes())
            with open(payload, "rb") as p:
                shutil.copyfileobj(p, f)
        payload.unlink()
    else:
        missing = "appimagetool" if not tool.path else "the AppImage runtime"
        log(
            NO_GITHUB.format(
                what=missing,
                error=tool.problem or runtime.problem,
                appdir=appdir,
                arch=arch(),
                tool_version=APPIMAGETOOL_VERSION,
                runtime_version=RUNTIME_VERSION,
            )
        )
        if require:
            raise BuildError("--require-appimage: no AppImage was made")
        return None
    out.chmod(0o755)
    log(f"appimage: {out} ({out.stat().st_size / 2**20:.1f} MiB)")
    return out


# ---- macOS -----------------------------------------------------------------------------------------------


def build_macos() -> Path:
    if sys.platform != "darwin":
        raise BuildError("the .app is built on macOS (PyInstaller does not cross-build)")
    icons.build(BUILD / "icons")
    build_bundle()
    app = DIST / f"{identity.NAME}.app"
    log(f"macos: {app}; sign, notarize and make the .dmg with packaging/macos/sign-and-notarize.sh")
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", choices=("linux", "bundle", "appdir", "appimage", "macos"))
    parser.add_argument(
        "--require-appimage",
        action="store_true",
        help="fail (exit 3) when the AppImage cannot be made, instead of stopping at the AppDir",
    )
    parser.add_argument("--build-dir", type=Path, help="work files and the AppDir (default: build/)")
    parser.add_argument("--dist-dir", type=Path, help="the bundle and the AppImage (default: dist/)")
    args = parser.parse_args(argv)
    global BUILD, DIST
    BUILD = args.build_dir.resolve() if args.build_dir else BUILD
    DIST = args.dist_dir.resolve() if args.dist_dir else DIST
    try:
        if args.target == "macos":
            build_macos()
        if args.target in ("linux", "bundle"):
            build_bundle()
        if args.target in ("linux", "appdir"):
            build_appdir()
        if args.target in ("linux", "appimage"):
            made = build_appimage(require=args.require_appimage)
            if made is None and args.require_appimage:
                return 3
    except BuildError as exc:
        print(f"build: {exc}", file=sys.stderr)
        return 3 if "--require-appimage" in str(exc) else 1
    except subprocess.CalledProcessError as exc:
        print(f"build: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
