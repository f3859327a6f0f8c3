"""AstraRay's one typed settings object.

Every setting comes, highest precedence first, from a CLI flag, an ``ASTRA_*``
environment variable, the TOML config file (``--config`` or ``ASTRA_CONFIG``), or its
default. Nested settings use ``__`` in the environment (``ASTRA_OTEL__EXPORTER``), a
table in TOML (``[otel] exporter = "console"``) and dashes on the command line
(``--otel-exporter``). Durations are seconds, or a number with a unit: ``500ms``,
``1s``, ``2m``. A mapping (``accelerator_factors``, ``node_labels``) is ``KEY=VALUE``
pairs or a JSON object on the command line and in the environment, a table in TOML.

The node agent's settings are top-level ``node_*`` ones, so their variables keep the
names agents have always read (``ASTRA_NODE_ID``, ``ASTRA_NODE_ADDRESS``); a few keep
a short flag besides their own (``--zone`` for ``--node-zone``: :class:`Flag`).
"""

from __future__ import annotations

import contextvars
import json
import math
import os
import re
import socket
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from astra.errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}


def _parse_duration(value: object) -> object:
    """``"500ms"`` → 0.5; numbers and anything else pass through to float validation."""
    if isinstance(value, str) and (match := _DURATION.match(value)):
        return float(match[1]) * _UNIT_SECONDS[match[2]]
    return value


def _check_address(value: str) -> str:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise ValueError("must be host:port with a port in 0..65535 (e.g. 127.0.0.1:7100)")
    return value


def _check_redis_url(value: str | None) -> str | None:
    if value is not None and urlsplit(value).scheme not in ("redis", "rediss", "unix"):
        raise ValueError("must be a redis://, rediss:// or unix:// URL")
    return value


def _default_state_dir() -> Path:
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "astra"


@dataclass(frozen=True, slots=True)
class Flag:
    """How a setting is given on the command line besides its own flag (metadata of its
    annotation, read by :func:`~astra.config.settings_options`).

    Attributes:
        aliases: more flags for it, e.g. the short names a command had before it was a
            setting (``--zone`` for ``--node-zone``).
        multiple: the flag may be repeated; its values are joined.
    """

    aliases: tuple[str, ...] = ()
    multiple: bool = False


Seconds = Annotated[PositiveFloat, BeforeValidator(_parse_duration)]
Address = Annotated[str, AfterValidator(_check_address)]
#: The key of CPU-only replicas in ``accelerator_factors`` (their hardware is ``""``).
CPU_FACTOR_KEY = "cpu"


def _json_object(value: object) -> object:
    """A string holding a JSON object, decoded; anything else as it is."""
    if isinstance(value, str) and value.lstrip().startswith("{"):
        return json.loads(value)
    return value


def _parse_factors(value: object) -> object:
    """``"a=1.5,b=2"`` or a JSON object (a flag or an environment variable) as a mapping;
    ``cpu`` is ``""``."""
    value = _json_object(value)
    if isinstance(value, str):
        pairs = [item.partition("=") for item in value.split(",") if item.strip()]
        bad = [key + sep + number for key, sep, number in pairs if not sep or not key.strip()]
        if bad:
            raise ValueError(
                f"expected ACCELERATOR=FACTOR pairs separated by commas, got {bad[0]!r}"
            )
        value = {key.strip(): number.strip() for key, _, number in pairs}
    if isinstance(value, Mapping):
        return {("" if key == CPU_FACTOR_KEY else key): factor for key, factor in value.items()}
    return value


def _check_factors(value: dict[str, float]) -> dict[str, float]:
    for key, factor in value.items():
        if not math.isfinite(factor) or factor <= 0:
            raise ValueError(
                f"the factor of {key or CPU_FACTOR_KEY!r} must be above 0, got {factor}"
            )
    return value


def _parse_labels(value: object) -> object:
    """``KEY=VALUE`` items (separated by spaces or commas, or one per repeated flag) or a
    JSON object, as a mapping."""
    value = _json_object(value)
    if isinstance(value, tuple | list):
        value = " ".join(map(str, value))
    if isinstance(value, str):
        labels = {}
        for item in value.replace(",", " ").split():
            key, sep, label = item.partition("=")
            if not sep or not key:
                raise ValueError(f"expected KEY=VALUE labels, got {item!r}")
            labels[key] = label
        return labels
    return value


LogLevel = Annotated[
    Literal["DEBUG", "INFO", "WARNING", "ERROR"],
    BeforeValidator(lambda value: value.upper() if isinstance(value, str) else value),
]


class OtelSettings(BaseModel):
    """OpenTelemetry export. Off unless an exporter is chosen or an OTLP endpoint is set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint: str | None = Field(
        default=None,
        description="OTLP gRPC endpoint (default: $OTEL_EXPORTER_OTLP_ENDPOINT)",
    )
    exporter: Literal["none", "otlp", "console"] = Field(
        default_factory=lambda data: (
            "otlp" if data["endpoint"] or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") else "none"
        ),
        description="where traces and metrics go: none, otlp or console "
        "(default: otlp when an OTLP endpoint is set, else none)",
    )
    service_name: str = Field(default="astra", min_length=1, description="OTel service.name")


class BrokerSettings(BaseModel):
    """The async inference broker (used when ``redis_url`` is set): the gateway's
    admission limit and TTLs, the replicas' take-over timeout."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_backlog: int = Field(
        default=10_000,
        ge=1,
        description="async inferences (queued or running) a model version may have; "
        "more are refused with RESOURCE_EXHAUSTED",
    )
    result_ttl: Seconds = Field(default=600.0, description="how long async results are kept")
    pending_ttl: Seconds = Field(
        default=3600.0, description="how long an accepted async inference is kept unfinished"
    )
    claim_idle: Seconds = Field(
        default=5.0,
        description="silence after which a replica's async inferences go to another replica",
    )


# The parsed config file while :meth:`Settings.load` builds the settings.
_file_settings: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "_file_settings", default=None
)


class Settings(BaseSettings):
    """Everything an AstraRay process is configured with. Immutable once loaded.

    Build it with :meth:`load` (flags, environment, TOML, defaults); ``Settings()``
    alone reads the environment and defaults only.
    """

    model_config = SettingsConfigDict(
        env_prefix="ASTRA_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    state_dir: Annotated[Path, AfterValidator(lambda path: path.expanduser().resolve())] = Field(
        default_factory=_default_state_dir,
        description="where local state lives "
        "(default: $XDG_STATE_HOME/astra or ~/.local/state/astra)",
    )
    store_url: str = Field(
        default_factory=lambda data: f"sqlite://{data['state_dir']}/store.db",
        description="etcd://host:port[,host:port], sqlite:///path or memory:// "
        "(default: sqlite:///<state_dir>/store.db)",
    )
    api_address: Address = Field(default="127.0.0.1:7100", description="gRPC API listen address")
    gateway_address: Address = Field(default="127.0.0.1:8001", description="gateway listen address")
    gateway_fast_lane: bool = Field(
        default=True,
        description="serve the gateway through its C++ fast lane (with the native core)",
    )
    log_level: LogLevel = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR")
    otel: OtelSettings = Field(default_factory=OtelSettings)
    heartbeat_interval: Seconds = Field(default=1.0, description="node heartbeat period")
    dead_after: Seconds = Field(default=3.0, description="silence after which a node is dead")
    shutdown_grace: Seconds = Field(default=5.0, description="time in-flight RPCs get on shutdown")
    redis_url: Annotated[str | None, AfterValidator(_check_redis_url)] = Field(
        default=None, description="Redis for the async broker and Ray head recovery (optional)"
    )
    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    accelerator_factors: Annotated[
        dict[str, float], NoDecode, BeforeValidator(_parse_factors), AfterValidator(_check_factors)
    ] = Field(
        default_factory=dict,
        description="performance factors of hardware in routing base weights, e.g. "
        "'nvidia-h100=4,nvidia-l4=2' ('cpu' for CPU-only replicas; unlisted: 1)",
    )
    node_id: str = Field(
        default_factory=socket.gethostname,
        min_length=1,
        description="the node agent's node id (default: the host name)",
    )
    node_address: str | None = Field(
        default=None,
        min_length=1,
        description="the address the node's Ray nodes and replicas advertise and listen on "
        "(default: this host's address towards the API)",
    )
    node_zone: Annotated[str, Flag(aliases=("--zone",))] = Field(
        default="", description="the node's failure domain"
    )
    node_accelerator: Annotated[str, Flag(aliases=("--accelerator",))] = Field(
        default="", description="the node's accelerator type (default: from the GPUs found)"
    )
    node_labels: Annotated[
        dict[str, str],
        NoDecode,
        BeforeValidator(_parse_labels),
        Flag(aliases=("--label",), multiple=True),
    ] = Field(
        default_factory=dict,
        description="the node's placement labels, KEY=VALUE (the flag is repeatable; "
        "space or comma separated in the environment)",
    )
    drain_timeout: Annotated[NonNegativeFloat, BeforeValidator(_parse_duration)] = Field(
        default=30.0, description="time a node agent's graceful exit waits for replicas to drain"
    )
    agent_runtime: Annotated[str | None, Flag(aliases=("--runtime",))] = Field(
        default=None,
        description="module:factory of the node agent's replica runtime; without one, "
        "assignments are only acknowledged",
    )

    @model_validator(mode="after")
    def _check_failure_detection(self) -> Settings:
        if self.dead_after <= self.heartbeat_interval:
            raise ValueError(
                f"dead_after ({self.dead_after:g}s) must be longer than heartbeat_interval "
                f"({self.heartbeat_interval:g}s)"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        file_settings = InitSettingsSource(settings_cls, _file_settings.get() or {})
        return init_settings, env_settings, file_settings

    @classmethod
    def load(
        cls, *, config_file: Path | None = None, overrides: Mapping[str, Any] | None = None
    ) -> Settings:
        """Resolve the settings: ``overrides`` (CLI flags, nested like the model) > the
        ``ASTRA_*`` environment > the TOML ``config_file`` (else ``$ASTRA_CONFIG``, if set)
        > defaults.

        Raises:
            ConfigError: a value is invalid, or the config file is missing or not TOML;
                the message names the setting and where to set it.
        """
        if config_file is None and os.environ.get("ASTRA_CONFIG"):
            config_file = Path(os.environ["ASTRA_CONFIG"])
        token = _file_settings.set(None if config_file is None else _read_toml(config_file))
        try:
            return cls(**(overrides or {}))
        except ValidationError as exc:
            raise ConfigError(_describe(exc)) from None
        finally:
            _file_settings.reset(token)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def settings_env(settings: Settings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment that makes :meth:`Settings.load` in a child process give back
    ``settings``: ``base`` without any settings variable (nor ``ASTRA_CONFIG``: the file
    was read), plus an ``ASTRA_*`` variable for every setting that has a value."""
    ours = {env_name(path) for path, _ in setting_fields()} | {"ASTRA_CONFIG"}
    env = {name: value for name, value in (base or {}).items() if name.upper() not in ours}
    for path, _ in setting_fields():
        value: Any = settings
        for part in path:
            value = getattr(value, part)
        if value is not None:
            env[env_name(path)] = _as_text(value)
    return env


def _as_text(value: object) -> str:
    """A setting's value as a flag or an environment variable gives it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return json.dumps(dict(value))
    return str(value)


def setting_fields(
    model: type[BaseModel] = Settings, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], FieldInfo]]:
    """Every leaf setting as (path, field), nested models flattened: ``("otel", "exporter")``."""
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from setting_fields(annotation, (*prefix, name))
        else:
            yield (*prefix, name), info


def flag_name(path: tuple[str, ...]) -> str:
    """The CLI flag of a setting: ``("otel", "exporter")`` → ``--otel-exporter``."""
    return "--" + "-".join(path).replace("_", "-")


def env_name(path: tuple[str, ...]) -> str:
    """The env variable of a setting: ``("otel", "exporter")`` → ``ASTRA_OTEL__EXPORTER``."""
    return "ASTRA_" + "__".join(path).upper()


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        if error["type"] == "default_factory_not_called":
            continue  # a consequence of another error, reported on its own
        path = tuple(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if not path:
            problems.append(message)
        elif error["type"] == "extra_forbidden":
            problems.append(f"unknown setting {'.'.join(path)}")
        else:
            problems.append(
                f"{'.'.join(path)} ({flag_name(path)}, {env_name(path)}): {message}, "
                f"got {error['input']!r}"
            )
    return "invalid settings: " + "; ".join(problems)
