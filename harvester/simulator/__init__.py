"""A local stand-in for the EMR Serverless Spark API, for tests, demos and benchmarks.

`model` holds the simulated service (pure data, time, quirks, fault decisions), `server`
serves it over HTTP with the real paths, JSON shapes and ACS3 signature checks, and `cli`
is the `harvester simulate` command.
"""

from __future__ import annotations

from harvester.simulator.model import (
    ABSENT,
    FAULT_KINDS,
    FaultConfig,
    FaultKind,
    LivySession,
    ServiceError,
    SimulatedService,
    Stats,
)
from harvester.simulator.server import (
    DEMO_ACCESS_KEY_ID,
    DEMO_ACCESS_KEY_SECRET,
    build_app,
    serve,
)

__all__ = [
    "ABSENT",
    "DEMO_ACCESS_KEY_ID",
    "DEMO_ACCESS_KEY_SECRET",
    "FAULT_KINDS",
    "FaultConfig",
    "FaultKind",
    "LivySession",
    "ServiceError",
    "SimulatedService",
    "Stats",
    "build_app",
    "serve",
]
