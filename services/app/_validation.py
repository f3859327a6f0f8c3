"""Validation of the App service's requests: every violation, with its field path.

An app spec is checked whole, so that an update is judged on what it would leave
behind (the stored app with the masked fields replaced). Limits keep one app record
well under the store's request size.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

from google.protobuf import field_mask_pb2

from astra._gen.astra.v1 import app_pb2, app_service_pb2
from astra.names import (
    DEFAULT_VERSION,
    app_id_of,
    app_name,
    is_app_id,
    is_model_name,
    is_model_version,
)
from astra.server import Violations

MAX_REPLICAS = 100_000
MAX_CLUSTERS = 10_000
MAX_MODELS = 32
MAX_ENTRIES = 64
MAX_CPU_MILLIS = 1_000_000
MAX_MEMORY_BYTES = 1 << 50
MAX_GPUS = 64
MAX_URI = 2048
#: A rollout's budgets when the spec leaves them unset.
DEFAULT_MAX_SURGE = 1

#: Field paths an update mask may name; "*" names them all.
UPDATABLE = frozenset(
    {
        "models",
        "replicas",
        "resources",
        "resources.cpu_millis",
        "resources.memory_bytes",
        "resources.gpus",
        "resources.accelerators",
        "placement",
        "placement.node_selector",
        "placement.affinity",
        "placement.anti_affinity",
        "placement.strategy",
        "placement.watermark",
        "placement.max_per_node",
        "placement.spread_zones",
        "ray",
        "ray.clusters",
        "ray.workers_per_cluster",
        "priority",
        "labels",
        "rollout",
        "rollout.max_surge",
        "rollout.max_unavailable",
    }
)
_TOP_LEVEL = tuple(sorted(path for path in UPDATABLE if "." not in path))

_CHARACTERS = "letters, digits, '.', '_' or '-'"
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,62}")
_TOKEN_RULE = (
    "must be 1 to 63 letters, digits, '.', '_', '/' or '-', starting with a letter or digit"
)
_URL = re.compile(r"https?://[^/\s?#]+(/\S*)?")


def check_create(request: app_service_pb2.CreateAppRequest) -> str:
    """The new app's id, once the request is known to be valid.

    Raises:
        InvalidArgumentError: naming every bad field.
    """
    violations = Violations()
    app_id = request.app_id
    violations.check(
        is_app_id(app_id),
        "app_id",
        "must be 1 to 63 lower-case letters, digits or '-', starting with a letter",
    )
    app = violations.at("app")
    if request.app.name:
        app.check(
            request.app.name == app_name(app_id), "name", f"must be empty or {app_name(app_id)}"
        )
    check_spec(request.app, app, replicas_given=True)
    violations.raise_if_any()
    return app_id


def check_named(name: str, field: str = "name") -> str:
    """The app id in ``name`` (``apps/{app_id}``).

    Raises:
        InvalidArgumentError: ``name`` is not an app name.
    """
    violations = Violations()
    app_id = app_id_of(name)
    violations.check(app_id is not None, field, "must be apps/{app_id}")
    violations.raise_if_any()
    assert app_id is not None
    return app_id


def check_update(request: app_service_pb2.UpdateAppRequest) -> tuple[str, list[str]]:
    """The updated app's id and the mask's paths ("*" expanded).

    Raises:
        InvalidArgumentError: naming every bad field.
    """
    violations = Violations()
    app_id = app_id_of(request.app.name)
    violations.at("app").check(app_id is not None, "name", "must be apps/{app_id}")
    mask = violations.at("update_mask")
    paths = list(request.update_mask.paths)
    if mask.require(paths, "paths"):
        for index, path in enumerate(paths):
            if path != "*":
                at = mask.at("paths")
                at.check(path in UPDATABLE, index, f"{path!r} is not an updatable field of App")
    violations.raise_if_any()
    assert app_id is not None
    return app_id, list(_TOP_LEVEL) if "*" in paths else paths


def merge(current: app_pb2.App, patch: app_pb2.App, paths: list[str]) -> app_pb2.App:
    """``current`` with the fields named by ``paths`` taken from ``patch`` (replaced whole)."""
    source = app_pb2.App()
    source.CopyFrom(patch)
    for path in paths:
        parent, dot, _ = path.partition(".")
        if dot:  # a masked field of an unset message is set to its zero value, not skipped
            getattr(source, parent).SetInParent()
    merged = app_pb2.App()
    merged.CopyFrom(current)
    field_mask_pb2.FieldMask(paths=paths).MergeMessage(
        source, merged, replace_message_field=True, replace_repeated_field=True
    )
    return merged


def check_spec(app: app_pb2.App, at: Violations, *, replicas_given: bool) -> None:
    """Record every violation of ``app``'s spec under ``at``.

    ``replicas_given`` says whether the caller set ``replicas`` (on create, or with
    "replicas" in the update mask): with ``ray.workers_per_cluster`` set, a given
    ``replicas`` must be 0 or ``ray.clusters * (1 + ray.workers_per_cluster)``.
    """
    _check_models(app, at)
    at.check(0 <= app.replicas <= MAX_REPLICAS, "replicas", f"must be in 0..{MAX_REPLICAS}")
    _check_resources(app.resources, at.at("resources"))
    _check_placement(app, at.at("placement"))
    ray = at.at("ray")
    ray.check(0 <= app.ray.clusters <= MAX_CLUSTERS, "clusters", f"must be in 0..{MAX_CLUSTERS}")
    workers = app.ray.workers_per_cluster
    ray.check(0 <= workers <= MAX_REPLICAS, "workers_per_cluster", f"must be in 0..{MAX_REPLICAS}")
    if app.ray.workers_per_cluster > 0 and replicas_given and app.replicas:
        wanted = derived_replicas(app)
        at.check(
            app.replicas == wanted,
            "replicas",
            f"must be 0 or ray.clusters * (1 + ray.workers_per_cluster) = {wanted} "
            "when ray.workers_per_cluster is set",
        )
    _check_map(app.labels, at, "labels")
    _check_rollout(app.rollout, at.at("rollout"))


def _check_rollout(rollout: app_pb2.RolloutPolicy, at: Violations) -> None:
    surge = rollout.max_surge if rollout.HasField("max_surge") else DEFAULT_MAX_SURGE
    unavailable = rollout.max_unavailable
    surge_ok = at.check(0 <= surge <= MAX_REPLICAS, "max_surge", f"must be in 0..{MAX_REPLICAS}")
    unavailable_ok = at.check(
        0 <= unavailable <= MAX_REPLICAS, "max_unavailable", f"must be in 0..{MAX_REPLICAS}"
    )
    if surge_ok and unavailable_ok:
        at.check(
            surge > 0 or unavailable > 0,
            "max_surge",
            "must be at least 1 when max_unavailable is 0 (else no replica could be replaced)",
        )


def derived_replicas(app: app_pb2.App) -> int:
    """What ``replicas`` must be when ``ray.workers_per_cluster`` is set."""
    return max(app.ray.clusters, 1) * (1 + app.ray.workers_per_cluster)


def _check_models(app: app_pb2.App, at: Violations) -> None:
    if not at.check(
        1 <= len(app.models) <= MAX_MODELS, "models", f"must hold 1 to {MAX_MODELS} models"
    ):
        return
    seen: set[tuple[str, str]] = set()
    for index, model in enumerate(app.models):
        here = at.at("models").at(index)
        if here.require(model.name, "name"):
            here.check(is_model_name(model.name), "name", f"must be {_CHARACTERS} (at most 128)")
        if model.version:
            here.check(
                is_model_version(model.version), "version", f"must be {_CHARACTERS} (at most 64)"
            )
        key = (model.name, model.version or DEFAULT_VERSION)
        here.check(key not in seen, "version", f"model {model.name}:{key[1]} is listed twice")
        seen.add(key)
        if here.require(model.uri, "uri"):
            here.check(
                len(model.uri) <= MAX_URI
                and (model.uri.startswith("/") or _URL.fullmatch(model.uri) is not None),
                "uri",
                f"must be an absolute path or an http(s) URL of at most {MAX_URI} characters",
            )
        if here.require(model.sha256, "sha256"):
            here.check(
                _SHA256.fullmatch(model.sha256) is not None, "sha256", "must be 64 hex digits"
            )
        here.check(model.format == app_pb2.MODEL_FORMAT_ONNX, "format", "must be MODEL_FORMAT_ONNX")


def _check_resources(resources: app_pb2.ReplicaResources, at: Violations) -> None:
    at.check(
        0 < resources.cpu_millis <= MAX_CPU_MILLIS, "cpu_millis", f"must be in 1..{MAX_CPU_MILLIS}"
    )
    at.check(
        0 < resources.memory_bytes <= MAX_MEMORY_BYTES,
        "memory_bytes",
        f"must be in 1..{MAX_MEMORY_BYTES}",
    )
    at.check(0 <= resources.gpus <= MAX_GPUS, "gpus", f"must be in 0..{MAX_GPUS}")
    _check_tokens(resources.accelerators, at, "accelerators")


def _check_placement(app: app_pb2.App, at: Violations) -> None:
    placement = app.placement
    _check_map(placement.node_selector, at, "node_selector")
    for field in ("affinity", "anti_affinity"):
        names = getattr(placement, field)
        if not at.check(len(names) <= MAX_ENTRIES, field, f"must hold at most {MAX_ENTRIES} apps"):
            continue
        for index, name in enumerate(names):
            at.at(field).check(app_id_of(name) is not None, index, "must be apps/{app_id}")
    both = set(placement.affinity) & set(placement.anti_affinity)
    at.check(
        not both, "anti_affinity", f"names {', '.join(sorted(both))}, which affinity names too"
    )
    strategies = app_pb2.PlacementStrategy.values()
    at.check(placement.strategy in strategies, "strategy", f"unknown strategy {placement.strategy}")
    at.check(
        math.isfinite(placement.watermark) and 0.0 <= placement.watermark <= 1.0,
        "watermark",
        "must be in 0..1 (0: the default, 0.7)",
    )
    at.check(
        0 <= placement.max_per_node <= MAX_REPLICAS, "max_per_node", f"must be in 0..{MAX_REPLICAS}"
    )


def _check_tokens(values: Iterable[str], at: Violations, field: str) -> None:
    items = list(values)
    if not at.check(len(items) <= MAX_ENTRIES, field, f"must hold at most {MAX_ENTRIES} entries"):
        return
    for index, value in enumerate(items):
        at.at(field).check(_TOKEN.fullmatch(value) is not None, index, _TOKEN_RULE)
    at.check(len(set(items)) == len(items), field, "must not repeat an entry")


def _check_map(values: Mapping[str, str], at: Violations, field: str) -> None:
    entries = dict(values)
    if not at.check(len(entries) <= MAX_ENTRIES, field, f"must hold at most {MAX_ENTRIES} entries"):
        return
    here = at.at(field)
    for key, value in entries.items():
        if here.check(_TOKEN.fullmatch(key) is not None, key, f"the key {_TOKEN_RULE}"):
            here.check(
                len(value) <= 63 and value.isprintable(),
                key,
                "the value must be at most 63 printable characters",
            )
