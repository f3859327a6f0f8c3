"""Simulated nodes for scale: many lightweight agents in one process, on the same gRPC
API as real agents (``astra sim nodes --count N``, the click group :data:`sim`), for
tests and benchmarks."""

from programs.sim._cli import sim
from programs.sim._fleet import SIM_ADDRESS, FleetStats, SimFleet

__all__ = ["SIM_ADDRESS", "FleetStats", "SimFleet", "sim"]
