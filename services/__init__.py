"""The control-plane gRPC services: resource, app, scheduler and node."""
