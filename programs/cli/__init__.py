"""The ``astra`` command line: ``astra up`` runs AstraRay on this machine.

:data:`COMPONENTS` is what ``astra up`` starts, in order; each component receives the
shared :class:`LocalRuntime` (an :class:`astra.runtime.Runtime`).
"""

from programs.cli._main import main
from programs.cli._up import COMPONENTS, LocalRuntime, run_components

__all__ = ["COMPONENTS", "LocalRuntime", "main", "run_components"]
