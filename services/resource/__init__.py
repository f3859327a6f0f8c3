"""Resource service: node registry, heartbeats, failure detection, pre-aggregated cluster watch."""
