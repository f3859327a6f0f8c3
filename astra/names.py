"""Resource names of the App API and the ids inside them, shared by the services that take them.

An app id is what ``app_service.proto`` says: lower-case letters, digits and ``-``,
1 to 63 characters, starting with a letter. Model names and versions end up in store
keys (``/astra/v1/routes/{model}``) and in ``"{model}:{version}"`` strings, so they
are kept to letters, digits, ``.``, ``_`` and ``-``.
"""

from __future__ import annotations

import re

APP_PREFIX = "apps/"
APP_ID = re.compile(r"[a-z][a-z0-9-]{0,62}")
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MODEL_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: The version of a model that names none.
DEFAULT_VERSION = "1"


def is_app_id(value: str) -> bool:
    return APP_ID.fullmatch(value) is not None


def app_name(app_id: str) -> str:
    return APP_PREFIX + app_id


def app_id_of(name: str) -> str | None:
    """The id in ``apps/{app_id}``, or ``None`` when ``name`` is not an app name."""
    app_id = name.removeprefix(APP_PREFIX)
    return app_id if app_id != name and is_app_id(app_id) else None


def is_model_name(value: str) -> bool:
    return MODEL_NAME.fullmatch(value) is not None


def is_model_version(value: str) -> bool:
    return MODEL_VERSION.fullmatch(value) is not None
