"""``tidings simulate``: the daemon on a simulated clock, over a copy of the database."""

from engine.simulation.report import SeasonReport
from engine.simulation.run import SimulationOptions, simulate

__all__ = ["SeasonReport", "SimulationOptions", "simulate"]
