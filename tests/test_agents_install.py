"""`aidevops-local agents install|status|uninstall` against a framework-shaped folder written here, in the
shape UPSTREAM.md gives (AGENTS.md with `##` sections, model-routing.md's sections and tier table,
subagent-index.toon's blocks, configs/model-routing-table.json with providers.local, a stand-in helper)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from aidevops_local.cli.main import main
from aidevops_local.core.maintenance import framework_install
from aidevops_local.core.maintenance.framework_install import HELPER
from aidevops_local.core.system.errors import ExitCode, Refused

TOOL = Path(sys.executable).parent / "aidevops-local"

AGENTS_MD = """# AI DevOps Framework - User Guide

New here? Type `/onboarding`.

## Runtime References

- Session lookup: `reference/memory-lookup.md`.

## Domain Index

| Domain | Entry point |
|--------|-------------|
| git | `workflows/git-workflow.md` |
| local-models | `tools/local-models/local-models.md` |

## Framework Rules

- Verify before claiming done.
"""

SECTIONS = (
    "Decision Flowchart",
    "Fallback Routing",
    "Headless Dispatch",
    "CLI Tools",
    "Bundle Presets",
    "Failure-Based Escalation",
    "Tier Drift Detection",
    "Prompt Version Tracking",
    "Related",
)
ROUTING_MD = (
    "---\ndescription: Cost-aware model routing\nmode: subagent\n---\n\n# Model Routing\n\n"
    "## Quick Reference\n\n- Tiers: simple, standard, thinking.\n\n## Model Tiers\n\n"
    "| Tier | Models | Reasoning | Use for |\n|------|--------|-----------|---------|\n"
    "| `simple` | openai/luna, anthropic/haiku | low | triage, formatting |\n"
    "| `standard` | openai/sol | low | most code work |\n"
    "| `thinking` | anthropic/opus | medium | architecture |\n\n"
    "Local execution is a provider policy that may appear in any tier's list.\n\n"
    + "".join(f"## {title}\n\nText about {title.lower()}.\n\n" for title in SECTIONS)
)

INDEX_TOON = """<!--TOON:model_tiers[3]{tier,model_id,use_case}:
simple,openai/luna,Triage and simple tasks
standard,openai/sol,Code work
thinking,anthropic/opus,Architecture
-->

<!--TOON:subagents[2]{folder,purpose,key_files}:
tools/context/,Context optimization,toon|model-routing
tools/local-models/,Local AI inference,huggingface|local-models
-->

<!--TOON:scripts[2]{name,purpose}:
toon-helper.sh,TOON conversion
local-model-helper.sh,Local models via llama.cpp (setup start stop status)
-->
"""

ROUTING_JSON = """{
  "_comment": "Tier table.",
  "tiers": {
    "simple": { "models": ["openai/luna"] },
    "standard": { "models": ["openai/sol"] },
    "thinking": { "models": ["anthropic/opus"] }
  },
  "providers": {
    "local": {
      "endpoint": "http://localhost:8080/v1/chat/completions",
      "key_env": null,
      "probe_path": "/v1/models",
      "probe_timeout_seconds": 3
    }
  }
}
"""

THEIR_HELPER = '#!/usr/bin/env bash\n# the framework\'s own local-model helper\necho "framework helper $*"\n'


def write_framework(root: Path) -> Path:
    files = {
        "AGENTS.md": AGENTS_MD,
        "tools/context/model-routing.md": ROUTING_MD,
        "tools/local-models/local-models.md": "# Local models (the framework's guide)\n",
        "subagent-index.toon": INDEX_TOON,
        "configs/model-routing-table.json": ROUTING_JSON,
        "scripts/local-model-helper.sh": THEIR_HELPER,
        "scripts/shared-constants.sh": "# shared logging helpers\n",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    (root / "scripts/local-model-helper.sh").chmod(0o750)
    return root


def tree(root: Path) -> dict[str, tuple[str, int]]:
    """Every file's hash and mode, and every folder: the whole state of the framework."""
    found = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_dir():
            found[rel + "/"] = ("dir", 0)
        else:
            found[rel] = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mode & 0o7777)
    return found


@pytest.fixture
def framework(tmp_path) -> Path:
    return write_framework(tmp_path / "agents")


def test_install_adds_our_parts_and_keeps_every_line_of_theirs(framework):
    before = {rel: (framework / rel).read_text() for rel in framework_install.MERGED}
    result = framework_install.install(framework)
    assert set(result.changed) == {*framework_install.COPIED, *framework_install.MERGED}
    for rel, text in before.items():
        after = (framework / rel).read_text()
        # A TOON block's header counts its rows, so only its count may differ.
        kept = {re.sub(r"\[\d+\]", "[n]", line) for line in after.splitlines()}
        missing = [line for line in text.splitlines() if re.sub(r"\[\d+\]", "[n]", line) not in kept]
        assert not missing, f"{rel} lost lines of theirs: {missing}"
    routing = (framework / "tools/context/model-routing.md").read_text()
    tier_rows = [line for line in routing.split("## Model Tiers")[1].split("\n\n")[1].splitlines()]
    assert tier_rows[-1].startswith("| `local` |") and tier_rows[-1].count("|") == tier_rows[0].count("|")
    assert "### When the `local` tier is down" in routing.split("## Fallback Routing")[1].split("## Headless")[0]
    assert "local-models" in (framework / "AGENTS.md").read_text().split("## Framework Rules")[1]
    toon = (framework / "subagent-index.toon").read_text()
    assert "<!--TOON:model_tiers[4]{tier,model_id,use_case}:" in toon and "\nlocal,llama.cpp" in toon
    assert toon.count("local-model-helper.sh,") == 1  # their row stands
    table = json.loads((framework / "configs/model-routing-table.json").read_text())
    assert "_aidevops_local" in table and table["providers"]["local"]["probe_path"] == "/v1/models"
    helper = framework / framework_install.HELPER
    assert helper.stat().st_mode & 0o777 == 0o755
    done = subprocess.run(["bash", "scripts/local-model-helper.sh", "help"], cwd=framework, capture_output=True)
    assert done.returncode == 0, done.stderr


def test_install_twice_changes_nothing(framework):
    framework_install.install(framework)
    first = tree(framework)
    again = framework_install.install(framework)
    assert again.changed == [] and tree(framework) == first
    assert framework_install.status(framework).current


def test_uninstall_puts_every_file_back_byte_for_byte(framework):
    before = tree(framework)
    framework_install.install(framework)
    framework_install.install(framework)
    result = framework_install.uninstall(framework)
    assert tree(framework) == before
    assert framework_install.HELPER in result.restored and "tools/local-models/huggingface.md" in result.removed
    assert not framework_install.record_path(framework).exists()
    assert not framework_install.status(framework).installed


def test_uninstall_keeps_a_users_edit_and_takes_out_only_ours(framework):
    framework_install.install(framework)
    routing = framework / "tools/context/model-routing.md"
    edited = routing.read_text().replace("Text about related.", "Text about related.\n\nMy own note.")
    routing.write_text(edited)
    toon = framework / "subagent-index.toon"
    mine = toon.read_text().replace("[2]{name,purpose}", "[3]{name,purpose}")  # the user counts their row
    toon.write_text(mine.replace("toon-helper.sh,TOON conversion\n", "toon-helper.sh,TOON conversion\nmine.sh,Mine\n"))
    framework_install.uninstall(framework)
    assert routing.read_text() == ROUTING_MD.replace("Text about related.", "Text about related.\n\nMy own note.")
    assert toon.read_text() == INDEX_TOON.replace("[2]{name,purpose}", "[3]{name,purpose}").replace(
        "toon-helper.sh,TOON conversion\n", "toon-helper.sh,TOON conversion\nmine.sh,Mine\n"
    )
    assert (framework / "AGENTS.md").read_text() == AGENTS_MD


def test_a_changed_layout_is_refused_and_nothing_is_touched(framework):
    routing = framework / "tools/context/model-routing.md"
    routing.write_text(ROUTING_MD.replace("## Fallback Routing", "## Fallbacks"))
    before = tree(framework)
    with pytest.raises(Refused, match="section '## Fallback Routing' is gone"):
        framework_install.install(framework)
    assert tree(framework) == before
    routing.write_text(ROUTING_MD)
    (framework / "subagent-index.toon").write_text(INDEX_TOON.replace("{tier,model_id,use_case}", "{tier,model}"))
    before = tree(framework)
    with pytest.raises(Refused, match="fields"):
        framework_install.install(framework)
    assert tree(framework) == before
    assert not framework_install.record_path(framework).exists()


def test_not_a_framework_is_refused(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "AGENTS.md").write_text("# notes\n")
    with pytest.raises(Refused, match="no tools/context/model-routing.md, scripts/"):
        framework_install.install(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["AGENTS.md"]


def test_a_link_out_of_the_framework_is_refused(framework, tmp_path):
    outside = tmp_path / "outside.md"
    outside.write_text("# elsewhere\n")
    (framework / "tools/local-models/huggingface.md").symlink_to(outside)
    with pytest.raises(Refused, match="through a link"):
        framework_install.install(framework)
    assert outside.read_text() == "# elsewhere\n"


def _cli(*args: str, env_dir: Path | None = None):
    env = dict(os.environ)
    if env_dir is not None:
        env["AIDEVOPS_AGENTS_DIR"] = str(env_dir)
    done = subprocess.run([str(TOOL), "agents", *args], capture_output=True, text=True, env=env, timeout=60)
    done.stderr = " ".join(done.stderr.split())  # the terminal's wrapping aside
    return done


def test_the_command_line_installs_reports_and_uninstalls(framework):
    before = tree(framework)
    done = _cli("status", "--json", env_dir=framework)
    assert done.returncode == ExitCode.NOT_INSTALLED and json.loads(done.stdout)["installed"] is False
    done = _cli("install", env_dir=framework)
    assert done.returncode == 0 and "Installed into" in done.stderr
    done = _cli("install", "--json", "--framework", str(framework))
    assert done.returncode == 0 and json.loads(done.stdout)["changed"] == []
    done = _cli("status", "--json", env_dir=framework)
    status = json.loads(done.stdout)
    assert done.returncode == 0 and status["installed"] and status["current"]
    assert {f["state"] for f in status["files"]} == {"as installed"}
    done = _cli("uninstall", env_dir=framework)
    assert done.returncode == 0 and "Uninstalled from" in done.stderr
    assert tree(framework) == before
    done = _cli("uninstall", env_dir=framework)
    assert done.returncode == 0 and "nothing to do" in done.stderr


def test_the_command_line_refuses_in_one_line(tmp_path, capsys):
    assert main(["agents", "install", "--framework", str(tmp_path / "nowhere")]) == ExitCode.REFUSED
    err = capsys.readouterr().err
    assert "is not an aidevops framework folder: it does not exist" in " ".join(err.split())
    assert "Traceback" not in err


def test_the_package_finds_the_helper_and_guides_it_installs():
    source = framework_install.agents_source()
    for rel in (*framework_install.COPIED, *framework_install.MERGED):
        assert (source / rel).is_file(), rel
    # The wheel gets them through pyproject's package-data globs, which follow the link as setuptools does.
    import tomllib

    package = Path(framework_install.__file__).resolve().parents[2]
    globs = tomllib.loads((package.parents[1] / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    packaged = {
        p.relative_to(package / "resources/agents")
        for g in globs["aidevops_local"]
        for p in package.glob(g)
        if p.is_file() and p.is_relative_to(package / "resources/agents")
    }
    assert {Path(rel) for rel in (*framework_install.COPIED, *framework_install.MERGED)} <= packaged


@pytest.mark.parametrize(
    "damage",
    [
        [],  # JSON, but not an object
        {"version": 1, "files": 5},
        {"version": 1, "files": {"AGENTS.md": "x"}},
        {"version": 1, "files": {"AGENTS.md": {"kind": "markdown", "installed_sha": "0"}}},  # no backup
        {"version": 1, "files": {HELPER: {"kind": "copied", "installed_sha": "0", "backup": "not base64!"}}},
        {"version": 1, "files": {}, "created_dirs": "scripts"},
    ],
)
def test_a_damaged_install_record_is_refused_in_one_line(framework, capsys, monkeypatch, damage):
    monkeypatch.setenv("COLUMNS", "1000")  # the message on one line, as the terminal's wrapping would not keep it
    framework_install.install(framework)
    record = framework_install.record_path(framework.resolve())
    record.write_text(json.dumps(damage), encoding="utf-8")
    before = tree(framework)
    for command in ("status", "uninstall", "install"):
        assert main(["agents", command, "--framework", str(framework)]) == ExitCode.REFUSED, command
        err = capsys.readouterr().err.splitlines()
        assert err[0].startswith(f"error: The install record {record} cannot be read"), err
        assert len(err) == 2 and err[1].startswith("hint:"), err  # one line and its hint, no traceback
    assert tree(framework) == before  # nothing was touched
