"""``astra deploy FILE``: create or update an app from YAML or JSON, then follow it until
it is ready, or say why it cannot be placed.

The file is the App resource in its protobuf JSON form (field names in camelCase or
snake_case, enums by name), written as YAML or JSON, with ``name`` (``apps/{id}`` or
the bare id). It is the whole spec: fields it leaves out are reset to their defaults
on an update. Output-only fields are ignored; an ``etag``, when given, guards the update.
"""

from __future__ import annotations

import time
from pathlib import Path

import click
import grpc
import yaml
from google.protobuf import json_format

from astra._gen.astra.v1 import app_pb2
from programs.cli._client import ApiError, Client, resource_name
from programs.cli._connect import api_client
from programs.cli._describe import app_state, is_ready, unplaceable

#: Seconds between two looks at the app while following it.
_POLL = 0.5


def load_app(path: Path) -> app_pb2.App:
    """The app ``path`` describes, its name in ``apps/{id}`` form.

    Raises:
        click.ClickException: the file cannot be read or is not an app.
    """
    try:
        data = yaml.safe_load(path.read_text())  # JSON is YAML too
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise click.ClickException(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise click.ClickException(f"{path}: expected the app's fields, got {type(data).__name__}")
    try:
        app = json_format.ParseDict(data, app_pb2.App())
    except json_format.ParseError as exc:
        raise click.ClickException(f"{path}: {' '.join(str(exc).split())}") from None
    if not app.name:
        raise click.ClickException(f"{path}: name: required, e.g. apps/ranker")
    app.name = resource_name("apps", app.name)
    return app


def apply(client: Client, app: app_pb2.App) -> tuple[app_pb2.App, str]:
    """Create ``app``, or replace the spec of the existing app of its name; returns the
    app as written and what happened (created, updated or unchanged)."""
    try:
        current = client.app(app.name)
    except ApiError as exc:
        if exc.code != grpc.StatusCode.NOT_FOUND:
            raise
        return client.create_app(app.name.removeprefix("apps/"), app), "created"
    app.etag = app.etag or current.etag
    updated = client.update_app(app)
    return updated, "updated" if updated.generation != current.generation else "unchanged"


def follow(client: Client, name: str, *, timeout: float) -> app_pb2.App:
    """Poll the app, printing each new state, until it is ready.

    Raises:
        click.ClickException: some replica cannot be placed (with the scheduler's reason),
            or the app is not ready within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    shown = ""
    while True:
        app = client.app(name)
        if (state := app_state(app)) != shown:
            click.echo(f"{name}: {state}")
            shown = state
        if is_ready(app):
            return app
        if (placed := unplaceable(app)) is not None:
            raise click.ClickException(
                f"{name} cannot be placed: {placed.reason}: {placed.message}. It stays "
                "deployed and is placed once the fleet can take it (see `astra apps`)."
            )
        if time.monotonic() >= deadline:
            raise click.ClickException(f"{name} is not ready after {timeout:g}s: {state}")
        time.sleep(_POLL)


@click.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="follow the app until it is ready, or say why it cannot be placed",
)
@click.option(
    "--ready-timeout",
    type=click.FloatRange(min=0),
    default=300.0,
    show_default=True,
    help="seconds to wait for the app to be ready",
)
@api_client
def deploy(client: Client, file: Path, wait: bool, ready_timeout: float) -> None:
    """Create or update an app from FILE (YAML or JSON: the App resource, whole), then
    show its progress until it is ready."""
    app, outcome = apply(client, load_app(file))
    click.echo(f"{app.name} {outcome} (generation {app.generation})")
    if wait:
        follow(client, app.name, timeout=ready_timeout)
