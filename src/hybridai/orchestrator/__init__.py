"""Orchestration: pure decision logic over plain-data snapshots. No I/O, no clocks, no threads.

The live edge router and the simulator call the same functions, so what is tested here is what
runs in the field.
"""

from hybridai.orchestrator.breaker import Breaker
from hybridai.orchestrator.estimators import Ewma
from hybridai.orchestrator.placement import Decision, Hints, Placement, Reason, Snapshot, decide

__all__ = ["Breaker", "Decision", "Ewma", "Hints", "Placement", "Reason", "Snapshot", "decide"]
