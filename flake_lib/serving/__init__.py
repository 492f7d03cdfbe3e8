"""The edge serving system: worker processes, a frontend with one policy per method, an open-loop
load and seeded faults.

- :mod:`.transport`: :class:`Transport` (the interface every transport implements: ``start / send /
  receive / pause / resume / kill / restart / is_alive / reset / close``, a clock, each worker's CPU
  set), :class:`WorkerSpec` (one model instance: device, CPU set, device emulation) and
  :class:`ProcessTransport` (one inbox and one response pipe per worker process, a death seen as the
  end of its pipe).
- :mod:`.simulation`: :class:`~.simulation.SimulatedTransport`, the same interface in virtual time.
- :mod:`.pinning`: which CPUs the frontend and the workers run on.
- :mod:`.ray_transport`: :class:`~.ray_transport.RayTransport`, the same interface over Ray actors on
  edge nodes (placed by a custom resource per node, faults through a fault agent per node, a death
  seen as Ray's error on the calls pending there); imported on first use (``serving.RayTransport``),
  so that Ray is needed only by who uses it.
- :mod:`.frontend`: :func:`serve` and :class:`Frontend` (coding groups, timing bound or eager
  decoding, request deadlines, dead-worker detection and restart, the recovery budget) with the
  per-method policies of :mod:`.policies` (one class per method of :mod:`flake_lib.methods`).
- :mod:`.load`: :func:`poisson_arrivals`.
- :mod:`.faults`: :class:`FaultSchedule` (stragglers, SIGSTOP windows, SIGKILL).

Latency of a query = time its answer is ready − its *intended* send time (no coordinated
omission). Every query ends with exactly one outcome of :data:`OUTCOMES`: ``original``,
``reconstructed``, ``replica``, ``student``, ``hedge``, ``error`` (malformed query) or ``failed``
(nothing answered it before the drain bound; never counted as answered).
"""

from .faults import FaultSchedule
from .frontend import OUTCOMES, Deployment, Frontend, RecoveryBudget, Request, serve
from .load import poisson_arrivals
from .transport import ProcessTransport, Response, Transport, WorkerEvent, WorkerSpec

__all__ = ["OUTCOMES", "Deployment", "FaultSchedule", "Frontend", "ProcessTransport", "RecoveryBudget", "Request",
           "Response", "Transport", "WorkerEvent", "WorkerSpec", "poisson_arrivals", "serve"]


def __getattr__(name: str):
    if name == "RayTransport":  # Ray is imported only here
        from .ray_transport import RayTransport

        return RayTransport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
