"""The runtime on a Mac, faked: a build that asks for a newer macOS than the Mac runs (read from its Mach-O
load commands) gives way to the newest older release that runs, or to Homebrew's llama.cpp; Rosetta and a
quarantined llama-server are named for what they are. Downloads, archives and the real llama-server (for
the builds that run) are real; the Mac's answers are faked (tests/macos_fakes.py)."""

from __future__ import annotations

import shutil
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aidevops_local.cli.main import main
from aidevops_local.core.llamacpp import runtime
from aidevops_local.core.system import config, macho, macos
from aidevops_local.core.system.errors import ExitCode, NeedsNewerMacOS, Refused, VerificationFailed
from tests.macos_fakes import CPU_ARM64, CPU_X86_64, fake_mac, macho_program, macos_release_archive, universal

TOO_NEW = (26, 0, 0)


def minimum(tmp_path, data: bytes, arch: str = "arm64"):
    path = tmp_path / "llama-server"
    path.write_bytes(data)
    return macho.minimum_macos(path, arch=arch)


# --- reading the minimum macOS -----------------------------------------------------------------------------


def test_minimum_macos_from_a_thin_binary(tmp_path):
    assert minimum(tmp_path, macho_program((26, 0, 0))) == (26, 0, 0)
    assert minimum(tmp_path, macho_program((13, 3, 0), cputype=CPU_X86_64)) == (13, 3, 0)
    assert minimum(tmp_path, macho_program((14, 2, 1), order=">")) == (14, 2, 1)


def test_minimum_macos_from_the_older_version_min_command(tmp_path):
    assert minimum(tmp_path, macho_program((10, 15, 7), old_style=True)) == (10, 15, 7)


def test_minimum_macos_of_this_macs_slice_of_a_universal_binary(tmp_path):
    both = {CPU_X86_64: macho_program((13, 3, 0), cputype=CPU_X86_64), CPU_ARM64: macho_program((26, 0, 0))}
    for wide in (False, True):
        data = universal(both, wide=wide)
        assert minimum(tmp_path, data, "arm64") == (26, 0, 0)
        assert minimum(tmp_path, data, "x64") == (13, 3, 0)
    assert minimum(tmp_path, universal({CPU_X86_64: both[CPU_X86_64]}), "arm64") is None


def test_what_is_not_a_macos_program_has_no_minimum(tmp_path, llama_server_dir):
    assert macho.minimum_macos(llama_server_dir / "llama-server", arch="x64") is None  # ELF
    assert minimum(tmp_path, macho_program(None)) is None  # no version command
    assert minimum(tmp_path, macho_program((17, 0, 0), platform_id=2)) is None  # an iOS build
    assert minimum(tmp_path, struct.pack(">IHH", 0xCAFEBABE, 0, 65) + b"\0" * 64) is None  # a Java class
    assert minimum(tmp_path, macho_program((26, 0, 0))[:40]) is None  # cut inside its load commands
    assert macho.minimum_macos(tmp_path / "missing", arch="arm64") is None


@settings(max_examples=300, deadline=None)
@given(
    prefix=st.sampled_from([b"\xcf\xfa\xed\xfe", b"\xfe\xed\xfa\xcf", b"\xca\xfe\xba\xbe", b"\xca\xfe\xba\xbf"]),
    rest=st.binary(max_size=600),
)
def test_hostile_bytes_never_break_the_reader(tmp_path_factory, prefix, rest):
    path = tmp_path_factory.mktemp("fuzz") / "llama-server"
    path.write_bytes(prefix + rest)
    found = macho.minimum_macos(path, arch="arm64")
    assert found is None or (len(found) == 3 and all(0 <= n < 65536 for n in found))


# --- install and update on a Mac whose macOS is older than the latest build wants ----------------------------


@pytest.fixture
def mac(monkeypatch, tmp_path):
    return fake_mac(monkeypatch, tmp_path)


@pytest.fixture
def gh(fake_releases, monkeypatch):
    monkeypatch.setenv("AIDEVOPS_LLAMA_RELEASES_URL", fake_releases.base_url)
    return fake_releases


@pytest.fixture
def publish(gh, release_archive, tmp_path):
    """publish(tag, runs=True): a macOS release whose llama-server runs here (the real one: no minimum to
    read) or, with runs=False, a Mach-O one that asks for macOS 26.0."""
    runnable = release_archive("b10068", asset_name="llama-b10068-bin-macos-arm64.tar.gz")
    folder = tmp_path / "assets"
    folder.mkdir()

    def add(tag: str, *, runs: bool = True, prerelease: bool = False) -> None:
        source = runnable if runs else macos_release_archive(folder, tag, macho_program(TOO_NEW))
        gh.add_release(tag, {f"llama-{tag}-bin-macos-arm64.tar.gz": source}, prerelease=prerelease)

    return add


def downloads(gh, tags) -> int:
    return sum(gh.downloads(f"llama-{tag}-bin-macos-arm64.tar.gz") for tag in tags)


def assert_no_leftovers() -> None:
    work = config.paths().app_dir / "install"
    assert not work.exists() or list(work.iterdir()) == []


def test_install_falls_back_to_the_newest_release_this_macos_runs(mac, gh, publish):
    tags = [f"b{n}" for n in range(100, 110)]
    for tag in tags:
        publish(tag, runs=int(tag[1:]) <= 103)  # b104 on need macOS 26.0
    installed = runtime.install_release()
    assert installed.tag == "b103" and installed.backend == "metal"
    assert runtime.find_llama_server() == config.paths().bin_dir / "llama-server"
    # Bisected, not walked: the latest, then a handful of the nine before it.
    assert downloads(gh, tags) <= 6
    assert downloads(gh, ["b109"]) == 1
    assert_no_leftovers()


def test_the_fallback_passes_over_prereleases(mac, gh, publish):
    publish("b100")
    publish("b101", prerelease=True)
    publish("b102", runs=False)
    assert runtime.install_release().tag == "b100"


def test_installing_again_keeps_the_fallback_build_and_the_previous_one(mac, gh, publish):
    publish("b100")
    runtime.install_release(tag="b100")
    publish("b101")
    publish("b102", runs=False)
    first = runtime.install_release()
    assert first.tag == "b101" and runtime.previous_runtime().tag == "b100"
    assert runtime.install_release() == first  # nothing swapped: b100 stays the one to roll back to
    assert runtime.previous_runtime().tag == "b100"
    assert_no_leftovers()


def test_no_release_that_runs_says_to_use_homebrew(mac, gh, publish, capsys):
    for n in range(100, 104):
        publish(f"b{n}", runs=False)
    assert main(["install"]) == ExitCode.NOT_FOUND
    err = " ".join(capsys.readouterr().err.split())  # as one line, however the terminal wraps it
    assert "b103's macOS build needs macOS 26.0, and this Mac runs macOS 15.1" in err
    assert "none of the 3 releases before it runs here either" in err
    assert "brew install llama.cpp" in err and "install --use-system" in err
    assert "Traceback" not in err
    assert runtime.installed_runtime() is None
    assert_no_leftovers()


def test_a_named_release_too_new_for_this_macos_is_refused(mac, gh, publish, capsys):
    publish("b100")
    publish("b101", runs=False)
    assert main(["install", "--tag", "b101"]) == ExitCode.NOT_FOUND
    err = " ".join(capsys.readouterr().err.split())  # as one line, however the terminal wraps it
    assert "needs macOS 26.0" in err and "--tag" in err and "brew install llama.cpp" in err
    assert downloads(gh, ["b100"]) == 0 and runtime.installed_runtime() is None
    mac.version = "26.0.1"  # the same build on a Mac new enough for it passes the check (then runs or not)
    with pytest.raises(VerificationFailed) as caught:
        runtime.install_release(tag="b101")
    assert "does not run" in caught.value.message


def test_update_takes_the_newest_build_between_the_installed_one_and_the_latest(mac, gh, publish):
    publish("b100")
    runtime.install_release(tag="b100")
    publish("b101")
    publish("b102")
    for n in (103, 104, 105):
        publish(f"b{n}", runs=False)
    result = runtime.update()
    assert result.updated and result.runtime.tag == "b102" and result.replaced.tag == "b100"
    publish("b106", runs=False)
    with pytest.raises(NeedsNewerMacOS) as caught:
        runtime.update()
    assert "none of the 3 releases between the installed build and it" in caught.value.message
    assert "installed build stays active" in caught.value.hint
    assert runtime.installed_runtime().tag == "b102"
    assert downloads(gh, ["b100", "b101"]) == 1  # nothing older than the installed build was fetched again


def test_a_build_that_does_not_run_on_a_mac_does_not_suggest_the_cpu_backend(mac, tmp_path):
    server = tmp_path / "llama-server"
    server.write_bytes(macho_program((14, 0, 0)))  # a Mach-O cannot run here: it stands for any failure
    server.chmod(0o755)
    with pytest.raises(VerificationFailed) as caught:
        runtime.check_server_runs(server)
    assert "--backend cpu" not in caught.value.hint and "brew install llama.cpp" in caught.value.hint


# --- Rosetta ---------------------------------------------------------------------------------------------------


def test_install_under_rosetta_says_to_use_the_apple_silicon_app(monkeypatch, tmp_path, gh, publish, capsys):
    mac = fake_mac(monkeypatch, tmp_path, arch="x64")
    mac.sysctl["sysctl.proc_translated"] = 1
    publish("b100")
    gh.add_release("b101", {"llama-b101-bin-macos-x64.tar.gz": b"never fetched"})
    assert main(["install"]) == ExitCode.REFUSED
    err = " ".join(capsys.readouterr().err.split())  # as one line, however the terminal wraps it
    assert "Rosetta" in err and "Apple Silicon app" in err and "Traceback" not in err
    assert gh.downloads("llama-b101-bin-macos-x64.tar.gz") == 0
    with pytest.raises(Refused, match="Rosetta"):
        runtime.update()  # before anything is installed, too
    mac.sysctl["sysctl.proc_translated"] = 0  # a real Intel Mac (or a native process) installs as before
    assert not macos.under_rosetta()


# --- a quarantined llama-server given to --use-system ------------------------------------------------------------


def test_use_system_names_the_quarantine_and_how_to_clear_it(mac, gh, llama_server_dir, tmp_path, capsys):
    folder = tmp_path / "Downloads" / "llama b100"
    shutil.copytree(llama_server_dir, folder, symlinks=True)
    server = folder / "llama-server"
    mac.quarantine(server)
    assert main(["install", "--use-system", str(server)]) == ExitCode.VERIFY_FAILED
    err = " ".join(capsys.readouterr().err.split())  # as one line, however the terminal wraps it
    assert "quarantined" in err and "Gatekeeper" in err
    assert f"xattr -d com.apple.quarantine '{server}'" in err
    assert runtime.installed_runtime() is None
    (folder / "libggml-metal.dylib").write_bytes(b"\xcf\xfa\xed\xfe")
    mac.quarantine(folder / "libggml-metal.dylib")
    with pytest.raises(VerificationFailed) as caught:
        runtime.use_system(path=server)
    assert f"xattr -dr com.apple.quarantine '{folder}'" in caught.value.hint
    mac.xattrs.clear()  # after `xattr -dr`
    assert runtime.use_system(path=server).server_path == str(server)


def test_quarantine_is_read_only_on_macos(tmp_path):
    server = tmp_path / "llama-server"
    server.write_bytes(b"")
    assert macos.quarantined_files(server) == []  # this machine is not a Mac: nothing to ask
    assert macho.shown((26, 0, 0)) == "26.0" and macho.shown((10, 15, 7)) == "10.15.7"
