"""`doctor` on a Mac, faked: the runtime's minimum macOS against the running one, Rosetta, the GPU's working
set and the performance cores."""

from __future__ import annotations

import json
import shutil

import pytest

from aidevops_local.cli.main import main as cli
from aidevops_local.core.llamacpp import runtime
from aidevops_local.core.maintenance import doctor
from tests.macos_fakes import fake_mac, macho_program


@pytest.fixture
def mac_with_runtime(monkeypatch, tmp_path, llama_server_dir):
    """A faked Mac on macOS 15.1 whose recorded llama-server is a Mach-O that asks for macOS 26.0."""
    folder = tmp_path / "homebrew" / "bin"
    shutil.copytree(llama_server_dir, folder, symlinks=True)
    server = folder / "llama-server"
    runtime.use_system(path=server)  # recorded while it still runs here
    server.unlink()
    server.write_bytes(macho_program((26, 0, 0)))
    server.chmod(0o755)
    mac = fake_mac(monkeypatch, tmp_path, profile=False)
    mac.sysctl.update({"hw.perflevel0.physicalcpu": 8, "iogpu.wired_limit_mb": 1024})
    return mac, server


def test_doctor_on_a_mac_compares_the_runtimes_minimum_macos_with_the_systems(mac_with_runtime):
    mac, server = mac_with_runtime
    check = doctor.check_macos()
    assert check.status == doctor.FAIL
    assert "macOS 15.1 (arm64)" in check.summary
    assert "llama-server needs macOS 26.0: it will not start here" in check.summary
    assert "GPU working set 1.0 GiB" in check.summary and "(iogpu.wired_limit_mb)" in check.summary
    assert "8 performance cores" in check.summary
    assert "brew install llama.cpp" in check.fix
    server.write_bytes(macho_program((14, 0, 0)))
    check = doctor.check_macos()
    assert check.status == doctor.OK and "llama-server needs macOS 14.0 or later" in check.summary


def test_doctor_on_a_mac_under_rosetta_says_to_use_the_apple_silicon_app(mac_with_runtime, capsys):
    mac, server = mac_with_runtime
    server.write_bytes(macho_program((13, 3, 0)))
    mac.sysctl["sysctl.proc_translated"] = 1
    capsys.readouterr()
    cli(["doctor", "--json"])
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert checks["macOS"]["status"] == "warn"
    assert "Rosetta" in checks["macOS"]["summary"] and "Apple Silicon app" in checks["macOS"]["fix"]


def test_doctor_off_a_mac_has_no_macos_check():
    assert doctor.check_macos() is None
