"""``astra infer MODEL --input NAME=JSON``: one inference through the gateway (or any
server of the Open Inference Protocol), its outputs printed.

Each input's datatype and shape come from the model's metadata: a JSON array is cast
to the datatype and, when it has the right number of elements but not the shape (a flat
list for ``[-1, 4]``), reshaped to it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
import numpy as np

from programs.cli._connect import config_option, load_settings, timeout_option
from programs.cli._inference import InferenceClient, ModelInfo, Tensor
from programs.cli._output import Column, emit, output_option


def _given(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, Any]:
    inputs = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{value!r} is not NAME=JSON", ctx=ctx, param=param)
        try:
            inputs[name] = json.loads(text)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"{name}: not JSON: {exc}", ctx=ctx, param=param) from None
    return inputs


def _from_file(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise click.ClickException(f"{path}: expected an object of inputs, {{NAME: array}}")
    return data


def fits(shape: tuple[int, ...], wanted: tuple[int, ...]) -> bool:
    """Whether ``shape`` has ``wanted``'s rank and every fixed dimension of it."""
    return len(shape) == len(wanted) and all(
        w in (-1, s) for w, s in zip(wanted, shape, strict=True)
    )


def as_array(value: Any, tensor: Tensor) -> np.ndarray:
    """``value`` (a JSON array) as ``tensor``'s datatype and shape.

    Raises:
        click.ClickException: it cannot be cast or shaped so; the message says why.
    """
    from astra.inference import DTYPES  # the protocol's datatypes as numpy's

    if tensor.datatype not in DTYPES:
        raise click.ClickException(f"input {tensor}: unknown datatype")
    try:
        array = np.asarray(value, dtype=DTYPES[tensor.datatype])
        if not fits(array.shape, tensor.shape) and tensor.shape.count(-1) <= 1:
            array = array.reshape(tensor.shape)
    except (TypeError, ValueError) as exc:
        raise click.ClickException(f"input {tensor}: {exc}") from None
    if not fits(array.shape, tensor.shape):
        raise click.ClickException(f"input {tensor}: cannot take shape {list(array.shape)}")
    return array


def prepare(info: ModelInfo, values: Mapping[str, Any]) -> dict[str, tuple[str, np.ndarray]]:
    """The model's inputs from ``values`` (name → JSON array), checked against its metadata."""
    wanted = ", ".join(map(str, info.inputs))
    names = {tensor.name for tensor in info.inputs}
    if unknown := sorted(values.keys() - names):
        raise click.ClickException(f"{info.name} has no input {unknown[0]}; its inputs: {wanted}")
    if missing := [tensor for tensor in info.inputs if tensor.name not in values]:
        raise click.ClickException(f"{info.name} needs input {missing[0]} (--input NAME=JSON)")
    return {t.name: (t.datatype, as_array(values[t.name], t)) for t in info.inputs}


def _data(array: np.ndarray) -> Any:
    if array.dtype == object:  # BYTES
        return np.vectorize(lambda item: item.decode(errors="replace"), otypes=[object])(
            array
        ).tolist()
    return array.tolist()


#: Output rows are (name, datatype, array).
OUTPUT_COLUMNS = (
    Column("OUTPUT", lambda row: row[0]),
    Column("DATATYPE", lambda row: row[1]),
    Column("SHAPE", lambda row: json.dumps(list(row[2].shape))),
    Column("DATA", lambda row: json.dumps(_data(row[2]))),
)


def _output_json(row: tuple[str, str, np.ndarray]) -> dict[str, Any]:
    name, datatype, array = row
    return {"name": name, "datatype": datatype, "shape": list(array.shape), "data": _data(array)}


@click.command()
@click.argument("model")
@click.option("--model-version", default="", help="the model's version (default: the server's)")
@click.option(
    "-i",
    "--input",
    "given",
    multiple=True,
    metavar="NAME=JSON",
    callback=_given,
    help="an input as a JSON array, e.g. input='[[1, 2, 3, 4]]' (repeatable)",
)
@click.option(
    "-f",
    "--input-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help='a JSON file of inputs: {"NAME": array, ...}',
)
@click.option(
    "--gateway",
    help="host:port of the gateway [env: ASTRA_GATEWAY_ADDRESS; default: 127.0.0.1:8001]",
)
@config_option
@timeout_option(30.0, "seconds the inference may take")
@output_option
def infer(
    model: str,
    model_version: str,
    given: dict[str, Any],
    input_file: Path | None,
    gateway: str | None,
    config: Path | None,
    timeout: float,
    output: str,
) -> None:
    """Run MODEL once on the inputs given and print its outputs."""
    address = load_settings(config, gateway_address=gateway).gateway_address
    with InferenceClient(address, timeout=timeout) as client:
        info = client.metadata(model, model_version)
        inputs = prepare(info, {**_from_file(input_file), **given})
        outputs = client.infer(model, inputs, version=model_version)
    rows = [(name, datatype, array) for name, (datatype, array) in outputs.items()]
    emit(rows, output, OUTPUT_COLUMNS, as_json=_output_json)
