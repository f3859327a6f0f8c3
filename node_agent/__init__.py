"""The node agent: registers its machine, heartbeats, runs Ray and model replicas."""
