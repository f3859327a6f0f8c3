"""Node service: hands replica assignments to node agents and collects replica status."""
