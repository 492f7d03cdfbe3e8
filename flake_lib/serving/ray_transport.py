"""Workers as Ray actors on edge nodes, and the transport that talks to them (docs/DESIGN.md §5).

:class:`RayTransport` has the interface of :class:`~.transport.ProcessTransport` (``start / send /
receive / pause / resume / kill / restart / is_alive / close``, ``placement``, ``input_shapes``), so
the unchanged :class:`~.frontend.Frontend` (:func:`~.frontend.serve`) runs over it. Plain Ray actors,
no Ray Serve:

- **Workers.** Each model instance is a :class:`ModelActor` holding one compiled OpenVINO model
  (:class:`flake_lib.runtime.CompiledModel`). Its calls run one at a time in the order the frontend
  sent them (a synchronous actor serves one submitter's calls in submission order), each served by
  :func:`~.transport.serve_one` exactly as a worker process serves its inbox: sleep the injected
  delay, run the model, pad to ``pad_to_s`` (device emulation).
- **Placement.** ``placement={worker: resource}`` puts a worker on the node started with that custom
  resource (``ray start --resources '{"edge1": 1}'``): the actor asks for a sliver (``share``) of it,
  so one node holds many workers. A worker without an entry goes wherever Ray puts it.
- **Faults.** A worker reports its process id and node; one :class:`FaultAgent` actor per node (pinned
  there by node affinity) sends SIGSTOP / SIGCONT / SIGKILL to the local workers it was told about.
- **Deaths** are learnt only from Ray's own errors: every worker always has one call pending in a
  concurrency group of its own (:meth:`ModelActor.watch`, which never returns), so a dead actor fails
  that call with :class:`ray.exceptions.RayActorError` even when it holds no request, and everything
  pending there fails with it. :meth:`RayTransport.receive` reports the first such error as
  ``WorkerEvent(worker, "exit")``; :meth:`~RayTransport.restart` creates a new actor and
  ``WorkerEvent(worker, "ready")`` follows when its model is loaded. :func:`measure_detection` times
  the detection after a SIGKILL.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import signal
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayError, RayTaskError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from . import pinning
from .transport import Response, WorkerEvent, WorkerSpec, serve_one, wait_until_ready

try:  # an actor that is unreachable but not known dead (newer Ray); a death for the frontend all the same
    from ray.exceptions import ActorUnavailableError
except ImportError:  # pragma: no cover - older Ray
    ActorUnavailableError = RayActorError

WATCH_GROUP = "watch"  #: the concurrency group of the call that is always pending on a worker


@ray.remote(num_cpus=0, max_restarts=0, max_task_retries=0, concurrency_groups={WATCH_GROUP: 1})
class ModelActor:
    """One model instance. ``files``: the IR's ``.xml`` and ``.bin`` contents when the model is shipped
    from the frontend (no shared folder needed on the node); else ``spec.model_path`` is read there."""

    def __init__(self, spec: WorkerSpec, files: dict[str, bytes] | None = None):
        from ..runtime import CompiledModel

        self.spec, self.cpus = spec, pinning.pin(spec.cpus)
        if files:
            with tempfile.TemporaryDirectory(prefix="flake-model-") as folder:
                for name, content in files.items():
                    Path(folder, name).write_bytes(content)
                self.model = CompiledModel(str(Path(folder, "model.xml")), spec.device, spec.threads)
        else:
            self.model = CompiledModel(spec.model_path, spec.device, spec.threads)

    def hello(self) -> dict:
        """Where this worker runs, answered once its model is loaded."""
        return {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id(), "host": socket.gethostname(),
                "cpus": self.cpus, "input_shape": tuple(self.model.input_shape)}

    def infer(self, request_id: int, payload, delay_s: float) -> Response:
        return serve_one(self.spec, self.model, request_id, payload, delay_s)

    @ray.method(concurrency_group=WATCH_GROUP)
    def watch(self) -> None:
        """Never returns: while the actor lives this call is pending, and its death fails it."""
        threading.Event().wait()


@ray.remote(num_cpus=0, max_restarts=0, max_task_retries=0)
class FaultAgent:
    """Signals the worker processes of its node; only process ids it was told about (:meth:`allow`)."""

    def __init__(self):
        self.allowed: set[int] = set()

    def node(self) -> str:
        return ray.get_runtime_context().get_node_id()

    def allow(self, pid: int) -> None:
        self.allowed.add(int(pid))

    def send_signal(self, pid: int, signum: int) -> bool:
        """Send ``signum`` to ``pid``; False when that process is gone (or was never a worker here)."""
        if int(pid) not in self.allowed:
            return False
        try:
            os.kill(int(pid), int(signum))
        except ProcessLookupError:
            self.allowed.discard(int(pid))
            return False
        if signum == signal.SIGKILL:
            self.allowed.discard(int(pid))  # its number may be given to another process later
        return True


class RayTransport:
    """Workers as Ray actors, each placed by the custom resource ``placement[worker]`` names.

    ``address``: the cluster to join when this process has not called ``ray.init`` itself (``None``:
    ``RAY_ADDRESS``, else a local one-node Ray, which listens on the machine's interfaces like any Ray;
    a connection made here is closed by :meth:`close`);
    ``share``: how much of its node's resource one worker takes; ``ship_models``: send each IR's
    files with the actor instead of reading ``model_path`` on the node; ``runtime_env``: Ray's, for
    the actors (e.g. ``{"py_modules": [flake_lib]}`` where the nodes do not have the package).
    ``placement[worker]`` is each worker's CPU set on its node (as :class:`~.transport.ProcessTransport`),
    ``nodes[worker]`` its Ray node id, ``pids[worker]`` its process id. A :class:`~.transport.Transport`.
    """

    clock = staticmethod(time.monotonic)

    def __init__(self, placement: Mapping[str, str] | None = None, *, address: str | None = None,
                 share: float = 0.001, ship_models: bool = False, runtime_env: dict | None = None,
                 start_timeout_s: float = 120.0, signal_timeout_s: float = 10.0):
        if not 0 < share <= 1:
            raise ValueError(f"share must be in (0, 1], got {share}")
        self.resources = dict(placement or {})
        self.address, self.share, self.ship_models, self.runtime_env = address, share, ship_models, runtime_env
        self.start_timeout_s, self.signal_timeout_s = start_timeout_s, signal_timeout_s
        self.specs: dict[str, WorkerSpec] = {}
        self.actors: dict = {}  # worker -> handle of its current actor
        self.generation: collections.Counter = collections.Counter()  # bumped with every new actor
        self.pending: dict = {}  # ObjectRef -> (worker, generation, kind, request id)
        self.ready: set[str] = set()
        self.dead: set[str] = set()  # death reported, not restarted yet
        self.errors: dict[str, str] = {}  # the Ray error that ended each worker last
        self.input_shapes: dict[str, tuple] = {}
        self.placement: dict[str, tuple[int, ...]] = {}
        self.nodes: dict[str, str] = {}
        self.pids: dict[str, int] = {}
        self.hosts: dict[str, str] = {}
        self.agents: dict = {}  # node id -> FaultAgent handle
        self.events: collections.deque = collections.deque()
        self._files: dict[str, ray.ObjectRef] = {}  # model path -> its shipped files
        self._connected_here = False
        atexit.register(self.close)

    # -- starting
    def _connect(self) -> None:
        """Join ``address`` (or ``RAY_ADDRESS``); with neither, start a one-node Ray without its dashboard."""
        if not ray.is_initialized():
            local = not (self.address or os.environ.get("RAY_ADDRESS"))
            ray.init(address=self.address, log_to_driver=False, logging_level=logging.WARNING,
                     **({"include_dashboard": False} if local else {}))
            self._connected_here = True

    def _model_files(self, path: str):
        if path not in self._files:
            xml = Path(path)
            files = {"model.xml": xml.read_bytes(), "model.bin": xml.with_suffix(".bin").read_bytes()}
            self._files[path] = ray.put(files)
        return self._files[path]

    def _spawn(self, spec: WorkerSpec) -> None:
        w = spec.name
        options = {}
        if self.resources.get(w):
            options["resources"] = {self.resources[w]: self.share}
        if self.runtime_env is not None:
            options["runtime_env"] = self.runtime_env
        files = self._model_files(spec.model_path) if self.ship_models else None
        actor = ModelActor.options(**options).remote(spec, files)
        self.specs[w], self.actors[w] = spec, actor
        self.generation[w] += 1
        self.ready.discard(w)
        self.dead.discard(w)
        self._track(actor.hello.remote(), w, "hello")
        self._track(actor.watch.remote(), w, "watch")

    def _track(self, ref, worker: str, kind: str, request_id: int | None = None) -> None:
        self.pending[ref] = (worker, self.generation[worker], kind, request_id)

    def start(self, specs: Sequence[WorkerSpec]) -> None:
        """Create the actors and wait until every one has loaded its model, and their nodes' fault
        agents are up. Raises ValueError when no node has a resource ``placement`` names."""
        self._connect()
        wanted = {self.resources[s.name] for s in specs if self.resources.get(s.name)}
        missing = wanted - set(ray.cluster_resources())
        if missing:
            raise ValueError(f"no node of the Ray cluster has the resource(s) {sorted(missing)}: start one with "
                             f"ray start --address <head> --resources '{{\"{sorted(missing)[0]}\": 1}}'")
        for spec in specs:
            self._spawn(spec)
        deadline = time.monotonic() + self.start_timeout_s
        names = {spec.name for spec in specs}
        wait_until_ready(self, names, deadline, why_exit=lambda worker: self.errors.get(worker, ""),
                         why_late=lambda late: f"within {self.start_timeout_s} s; is a node with their resource "
                                               f"up? {ray.available_resources()}")
        agents = {node: self.agents[node] for node in {self.nodes[n] for n in names}}
        where = ray.get([agent.node.remote() for agent in agents.values()],
                        timeout=max(deadline - time.monotonic(), 1.0))
        if where != list(agents):
            raise RuntimeError(f"fault agents placed on the wrong nodes: {where} instead of {list(agents)}")

    def _agent(self, node: str):
        if node not in self.agents:
            strategy = NodeAffinitySchedulingStrategy(node_id=node, soft=False)
            self.agents[node] = FaultAgent.options(scheduling_strategy=strategy).remote()
        return self.agents[node]

    def restart(self, worker: str) -> None:
        """Create ``worker``'s actor again (a running one is killed first, one still starting is left
        to start); returns at once, a ``WorkerEvent(worker, "ready")`` follows from :meth:`receive`."""
        if worker in self.actors and worker not in self.dead:
            if worker not in self.ready:
                return
            ray.kill(self.actors[worker], no_restart=True)
        self._forget(worker)
        self._spawn(self.specs[worker])

    # -- requests and events
    def send(self, worker: str, request_id: int, payload, delay_s: float = 0.0) -> None:
        """Submit a request to ``worker``'s actor; never blocks (a request to a dead worker is lost,
        and its death is reported by :meth:`receive`)."""
        if worker not in self.actors or worker in self.dead:
            return
        self._track(self.actors[worker].infer.remote(request_id, payload, float(delay_s)), worker, "call",
                    request_id)

    def receive(self, timeout: float) -> Response | WorkerEvent | None:
        """The next response or worker event, waiting at most ``timeout`` seconds."""
        end = time.monotonic() + max(timeout, 0.0)
        while not self.events:
            remaining = end - time.monotonic()
            refs = list(self.pending)
            if not refs:
                if remaining > 0:
                    time.sleep(remaining)
                break
            ready, _ = ray.wait(refs, num_returns=1, timeout=max(remaining, 0.0))
            if ready:  # and whatever else is in, in the order it was sent
                ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
                for ref in ready:
                    self._take(ref)
            if remaining <= 0:
                break
        return self.events.popleft() if self.events else None

    def _take(self, ref) -> None:
        entry = self.pending.pop(ref, None)
        if entry is None:
            return
        worker, generation, kind, request_id = entry
        if generation != self.generation[worker] or worker in self.dead:
            return  # an actor replaced or reported dead since
        try:
            value = ray.get(ref, timeout=0)
        except (RayActorError, ActorUnavailableError) as exc:
            self._died(worker, exc)
            return
        except RayTaskError as exc:  # the call itself raised (not the model: serve_one answers its errors)
            if kind == "call":
                now = time.monotonic()
                self.events.append(Response(worker, request_id, None, f"{type(exc).__name__}: {exc}", now, now))
            else:
                self._died(worker, exc)
            return
        except (GetTimeoutError, RayError) as exc:  # e.g. the object was lost with its node
            self._died(worker, exc)
            return
        if kind == "call":
            self.events.append(value)
        elif kind == "hello":
            self.pids[worker], self.nodes[worker], self.hosts[worker] = value["pid"], value["node"], value["host"]
            self.placement[worker], self.input_shapes[worker] = tuple(value["cpus"]), tuple(value["input_shape"])
            self._agent(value["node"]).allow.remote(value["pid"])
            self.ready.add(worker)
            self.events.append(WorkerEvent(worker, "ready"))

    def _died(self, worker: str, exc: Exception) -> None:
        """Report a worker's death once, and forget everything pending there."""
        self.errors[worker] = f"{type(exc).__name__}: {exc}"
        self._forget(worker)
        self.dead.add(worker)
        self.events.append(WorkerEvent(worker, "exit"))

    def _forget(self, worker: str) -> None:
        self.ready.discard(worker)
        for ref in [r for r, entry in self.pending.items() if entry[0] == worker]:
            del self.pending[ref]

    # -- faults
    def _signal(self, worker: str, signum: int) -> bool:
        """Have the fault agent of ``worker``'s node signal its process; waits for the agent's answer
        (the signal has been sent when this returns). False when the worker is not known alive, its
        process is gone, or the agent does not answer."""
        if not self.is_alive(worker):
            return False
        try:
            return bool(ray.get(self._agent(self.nodes[worker]).send_signal.remote(self.pids[worker], int(signum)),
                                timeout=self.signal_timeout_s))
        except (RayActorError, GetTimeoutError):  # the agent died (its node?): a new one for the next fault
            self.agents.pop(self.nodes[worker], None)
            return False

    def pid(self, worker: str) -> int:
        return self.pids[worker]

    def pause(self, worker: str) -> None:
        self._signal(worker, signal.SIGSTOP)

    def resume(self, worker: str) -> None:
        self._signal(worker, signal.SIGCONT)

    def kill(self, worker: str) -> None:
        """SIGKILL through the node's fault agent; the death is reported by :meth:`receive` once Ray
        fails the calls pending there, as for any death."""
        self._signal(worker, signal.SIGKILL)

    def reset(self) -> bool:
        """Actors cannot be made idle at once: the caller waits for them (:class:`~.transport.Transport`)."""
        return False

    def is_alive(self, worker: str) -> bool:
        """The worker's actor has loaded its model and no Ray error has reported it dead."""
        return worker in self.ready and worker not in self.dead

    def close(self, wait_s: float = 10.0) -> None:
        """Kill every actor of this transport (workers and fault agents) and wait up to ``wait_s`` for
        Ray to report the workers dead; a connection made by :meth:`start` is closed too."""
        if not ray.is_initialized():
            self.actors.clear()
            return
        watches = [ref for ref, entry in self.pending.items() if entry[2] == "watch"]
        for handle in [*self.actors.values(), *self.agents.values()]:
            try:
                ray.kill(handle, no_restart=True)
            except (RayError, ValueError):
                pass
        if watches:
            ray.wait(watches, num_returns=len(watches), timeout=wait_s)
        self.actors.clear()
        self.agents.clear()
        self.pending.clear()
        self.ready.clear()
        self.events.clear()
        self._files.clear()
        if self._connected_here:
            ray.shutdown()
            self._connected_here = False


def measure_detection(transport: RayTransport, worker: str, kills: int = 5, timeout_s: float = 60.0) -> list[float]:
    """Seconds from a SIGKILL of ``worker`` (the fault agent has sent it) to the ``WorkerEvent(worker,
    "exit")`` that Ray's error yields, for ``kills`` kills of an idle worker, restarted after each;
    other events and responses are dropped meanwhile. :func:`statistics.median` of them is the
    transport's detection time."""
    times = []
    for _ in range(kills):
        if not transport.is_alive(worker):  # dead (restarted here) or starting
            transport.restart(worker)
            _wait_for(transport, worker, "ready", timeout_s)
        transport.kill(worker)
        killed = time.monotonic()
        _wait_for(transport, worker, "exit", timeout_s)
        times.append(time.monotonic() - killed)
        transport.restart(worker)
    _wait_for(transport, worker, "ready", timeout_s)
    return times


def _wait_for(transport, worker: str, kind: str, timeout_s: float) -> None:
    end = time.monotonic() + timeout_s
    while True:
        event = transport.receive(max(end - time.monotonic(), 0.0))
        if isinstance(event, WorkerEvent) and (event.worker, event.kind) == (worker, kind):
            return
        if time.monotonic() > end:
            raise TimeoutError(f"no {kind!r} event of {worker} within {timeout_s} s")


def detection_summary(times: Sequence[float]) -> dict:
    """Median, min and max of detection times, in milliseconds."""
    return {"median_ms": 1000 * statistics.median(times), "min_ms": 1000 * min(times),
            "max_ms": 1000 * max(times), "kills": len(times)}
