"""Command-line flags for every setting, generated from :class:`astra.config.Settings`."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from astra.config._settings import Flag, Settings, env_name, flag_name, setting_fields

# click parameter name (``otel_exporter``) -> setting path (``("otel", "exporter")``).
_PARAMS = {
    flag_name(path).removeprefix("--").replace("-", "_"): path for path, _ in setting_fields()
}


def _overrides(params: dict[str, Any]) -> dict[str, Any]:
    """The flags given on the command line, nested the way the settings are."""
    overrides: dict[str, Any] = {}
    for param, path in _PARAMS.items():
        value = params.pop(param)
        if value is not None and value != ():  # () is a repeatable flag not given
            target = overrides
            for part in path[:-1]:
                target = target.setdefault(part, {})
            target[path[-1]] = value
    return overrides


def settings_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give ``command`` ``--config`` and one flag per setting; it receives the resolved
    ``settings`` (flags > environment > TOML file > defaults) instead of the flags."""

    @functools.wraps(command)
    def with_settings(config: Path | None, **params: Any) -> Any:
        settings = Settings.load(config_file=config, overrides=_overrides(params))
        return command(settings=settings, **params)

    decorated: Callable[..., Any] = with_settings
    for path, info in reversed(list(setting_fields())):
        flag = next((item for item in info.metadata if isinstance(item, Flag)), Flag())
        param = flag_name(path).removeprefix("--").replace("-", "_")
        help_text = f"{info.description} [env: {env_name(path)}]"
        decorated = click.option(
            flag_name(path), *flag.aliases, param, multiple=flag.multiple, help=help_text
        )(decorated)
    return click.option(
        "--config",
        type=click.Path(path_type=Path, dir_okay=False),
        help="TOML file with settings [env: ASTRA_CONFIG]",
    )(decorated)
