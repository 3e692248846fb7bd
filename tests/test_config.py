"""The settings file: every value round-trips through config.toml, hostile text included; bad values are one
line and exit 11 before anything starts; the user's comments survive a save."""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, fields

import pytest

from aidevops_local.cli.main import main as cli
from aidevops_local.core.system import config
from aidevops_local.core.system.errors import ConfigError, ExitCode

HOSTILE = [
    'a "quoted" word',
    "back\\slash \\n \\u0041 \\",
    "new\nline and\r\nCRLF",
    "tab\tbell\a escape\x1b[31m del\x7f vt\x0b ff\x0c",
    "'''triple''' \"\"\"quotes\"\"\"",
    "# not a comment ] = [ { } ,",
    "unicodé 模型 🦙 \u2028 \u2029 \ufeff \u200b",
    "",
    " edge spaces ",
    'key = "injected"\n[section]\nport = 1',
]


def config_file():
    return config.paths().config_file


def write_config(text: str) -> None:
    config_file().parent.mkdir(parents=True, exist_ok=True)
    config_file().write_text(text, encoding="utf-8")


def every_setting_changed(text: str) -> config.Settings:
    """Each setting away from its default; the text settings hold ``text``."""
    return config.Settings(
        port=65535,
        host="::1",
        ctx_size=4 * 1024 * 1024,
        threads=512,
        parallel=256,
        gpu_layers=0,
        extra_server_args=[text, "--alias", text, "--no-webui"],
        health_timeout_s=0.5 + 1,
        stop_grace_s=0.0,
        default_model=text,
        stale_days=36_500,
        stale_nudge_gb=0.25,
        start_at_login=True,
        keep_server_on_quit=False,
        idle_unload_s=1,
        auto_restart=True,
        router_mode=False,
        require_api_key=True,
        allowed_hosts=["mybox.lan", "192.168.1.20", "[::1]"],
        workers=["me@studio.lan", "192.168.1.20:50052", "[::1]:50052"],
    )  # names only: hostile ones are refused (below)


@pytest.mark.parametrize("text", HOSTILE)
def test_every_setting_round_trips_hostile_text(text):
    covered = every_setting_changed("x")
    changed = {
        f.name for f in fields(config.Settings) if getattr(covered, f.name) != getattr(config.Settings(), f.name)
    }
    assert changed == {f.name for f in fields(config.Settings)}  # the test covers every setting
    saved = every_setting_changed(text)
    config.save_settings(saved)
    tomllib.loads(config_file().read_text(encoding="utf-8"))  # valid TOML
    assert config.load_settings() == saved
    config.save_settings(config.load_settings())  # a second save over the first changes nothing
    assert config.load_settings() == saved


def test_a_save_keeps_the_users_comments_and_leaves_out_defaults():
    write_config(
        '# my box: keep the fans quiet\nthreads = 2  # two of four cores\n\n# the big model\ndefault_model = "qwen"\n'
    )
    settings = config.load_settings()
    settings.threads, settings.ctx_size = 3, 8192
    config.save_settings(settings)
    text = config_file().read_text(encoding="utf-8")
    assert "# my box: keep the fans quiet" in text and "# the big model" in text
    assert "threads = 3  # two of four cores" in text and "ctx_size = 8192" in text
    assert "port" not in text  # still its default: the missing line keeps meaning "the default"
    assert config.load_settings() == settings


def test_a_new_file_lists_every_setting():
    config.save_settings(config.Settings())
    data = tomllib.loads(config_file().read_text(encoding="utf-8"))
    assert data == asdict(config.Settings())


@pytest.mark.parametrize("text", ["nul\0inside", "lone \ud800 surrogate"])
def test_text_no_program_can_take_is_refused_on_save_and_the_file_is_kept(text):
    write_config('default_model = "kept"\n')
    with pytest.raises(ConfigError, match="default_model"):
        config.save_settings(config.Settings(default_model=text))
    assert config.load_settings().default_model == "kept"


@pytest.mark.parametrize("host", ["", "0.0.0.0 ", "host\nname", "-rf", "a b", "127.0.0.1:8080"])
def test_a_host_that_is_no_address_is_refused(host):
    with pytest.raises(ConfigError, match="host"):
        config.save_settings(config.Settings(host=host))
    assert not config_file().exists()


BAD_CONFIGS = [
    ("port = 99999999", "port"),
    ("port = 0", "port"),
    ("port = -1", "port"),
    ("ctx_size = -5", "ctx_size"),
    ("threads = 100000", "threads"),
    ("parallel = -2", "parallel"),
    ("gpu_layers = -7", "gpu_layers"),
    ("health_timeout_s = nan", "health_timeout_s"),
    ("stop_grace_s = inf", "stop_grace_s"),
    ("stop_grace_s = -1.0", "stop_grace_s"),
    ("stale_days = 0", "stale_days"),
    ("stale_days = 99999999999", "stale_days"),
    ("stale_nudge_gb = -1", "stale_nudge_gb"),
    ("idle_unload_s = -60", "idle_unload_s"),
    ("extra_server_args = [1, 2]", "extra_server_args"),
    ('extra_server_args = [["--flag"], "x"]', "extra_server_args"),
    ('extra_server_args = ["--flag", {a = 1}]', "extra_server_args"),
    ('extra_server_args = "--flag"', "extra_server_args"),
    ('extra_server_args = ["--alias", "a\\u0000b"]', "extra_server_args"),
    ('extra_server_args = ["--host", "0.0.0.0"]', "--host"),
    ('extra_server_args = ["--host=0.0.0.0"]', "--host"),
    ('extra_server_args = ["--port", "9"]', "--port"),
    ('extra_server_args = ["--port=9"]', "--port"),
    ('extra_server_args = ["--api-key", "s3cret"]', "--api-key"),
    ('extra_server_args = ["--api-key=s3cret"]', "--api-key"),
    ('extra_server_args = ["--api-key-file", "/tmp/keys"]', "--api-key-file"),
    ('extra_server_args = ["--api-key-file=/tmp/keys"]', "--api-key-file"),
    ('host = ""', "host"),
    ("threads = true", "threads"),
]


@pytest.mark.parametrize(("line", "named"), BAD_CONFIGS)
def test_a_bad_value_is_one_line_and_exit_11_before_anything_starts(line, named, tiny_gguf, capsys):
    write_config(line + "\n")
    with pytest.raises(ConfigError) as err:
        config.load_settings()
    assert named in err.value.message and err.value.hint
    assert "s3cret" not in err.value.message + err.value.hint  # a key never reaches a terminal or a log
    capsys.readouterr()
    assert cli(["serve", str(tiny_gguf)]) == ExitCode.CONFIG  # no runtime needed: refused before
    err_text = capsys.readouterr().err
    assert "Traceback" not in err_text and err_text.startswith("error:")
    assert "s3cret" not in err_text


def test_the_edges_of_each_range_are_accepted():
    write_config(
        "port = 1\nctx_size = 256\nthreads = 1\nparallel = 1\ngpu_layers = -1\nstale_days = 1\n"
        "idle_unload_s = 0\nstop_grace_s = 0\nhealth_timeout_s = 1\n"
    )
    loaded = config.load_settings()
    assert (loaded.port, loaded.ctx_size, loaded.gpu_layers, loaded.health_timeout_s) == (1, 256, -1, 1.0)


@pytest.mark.parametrize("name", ["http://mybox.lan", "mybox.lan:8080", "*.lan", "my box", "a/b", ""])
def test_allowed_hosts_takes_bare_names_only_when_loading_and_saving(name):
    write_config(f"allowed_hosts = [{name!r}]\n".replace("'", '"'))
    with pytest.raises(ConfigError, match="allowed_hosts"):
        config.load_settings()
    with pytest.raises(ConfigError, match="allowed_hosts"):
        config.save_settings(config.Settings(allowed_hosts=[name]))


@pytest.mark.parametrize("worker", ["-oProxyCommand=x@h", "me@host;rm", "studio", "studio:0", "a b:1", "me@"])
def test_workers_take_user_at_host_or_host_port_only_when_loading(worker):
    write_config(f"workers = [{json.dumps(worker)}]\n")
    with pytest.raises(ConfigError, match="workers"):
        config.load_settings()


# ---- read once ---------------------------------------------------------------------------------------------


def _counting_parses(monkeypatch) -> list[str]:
    """Every parse of config.toml from now on, by the path it read."""
    seen: list[str] = []
    real = config._parse

    def counting(path):
        seen.append(str(path))
        return real(path)

    monkeypatch.setattr(config, "_parse", counting)
    return seen


def test_one_serve_reads_the_settings_once(system_runtime, tiny_gguf, port, monkeypatch, capsys):
    """`serve` reads config.toml where the command begins and passes it down: the CLI's host warning, the plan,
    the model's default and the start all act on that one reading."""
    config.save_settings(config.Settings(port=port, default_model=str(tiny_gguf), stop_grace_s=3.0))
    parses = _counting_parses(monkeypatch)
    try:
        assert cli(["serve", "--json"]) == 0
        assert parses == [str(config.paths().config_file)]
        assert f":{port}/v1" in capsys.readouterr().out
        parses.clear()
        assert cli(["stop"]) == 0  # stop's grace comes from the settings: read once too
        assert len(parses) == 1
    finally:
        monkeypatch.undo()
        cli(["stop"])


def test_a_settings_file_that_cannot_be_read_is_one_line_and_exit_11(tiny_gguf, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("COLUMNS", "1000")
    config_file().mkdir(parents=True)  # a folder where the file should be
    with pytest.raises(ConfigError, match="Cannot read the settings file .*: Is a directory") as err:
        config.load_settings()
    assert err.value.hint
    capsys.readouterr()
    assert cli(["serve", str(tiny_gguf)]) == ExitCode.CONFIG
    assert capsys.readouterr().err.splitlines() == [
        f"error: Cannot read the settings file {config_file()}: Is a directory",
        "hint: Make it a readable file, or move it away to use the defaults.",
    ]
    home = tmp_path / "home-file"
    home.write_text("")
    monkeypatch.setenv("AIDEVOPS_HOME", str(home))  # the root is a file, not a folder
    assert cli(["serve", str(tiny_gguf)]) == ExitCode.CONFIG
    err_lines = capsys.readouterr().err.splitlines()
    assert err_lines[0] == f"error: AIDEVOPS_HOME ({home}) is not a folder." and len(err_lines) == 2, err_lines


@pytest.mark.parametrize(
    ("variable", "value", "argv"),
    [
        ("HF_ENDPOINT", "http://127.0.0.1:99999", ["search", "qwen"]),  # a port out of range
        ("HF_ENDPOINT", "huggingface.co", ["pull", "org/model-GGUF"]),  # no scheme
        ("AIDEVOPS_LLAMA_RELEASES_URL", "http://[::1", ["install"]),  # an unclosed IPv6 address
        ("AIDEVOPS_LLAMA_RELEASES_URL", "ftp://mirror.example/releases", ["install"]),
        ("AIDEVOPS_APP_RELEASES_URL", "javascript:alert(1)", ["doctor", "--json"]),
    ],
)
def test_an_address_variable_that_is_not_http_names_itself(variable, value, argv, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "1000")
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as err:
        {"HF_ENDPOINT": config.hf_endpoint, "AIDEVOPS_LLAMA_RELEASES_URL": config.releases_url}.get(
            variable, config.app_releases_url
        )()
    assert err.value.message == f"{variable} is not an http(s) address: {value!r}"
    assert variable in err.value.hint
    if variable != "AIDEVOPS_APP_RELEASES_URL":  # doctor reports that one as a finding (test_doctor_release)
        assert cli(argv) == ExitCode.CONFIG
        assert capsys.readouterr().err.splitlines()[0] == f"error: {err.value.message}"


def test_an_address_variable_keeps_what_works(monkeypatch, free_port):
    port = free_port()  # nothing listens there: the address is only read
    monkeypatch.setenv("HF_ENDPOINT", f" http://127.0.0.1:{port}/ ")
    monkeypatch.setenv("AIDEVOPS_LLAMA_RELEASES_URL", "https://[::1]/repos/ggml-org/llama.cpp/releases")
    assert config.hf_endpoint() == f"http://127.0.0.1:{port}"
    assert config.releases_url() == "https://[::1]/repos/ggml-org/llama.cpp/releases"
    monkeypatch.delenv("HF_ENDPOINT")
    assert config.hf_endpoint() == config.DEFAULT_HF_ENDPOINT


@pytest.mark.parametrize(("setting", "example"), [("workers", "192.168.1.20:50052"), ("allowed_hosts", "my-laptop")])
def test_a_list_setting_with_a_number_shows_that_setting_quoted(setting, example):
    config_file().parent.mkdir(parents=True, exist_ok=True)
    config_file().write_text(f"{setting} = [1]\n")
    with pytest.raises(ConfigError) as err:
        config.load_settings()
    assert f"Setting '{setting}'" in err.value.message
    assert err.value.hint.startswith(f"Quote each item: {setting} = [") and example in err.value.hint
