"""Traffic simulation: replay recorded requests through a policy's compiled plan.

``policyrouter simulate PATH --traffic FILE.jsonl [--baseline OTHER]`` reports cost by
task, tenant and model, when each budget's soft limit and hard limit are reached,
degrade, fallback and rejection rates, and with a baseline a side-by-side diff.
"""

from __future__ import annotations

from policyrouter.simulate.engine import FaultModel, Outage, SimulationReport, Simulator, simulate
from policyrouter.simulate.traffic import (
    TrafficError,
    TrafficRecord,
    export_ledger,
    generate_traffic,
    read_traffic,
    write_traffic,
)

__all__ = [
    "FaultModel",
    "Outage",
    "SimulationReport",
    "Simulator",
    "TrafficError",
    "TrafficRecord",
    "export_ledger",
    "generate_traffic",
    "read_traffic",
    "simulate",
    "write_traffic",
]
