"""The inference gateway: an Open Inference Protocol front that routes each ModelInfer
to a ready replica of its model version with an adaptive smooth weighted round robin.

- :class:`Gateway`: the server; :func:`gateway_command` runs it (``astra gateway``,
  ``python -m gateway``), :func:`gateway_component` in ``astra up``.
- :class:`BrokerOptions`: the async broker for long requests
  (``astra.v1.AsyncInferenceService`` over Redis, :mod:`gateway._broker`).
- :class:`WeightPolicy`: how endpoint weights adapt, ejection and probing; the formula
  and its defaults are in :mod:`gateway._weights`.
- :class:`Picker`, :class:`Router`, :func:`model_of`: the routing core, in C++
  (``gateway._core``) unless ``ASTRA_PURE_PYTHON=1`` selects the pure-Python twin; the
  algorithm and its smoothness bound are in :mod:`gateway._picker`.
- :class:`RetryRules`: which failures are retried and which count against a replica,
  one table for both fronts; :data:`REFUSED`, :data:`IDEMPOTENT`: the metadata of the
  default rules (:mod:`gateway._rules`).
"""

from gateway._broker import BrokerOptions
from gateway._cli import gateway_command
from gateway._component import gateway_component
from gateway._gateway import Gateway
from gateway._native import (
    IMPLEMENTATION,
    MAX_WEIGHT,
    Picker,
    Router,
    model_of,
    native_core,
    python_core,
)
from gateway._rules import IDEMPOTENT, REFUSED, RetryRules
from gateway._weights import WeightPolicy

__all__ = [
    "IDEMPOTENT",
    "IMPLEMENTATION",
    "MAX_WEIGHT",
    "REFUSED",
    "BrokerOptions",
    "Gateway",
    "Picker",
    "RetryRules",
    "Router",
    "WeightPolicy",
    "gateway_command",
    "gateway_component",
    "model_of",
    "native_core",
    "python_core",
]
