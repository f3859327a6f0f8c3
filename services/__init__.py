"""The control-plane gRPC services: resource, app, scheduler and node.

Each runs inside ``astra up`` or on its own (``python -m services.X``, through
:func:`serve_standalone`).
"""

from services._standalone import Standalone, serve_standalone

__all__ = ["Standalone", "serve_standalone"]
