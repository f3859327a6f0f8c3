"""The ``astra`` command line: ``astra up`` runs AstraRay on this machine.

:data:`COMPONENTS` is what ``astra up`` starts, in order; a :data:`Component` receives
the shared :class:`Runtime`. :func:`settings_options` gives any click command a flag per
setting and hands it the resolved :class:`astra.config.Settings`.
"""

from astra.cli._main import main
from astra.cli._options import settings_options
from astra.cli._up import COMPONENTS, Component, Runtime, run_components

__all__ = ["COMPONENTS", "Component", "Runtime", "main", "run_components", "settings_options"]
