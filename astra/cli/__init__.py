"""The ``astra`` command line: ``astra up`` runs AstraRay on this machine.

:data:`COMPONENTS` is what ``astra up`` starts, in order; a :data:`Component` receives
the shared :class:`Runtime`.
"""

from astra.cli._main import main
from astra.cli._up import COMPONENTS, Component, Runtime, run_components

__all__ = ["COMPONENTS", "Component", "Runtime", "main", "run_components"]
