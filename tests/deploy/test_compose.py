"""docker-compose.yml and the Dockerfile, checked without Docker: the file is valid for
docker-compose, every container is health-checked and starts once what it depends on
is healthy, and every command a container of the project's image runs exists in the
package, with the flags and ASTRA_* variables it is given."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner

from astra._gen.astra.v1 import (
    app_service_pb2,
    node_service_pb2,
    resource_service_pb2,
    scheduler_service_pb2,
)
from astra.config import env_name, setting_fields
from programs.cli import main

ROOT = Path(__file__).parents[2]
PROJECT_IMAGE = "astraray:latest"
#: What the deployment holds besides the node agents.
PARTS = {"etcd", "redis", "resource", "node", "app", "scheduler", "api", "gateway"}
API_SERVICES = [
    module.DESCRIPTOR.services_by_name[name].full_name
    for module, name in (
        (resource_service_pb2, "ResourceService"),
        (node_service_pb2, "NodeService"),
        (app_service_pb2, "AppService"),
        (scheduler_service_pb2, "SchedulerService"),
    )
]


def docker_compose() -> str:
    """The docker-compose binary; its absence fails the test with how to install it."""
    found = shutil.which("docker-compose")
    if found is None:
        pytest.fail(
            "docker-compose is not installed; it validates docker-compose.yml. Install "
            "Debian's package: `apt-get install docker-compose` (.ci/run does so as root).",
            pytrace=False,
        )
    return found


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    """The services as ``docker-compose config`` resolves them, every profile on."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASTRA_", "OTEL_"))}
    command = [docker_compose(), "-f", "docker-compose.yml", "--profile", "otel", "config"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"docker-compose config: {result.stderr}"
    return yaml.safe_load(result.stdout)["services"]


def ours(services: dict[str, dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The services that run the project's image."""
    return ((name, spec) for name, spec in services.items() if spec["image"] == PROJECT_IMAGE)


def test_it_holds_every_part_with_two_agents_and_an_optional_collector(services) -> None:
    agents = [name for name, spec in ours(services) if spec["command"][:2] == ["astra", "agent"]]
    assert len(agents) >= 2 and services.keys() >= PARTS
    assert services["otel-collector"]["profiles"] == ["otel"]
    assert {name for name, _ in ours(services)} == PARTS - {"etcd", "redis", "api"} | set(agents)


def test_every_container_is_health_checked_and_waits_on_health(services) -> None:
    for name, spec in services.items():
        check = spec.get("healthcheck", {})
        assert check.get("test") and not check.get("disable"), f"{name} has no health check"
        for dependency, condition in spec.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on an unknown {dependency}"
            assert condition == {"condition": "service_healthy"}, f"{name} -> {dependency}"
    assert not services["otel-collector"].get("depends_on"), "the optional part is no dependency"


def test_the_project_image_is_built_from_the_dockerfile(services) -> None:
    for name, spec in ours(services):
        assert Path(spec["build"]["context"]) == ROOT, name
        assert spec["build"].get("dockerfile", "Dockerfile") == "Dockerfile", name
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:\$\{PYTHON_VERSION\}-slim AS build$", dockerfile, re.MULTILINE)
    assert "ARG PYTHON_VERSION=3.11" in dockerfile and "build-essential cmake" in dockerfile
    assert "pip install ." in dockerfile
    users = re.findall(r"^USER (\S+)$", dockerfile, re.MULTILINE)
    assert users and users[-1] not in ("root", "0"), "the image runs as a non-root user"


def _commands(spec: dict[str, Any]) -> Iterator[list[str]]:
    """The service's command and health check, as argument lists (shell variables expanded
    from the service's environment)."""
    yield spec["command"]
    kind, *test = spec["healthcheck"]["test"]
    if kind == "CMD-SHELL":
        environment = {k: str(v) for k, v in spec["environment"].items()}
        text = re.sub(r"\$\$?(\w+)", lambda m: environment[m[1]], test[0])
        yield shlex.split(text)
    else:
        yield test


def _astra_command(args: list[str]) -> list[click.Command]:
    """The click commands ``astra ARGS`` goes through, checking that its flags parse."""
    result = CliRunner().invoke(main, [*args, "--help"])
    assert result.exit_code == 0, f"astra {shlex.join(args)}: {result.output}"
    chain: list[click.Command] = [main]
    for arg in args:
        command = chain[-1]
        if not isinstance(command, click.Group) or arg.startswith("-"):
            break
        found = command.get_command(click.Context(command), arg)
        if found is None:
            break
        chain.append(found)
    return chain


def _module_flags(modules: list[str]) -> dict[str, str]:
    """The ``--help`` of ``python -m MODULE`` for each module, run at once."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    processes = {
        module: subprocess.Popen(
            [sys.executable, "-m", module, "--help"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for module in modules
    }
    helps = {}
    for module, process in processes.items():
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, f"python -m {module} --help: {err}"
        helps[module] = out
    return helps


def test_every_command_exists_with_its_flags_and_variables(services) -> None:
    settings_env = {env_name(path) for path, _ in setting_fields()}
    modules: dict[str, list[str]] = {}
    for name, spec in ours(services):
        known_env = set(settings_env)
        for args in _commands(spec):
            if args[:2] == ["python", "-m"]:
                module = args[2]
                assert importlib.util.find_spec(f"{module}.__main__"), f"{name}: no {module}"
                modules.setdefault(module, []).extend(args[3:])
            else:
                assert args[0] == "astra", f"{name}: {args[0]} is not the package's script"
                for command in _astra_command(args[1:]):
                    known_env |= {p.envvar for p in command.params if isinstance(p.envvar, str)}
        unknown = {var for var in spec["environment"] if var.startswith("ASTRA_")} - known_env
        assert not unknown, f"{name}: {sorted(unknown)} set nothing"
    for module, help_text in _module_flags(list(modules)).items():
        for flag in modules[module]:
            assert flag.partition("=")[0] in help_text.split(), f"{module} has no {flag}"


def test_the_api_proxy_routes_every_service_to_its_container(services) -> None:
    conf = (ROOT / "deploy" / "api-proxy.conf").read_text()
    routes = dict(re.findall(r"location /([\w.]+)/ \{\s*set \$service ([\w-]+):7100;", conf))
    assert set(API_SERVICES) <= routes.keys()
    assert routes["grpc.health.v1.Health"] == "resource"
    for service, container in routes.items():
        assert container in services, f"{service} goes to an unknown {container}"
    [mounted] = services["api"]["volumes"]
    assert mounted == f"{ROOT / 'deploy' / 'api-proxy.conf'}:/etc/nginx/nginx.conf:ro"
