"""``astra deploy FILE`` as a real process: creates or updates an app from YAML or JSON,
follows it until it is ready, and says why it cannot be placed."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import yaml

from tests.programs.cli.running import agents, astra
from tests.services.app.plane import GIB, Plane

MODEL = {
    "name": "resnet",
    "version": "1",
    "uri": "/models/resnet.onnx",
    "sha256": "ab" * 32,
    "format": "MODEL_FORMAT_ONNX",
}


def app_file(name: str, *, replicas: int, cpu_millis: int = 1000) -> dict:
    """An app's fields as a deploy file holds them (snake_case, as people write YAML);
    its model is named after it (a model version is served by one app)."""
    return {
        "name": name,
        "replicas": replicas,
        "models": [{**MODEL, "name": f"{MODEL['name']}-{name}"}],
        "resources": {"cpu_millis": cpu_millis, "memory_bytes": GIB},
    }


def write(path: Path, fields: dict) -> Path:
    text = json.dumps(fields) if path.suffix == ".json" else yaml.safe_dump(fields)
    path.write_text(text)
    return path


async def test_deploy_creates_follows_until_ready_then_updates(
    control: Plane, tmp_path: Path
) -> None:
    fields = app_file("web", replicas=2)
    async with agents(control, "web"):
        web_yaml = write(tmp_path / "web.yaml", fields)
        created = await astra("deploy", str(web_yaml), api=control.address)
        assert created.code == 0, created.err
        lines = created.out.splitlines()
        assert lines[0] == "apps/web created (generation 1)"
        assert lines[-1] == "apps/web: Ready"
        fields["replicas"] = 3
        web_json = write(tmp_path / "web.json", fields)
        updated = await astra("deploy", str(web_json), api=control.address)
        assert updated.code == 0, updated.err
        assert updated.out.splitlines()[0] == "apps/web updated (generation 2)"
        assert updated.out.splitlines()[-1] == "apps/web: Ready"
    app = await control.app("web")
    assert (app.generation, app.replicas, app.replica_counts.ready) == (2, 3, 3)
    again = await astra("deploy", str(web_json), api=control.address)
    assert again.out == "apps/web unchanged (generation 2)\napps/web: Ready\n", again.err


async def test_deploy_says_why_an_app_cannot_be_placed(control: Plane, tmp_path: Path) -> None:
    huge = write(tmp_path / "huge.yaml", app_file("huge", replicas=1, cpu_millis=64_000))
    result = await astra("deploy", str(huge), api=control.address)
    assert result.code == 1
    assert result.out.startswith("apps/huge created (generation 1)\n")
    assert result.err.startswith("Error: apps/huge cannot be placed: Insufficient"), result.err
    assert "cpu" in result.err.lower() and "Traceback" not in result.err


async def test_deploy_reports_a_bad_file_or_spec_in_one_line(
    control: Plane, tmp_path: Path
) -> None:
    invalid = write(tmp_path / "bad.yaml", app_file("bad", replicas=-1))
    unknown = write(tmp_path / "typo.yaml", {**app_file("typo", replicas=1), "replica": 2})
    nameless = write(tmp_path / "nameless.json", {"replicas": 1})
    expected = {
        invalid: "Error: INVALID_ARGUMENT: app.replicas",
        unknown: f'Error: {unknown}: Message type "astra.v1.App" has no field named "replica"',
        nameless: f"Error: {nameless}: name: required",
    }
    results = await asyncio.gather(
        *(astra("deploy", str(path), api=control.address) for path in expected)
    )
    for result, message in zip(results, expected.values(), strict=True):
        assert result.code == 1 and result.err.startswith(message), result.err
        assert result.err.count("\n") == 1, "one line, no traceback"
