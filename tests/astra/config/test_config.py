"""Settings: defaults, precedence (flags > env > TOML > defaults) and clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from astra.config import (
    Settings,
    env_name,
    flag_name,
    setting_fields,
    settings_env,
    settings_options,
)
from astra.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No ASTRA_* or OTEL_* variable of the machine leaks in; XDG state under tmp_path."""
    for name in list(os.environ):
        if name.startswith(("ASTRA_", "OTEL_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "astra.toml"
    path.write_text(text)
    return path


def test_defaults(tmp_path):
    settings = Settings.load()
    assert settings.state_dir == tmp_path / "xdg" / "astra"
    assert settings.store_url == f"sqlite://{tmp_path}/xdg/astra/store.db"
    assert settings.api_address == "127.0.0.1:7100"
    assert settings.gateway_address == "127.0.0.1:8001"
    assert settings.log_level == "INFO"
    assert settings.otel.exporter == "none"
    assert (settings.heartbeat_interval, settings.dead_after) == (1.0, 3.0)
    assert settings.redis_url is None


def test_state_dir_defaults_to_local_state_without_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert Settings.load().state_dir == tmp_path / ".local" / "state" / "astra"


def test_flags_beat_env_beat_toml_beat_defaults(monkeypatch, tmp_path):
    config = write_toml(
        tmp_path,
        'api_address = "10.0.0.1:1"\ngateway_address = "10.0.0.1:2"\nlog_level = "error"\n'
        '[otel]\nexporter = "console"\nservice_name = "from-toml"\n',
    )
    monkeypatch.setenv("ASTRA_API_ADDRESS", "10.0.0.2:1")
    monkeypatch.setenv("ASTRA_GATEWAY_ADDRESS", "10.0.0.2:2")
    monkeypatch.setenv("ASTRA_OTEL__SERVICE_NAME", "from-env")
    settings = Settings.load(
        config_file=config, overrides={"api_address": "10.0.0.3:1", "otel": {"exporter": "none"}}
    )
    assert settings.api_address == "10.0.0.3:1"  # flag over env and TOML
    assert settings.gateway_address == "10.0.0.2:2"  # env over TOML
    assert settings.log_level == "ERROR"  # TOML over the default
    assert settings.otel.exporter == "none"  # nested flag over TOML
    assert settings.otel.service_name == "from-env"  # nested env over TOML
    assert settings.heartbeat_interval == 1.0  # default


def test_the_config_file_can_come_from_astra_config(monkeypatch, tmp_path):
    config = write_toml(tmp_path, 'redis_url = "redis://127.0.0.1:6379/0"\n')
    monkeypatch.setenv("ASTRA_CONFIG", str(config))
    assert Settings.load().redis_url == "redis://127.0.0.1:6379/0"


def test_the_store_url_follows_the_state_dir(tmp_path):
    settings = Settings.load(overrides={"state_dir": str(tmp_path / "state")})
    assert settings.store_url == f"sqlite://{tmp_path}/state/store.db"
    assert Settings.load(overrides={"store_url": "memory://"}).store_url == "memory://"


def test_durations_take_units():
    durations = {"heartbeat_interval": "250ms", "dead_after": "1.5s", "shutdown_grace": "2m"}
    settings = Settings.load(overrides=durations)
    assert settings.heartbeat_interval == 0.25
    assert settings.dead_after == 1.5
    assert settings.shutdown_grace == 120.0


def test_an_otlp_endpoint_in_the_environment_turns_otlp_on(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    assert Settings.load().otel.exporter == "otlp"
    assert Settings.load(overrides={"otel": {"exporter": "console"}}).otel.exporter == "console"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"api_address": "localhost"}, "api_address (--api-address, ASTRA_API_ADDRESS): must be"),
        ({"gateway_address": "h:99999"}, "gateway_address (--gateway-address, ASTRA_GATEWAY_ADDR"),
        ({"log_level": "loud"}, "log_level (--log-level, ASTRA_LOG_LEVEL)"),
        ({"otel": {"exporter": "jaeger"}}, "otel.exporter (--otel-exporter, ASTRA_OTEL__EXPORTER)"),
        ({"heartbeat_interval": "-1s"}, "heartbeat_interval (--heartbeat-interval, ASTRA_HEART"),
        ({"dead_after": "soon"}, "got 'soon'"),
        ({"redis_url": "http://x"}, "redis_url (--redis-url, ASTRA_REDIS_URL): must be a redis://"),
        ({"dead_after": "1s"}, "dead_after (1s) must be longer than heartbeat_interval (1s)"),
        ({"accelerator_factors": "nvidia-l4"}, "accelerator_factors (--accelerator-factors, AS"),
        ({"accelerator_factors": "cpu=0"}, "the factor of 'cpu' must be above 0, got 0.0"),
        ({"accelerator_factors": "l4=fast"}, "accelerator_factors"),
        ({"node_labels": "pool"}, "node_labels (--node-labels, ASTRA_NODE_LABELS): expected KEY"),
        ({"node_labels": "{not json"}, "node_labels (--node-labels, ASTRA_NODE_LABELS)"),
        ({"node_id": ""}, "node_id (--node-id, ASTRA_NODE_ID)"),
        ({"drain_timeout": "-1s"}, "drain_timeout (--drain-timeout, ASTRA_DRAIN_TIMEOUT)"),
    ],
)
def test_a_bad_value_is_an_error_naming_the_setting(overrides, message):
    with pytest.raises(ConfigError, match=r"^invalid settings: ") as caught:
        Settings.load(overrides=overrides)
    assert message in str(caught.value)


def test_accelerator_factors_from_a_flag_the_environment_or_toml(monkeypatch, tmp_path):
    assert Settings.load().accelerator_factors == {}
    flag = Settings.load(overrides={"accelerator_factors": "nvidia-h100=4, cpu=0.5,"})
    assert flag.accelerator_factors == {"nvidia-h100": 4.0, "": 0.5}
    monkeypatch.setenv("ASTRA_ACCELERATOR_FACTORS", "nvidia-l4=2")
    assert Settings.load().accelerator_factors == {"nvidia-l4": 2.0}
    monkeypatch.delenv("ASTRA_ACCELERATOR_FACTORS")
    toml = write_toml(tmp_path, "[accelerator_factors]\nnvidia-a10g = 1.5\ncpu = 1\n")
    assert Settings.load(config_file=toml).accelerator_factors == {"nvidia-a10g": 1.5, "": 1.0}


def test_a_bad_environment_value_is_reported(monkeypatch):
    monkeypatch.setenv("ASTRA_API_ADDRESS", "nowhere")
    with pytest.raises(ConfigError, match=r"api_address .*got 'nowhere'"):
        Settings.load()


def test_config_file_problems_are_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"cannot read config file .*missing.toml"):
        Settings.load(config_file=tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        Settings.load(config_file=write_toml(tmp_path, "api_address = \n"))
    with pytest.raises(ConfigError, match="unknown setting api_adress"):
        Settings.load(config_file=write_toml(tmp_path, 'api_adress = "127.0.0.1:1"\n'))


def test_settings_are_immutable():
    settings = Settings.load()
    with pytest.raises(ValueError, match="frozen"):
        settings.api_address = "127.0.0.1:1"  # type: ignore[misc]


def test_every_setting_has_a_flag_an_env_var_and_a_description():
    paths = [path for path, _ in setting_fields()]
    assert ("otel", "exporter") in paths and ("store_url",) in paths
    assert flag_name(("otel", "exporter")) == "--otel-exporter"
    assert env_name(("otel", "exporter")) == "ASTRA_OTEL__EXPORTER"
    assert all(info.description for _, info in setting_fields())


def test_the_node_agents_settings_keep_their_variables_and_flags(monkeypatch, tmp_path):
    defaults = Settings.load()
    assert (defaults.node_address, defaults.node_zone, defaults.node_labels) == (None, "", {})
    assert (defaults.drain_timeout, defaults.agent_runtime) == (30.0, None)
    assert defaults.node_id  # the host name
    toml = write_toml(
        tmp_path, 'node_id = "from-toml"\nnode_zone = "z0"\n[node_labels]\ndisk = "ssd"\n'
    )
    monkeypatch.setenv("ASTRA_NODE_ID", "from-env")
    monkeypatch.setenv("ASTRA_NODE_ADDRESS", "10.0.0.9")
    monkeypatch.setenv("ASTRA_NODE_LABELS", "pool=a tier=b")
    monkeypatch.setenv("ASTRA_DRAIN_TIMEOUT", "0")
    settings = Settings.load(config_file=toml, overrides={"node_address": "10.0.0.10"})
    assert (settings.node_id, settings.node_address) == ("from-env", "10.0.0.10")
    assert (settings.node_zone, settings.drain_timeout) == ("z0", 0.0)
    assert settings.node_labels == {"pool": "a", "tier": "b"}  # env over TOML, a whole mapping

    @click.command()
    @settings_options
    def show(settings: Settings) -> None:
        click.echo(settings.model_dump_json())

    flags = ["--zone", "z1", "--accelerator", "l4", "--label", "pool=x", "--node-labels", "a=1,b=2"]
    result = CliRunner().invoke(show, [*flags, "--runtime", "m:f", "--node-id", "n1"])
    assert result.exit_code == 0, result.output
    shown = Settings.model_validate_json(result.output)
    assert (shown.node_zone, shown.node_accelerator, shown.agent_runtime) == ("z1", "l4", "m:f")
    assert (shown.node_id, shown.node_labels) == ("n1", {"pool": "x", "a": "1", "b": "2"})


def test_settings_env_gives_a_child_process_the_same_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("ASTRA_CONFIG", str(write_toml(tmp_path, 'node_zone = "z9"\n')))
    settings = Settings.load(
        overrides={
            "node_address": "10.1.0.2",
            "node_labels": "pool=a",
            "accelerator_factors": "cpu=0.5,nvidia-l4=2",
            "gateway_fast_lane": "false",
            "otel": {"service_name": "agent"},
            "heartbeat_interval": "250ms",
        }
    )
    base = {"PATH": "/bin", "ASTRA_LOG_LEVEL": "DEBUG", "ASTRA_CONFIG": "/elsewhere.toml"}
    env = settings_env(settings, base)
    assert env["PATH"] == "/bin" and "ASTRA_CONFIG" not in env
    assert (env["ASTRA_LOG_LEVEL"], env["ASTRA_NODE_ZONE"]) == ("INFO", "z9")
    assert "ASTRA_REDIS_URL" not in env  # unset settings are left to their defaults
    for name in list(os.environ):
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert Settings.load() == settings
