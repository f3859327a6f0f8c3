"""AstraRay's settings: one typed, immutable object from flags, environment, TOML and defaults::

    settings = Settings.load(config_file=path, overrides={"api_address": "127.0.0.1:0"})

Precedence, highest first: CLI flags (``overrides``), ``ASTRA_*`` environment variables,
the TOML file named by ``--config`` or ``ASTRA_CONFIG``, defaults. An invalid value raises
:class:`astra.errors.ConfigError` naming the setting. :func:`settings_options` gives a click
command a flag per setting and hands it the resolved :class:`Settings`;
:func:`settings_env` hands them on to a child process.
"""

from astra.config._options import settings_options
from astra.config._settings import (
    BrokerSettings,
    Flag,
    OtelSettings,
    Settings,
    env_name,
    flag_name,
    setting_fields,
    settings_env,
)

__all__ = [
    "BrokerSettings",
    "Flag",
    "OtelSettings",
    "Settings",
    "env_name",
    "flag_name",
    "setting_fields",
    "settings_env",
    "settings_options",
]
