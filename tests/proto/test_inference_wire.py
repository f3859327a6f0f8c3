"""Our Open Inference Protocol stubs put the same fields on the wire as tritonclient's.

tritonclient registers the same ``inference.*`` protobuf symbols as our stubs, so it
runs in a subprocess (one process cannot import both).
"""

from __future__ import annotations

import json
import subprocess
import sys

from astra._gen.inference import grpc_predict_v2_pb2 as ours

_DUMP = """
import json
from tritonclient.grpc import service_pb2 as s
def fields(d):
    out = {d.full_name: {f.name: [f.number, f.type, f.is_repeated] for f in d.fields}}
    for n in d.nested_types:
        out.update(fields(n))
    return out
out = {}
for name in NAMES:
    out.update(fields(s.DESCRIPTOR.message_types_by_name[name]))
methods = [m.name for m in s.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods]
print(json.dumps({"messages": out, "methods": methods}))
"""


def _fields(descriptor) -> dict[str, dict[str, list]]:  # type: ignore[no-untyped-def]
    out = {
        descriptor.full_name: {f.name: [f.number, f.type, f.is_repeated] for f in descriptor.fields}
    }
    for nested in descriptor.nested_types:
        out.update(_fields(nested))
    return out


def test_fields_match_tritonclient() -> None:
    names = list(ours.DESCRIPTOR.message_types_by_name)
    script = f"NAMES = {names!r}\n{_DUMP}"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    theirs = json.loads(result.stdout)
    mine: dict[str, dict[str, list]] = {}
    for name in names:
        mine.update(_fields(ours.DESCRIPTOR.message_types_by_name[name]))
    assert mine == {name: theirs["messages"][name] for name in mine}
    our_methods = [m.name for m in ours.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods]
    assert set(our_methods) <= set(theirs["methods"])
    assert {"ModelInfer", "ModelMetadata", "ServerLive"} <= set(our_methods)
