"""``astra infer`` as a real process against a real server of the Open Inference
Protocol: a replica serving the demo model (the gateway serves the same protocol)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from astra._gen.astra.v1 import app_pb2
from astra.models import DemoModel, write_demo_model
from astra.testing import free_port
from node_agent.replica import ReplicaServer, ReplicaSettings
from tests.programs.cli.running import astra, rows

BATCH = [[0.5, -1.0, 2.0, 0.25], [1.0, 1.0, 1.0, 1.0]]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoModel:
    return write_demo_model(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
async def gateway(demo: DemoModel, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """The address of a replica serving the demo model as ``demo``."""
    model = app_pb2.Model(name="demo", uri=str(demo.path), sha256=demo.sha256)
    cache = tmp_path_factory.mktemp("cache")
    server = ReplicaServer([model], ReplicaSettings(host="127.0.0.1", cache_dir=str(cache)))
    serving = await server.start()
    yield serving.endpoint
    await server.stop()


def expected(demo: DemoModel, batch: list[list[float]]) -> np.ndarray:
    return demo.reference(np.array(batch, dtype=np.float32))


async def test_infer_prints_the_outputs_as_a_table_and_as_json(
    gateway: str, demo: DemoModel, tmp_path: Path
) -> None:
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps({"input": BATCH}))
    table, as_json = await asyncio.gather(
        astra("infer", "demo", "--input", f"input={json.dumps(BATCH)}", "--gateway", gateway),
        astra("infer", "demo", "-f", str(inputs), "-o", "json", "--gateway", gateway),
    )
    assert table.code == 0, table.err
    [row] = rows(table.out)
    assert row[:4] == ["output", "FP32", "[2,", "3]"]
    [output] = json.loads(as_json.out)
    assert (output["name"], output["datatype"], output["shape"]) == ("output", "FP32", [2, 3])
    np.testing.assert_allclose(output["data"], expected(demo, BATCH), rtol=1e-5, atol=1e-6)


async def test_a_flat_array_takes_the_inputs_shape_from_the_metadata(
    gateway: str, demo: DemoModel
) -> None:
    flat = "input=[1, 2, 3, 4]"
    result = await astra("infer", "demo", "-i", flat, "-o", "json", "--gateway", gateway)
    assert result.code == 0, result.err
    [output] = json.loads(result.out)
    assert output["shape"] == [1, 3]
    np.testing.assert_allclose(output["data"], expected(demo, [[1, 2, 3, 4]]), rtol=1e-5, atol=1e-6)


async def test_errors_say_what_the_model_wants_in_one_line(gateway: str) -> None:
    cases = {
        ("infer", "nope", "-i", "input=[1]"): "Error: NOT_FOUND: ",
        ("infer", "demo", "-i", "x=[1, 2, 3, 4]"): (
            "Error: demo has no input x; its inputs: input FP32 [-1, 4]"
        ),
        ("infer", "demo"): "Error: demo needs input input FP32 [-1, 4] (--input NAME=JSON)",
        ("infer", "demo", "-i", "input=[1, 2, 3]"): "Error: input input FP32 [-1, 4]: cannot",
        ("infer", "demo", "-i", "input=[1, "): "Error: Invalid value for '-i' / '--input': input",
    }
    results = await asyncio.gather(*(astra(*args, "--gateway", gateway) for args in cases))
    for result, message in zip(results, cases.values(), strict=True):
        assert result.code in (1, 2) and result.err.splitlines()[-1].startswith(message), result.err
    elsewhere = f"127.0.0.1:{free_port()}"
    nowhere = await astra("infer", "demo", "-i", "input=[1]", "--gateway", elsewhere)
    assert nowhere.err.startswith(f"Error: UNAVAILABLE: cannot reach {elsewhere}: "), nowhere.err
    assert "Traceback" not in nowhere.err
