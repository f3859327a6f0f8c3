"""Small ONNX models built locally with ``onnx.helper``: nothing is downloaded.

:func:`write_demo_model` writes a perceptron and returns its path, its sha256 (what an
app's ``Model.sha256`` names) and a numpy reference of what it computes. Tests,
benchmarks and ``astra up``'s demo app use it. Building needs the ``onnx`` package.
"""

from astra.models._demo import DemoModel, build_demo_model, write_demo_model

__all__ = ["DemoModel", "build_demo_model", "write_demo_model"]
