"""The control-plane gRPC services: resource, app, scheduler and node.

Each runs inside ``astra up`` (its component) or on its own (``astra serve SERVICE``).
"""
