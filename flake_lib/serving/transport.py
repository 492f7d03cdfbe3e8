"""The transport interface (:class:`Transport`), and workers as OS processes behind it.

:class:`Transport` is what the frontend and the latency bench need of the thing that runs model
instances: start them, send a request, receive answers and events, pause, resume, kill and restart an
instance, and a clock. Three transports implement it: :class:`ProcessTransport` (worker processes on
this machine, below), :class:`~.ray_transport.RayTransport` (Ray actors on edge nodes) and
:class:`~.simulation.SimulatedTransport` (the discrete-event model, in virtual time).

Each worker (:func:`_worker_main`) holds one compiled model (:mod:`flake_lib.runtime`) and serves its
inbox first-come-first-served. Per request it sleeps the injected delay (a straggler occupies its
instance), runs the model, and, with ``pad_to_s > 0`` (**device emulation**), sleeps until
``pad_to_s`` after the inference started: its service time is ``max(compute, pad_to_s)`` while the
host CPU stays free, as on an accelerator busy with the request. The :class:`Response` carries both
times and ``started``/``finished``, so that a caller can add up each worker's busy time.

:class:`ProcessTransport` gives every worker two pipes of its own: an inbox that the frontend writes
without ever blocking (the bytes a stopped worker cannot take wait in a buffer of the frontend) and a
response pipe. There is no queue thread and no lock shared between workers, so a worker stopped by
SIGSTOP blocks nobody, and shutting down after a kill never hangs on a full inbox. A worker that dies
(crash, outside kill) is seen as the end of its response pipe: :meth:`ProcessTransport.receive`
reports it as a ``WorkerEvent(worker, "exit")``; :meth:`~ProcessTransport.restart` starts it again and
a ``WorkerEvent(worker, "ready")`` follows when its model is loaded.
"""

from __future__ import annotations

import atexit
import collections
import multiprocessing as mp
import os
import pickle
import select
import signal
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from . import pinning

_HEADER = struct.Struct("!Q")  # length of one pickled inbox message


@dataclass(frozen=True)
class WorkerSpec:
    """One model instance: ``name`` (e.g. ``F0``, ``P0``), OpenVINO IR path, device, threads;
    ``cpus``: the CPU set the worker pins itself to (``os.sched_setaffinity``, where the machine
    allows); ``pad_to_s``: device emulation, the least service time of one inference (0: native)."""

    name: str
    model_path: str
    device: str = "CPU"
    threads: int = 1
    cpus: tuple[int, ...] | None = None
    pad_to_s: float = 0.0


@dataclass
class Response:
    worker: str
    request_id: int
    output: np.ndarray | None
    error: str | None
    started: float  #: ``time.monotonic()`` when the worker took the request (busy from here)
    finished: float  #: when it sent the answer: busy time = ``finished − started``
    compute_s: float = 0.0  #: the inference itself (host compute)
    service_s: float = 0.0  #: inference plus device-emulation padding, ``max(compute_s, pad_to_s)``


@dataclass(frozen=True)
class WorkerEvent:
    """``kind`` is ``"exit"`` (the worker died: its response pipe ended) or ``"ready"`` (started)."""

    worker: str
    kind: str


@runtime_checkable
class Transport(Protocol):
    """What runs the model instances, as the frontend (:mod:`.frontend`) and the latency bench see it.

    Requests are fire-and-forget: :meth:`send` never blocks (a stopped instance's requests wait in a
    buffer), and answers come back through :meth:`receive` as :class:`Response`, deaths and (re)starts as
    :class:`WorkerEvent`. The frontend is not told what a fault did: it finds a paused instance by its
    missed deadlines and a killed one by its ``exit`` event, exactly as it would find an outside fault.
    """

    #: each worker's CPU set, where known (what results report as the placement)
    placement: dict[str, tuple[int, ...]]

    def clock(self) -> float:
        """The time (s) the frontend reads: ``time.monotonic()``, or the virtual time of a simulation."""

    def start(self, specs: Sequence[WorkerSpec]) -> None:
        """Start one instance per spec and wait until each has its model loaded."""

    def send(self, worker: str, request_id: int, payload: np.ndarray, delay_s: float = 0.0) -> None:
        """Queue one request on ``worker`` (it sleeps ``delay_s`` first: an injected straggler)."""

    def receive(self, timeout: float) -> Response | WorkerEvent | None:
        """The next answer or event, waiting at most ``timeout`` seconds (``None``: nothing came)."""

    def pause(self, worker: str) -> None:
        """Stop ``worker`` (SIGSTOP): it keeps its queue and answers nothing until resumed."""

    def resume(self, worker: str) -> None:
        """Let a paused ``worker`` go on (SIGCONT)."""

    def kill(self, worker: str) -> None:
        """Kill ``worker`` without notice (SIGKILL); its ``exit`` event follows."""

    def restart(self, worker: str) -> None:
        """Start a dead ``worker`` again (a ``ready`` event follows); nothing for a live one."""

    def is_alive(self, worker: str) -> bool:
        """Is ``worker`` running (started, not dead)?"""

    def reset(self) -> bool:
        """Make every instance alive, idle and empty at once, if this transport can (a simulation:
        returns True); a real one cannot and returns False, and the caller waits for its instances
        (the bench's barrier)."""

    def close(self) -> None:
        """Stop every instance; nothing outlives this."""


def _read_exact(fd: int, n: int) -> bytes | None:
    chunks, left = [], n
    while left:
        chunk = os.read(fd, left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def serve_one(spec: WorkerSpec, model, request_id: int, payload, delay_s: float) -> Response:
    """One request as a worker serves it: sleep the injected delay, run the model, pad to
    ``spec.pad_to_s`` (device emulation); a malformed query is answered with an error, not raised.
    Shared by the worker processes here and the Ray actors of :mod:`.ray_transport`."""
    started = time.monotonic()
    if delay_s > 0:
        time.sleep(delay_s)
    begin = time.monotonic()
    try:
        output, error = model(payload)[0], None
    except Exception as exc:  # noqa: BLE001 - a malformed query must not stop the worker
        output, error = None, f"{type(exc).__name__}: {exc}"
    compute = time.monotonic() - begin
    if spec.pad_to_s > 0:
        remaining = begin + spec.pad_to_s - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)
    finished = time.monotonic()
    return Response(spec.name, request_id, output, error, started, finished, compute, finished - begin)


def _worker_main(spec: WorkerSpec, inbox, outbox) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the frontend stops its workers
    placement = pinning.pin(spec.cpus)
    from ..runtime import CompiledModel

    model = CompiledModel(spec.model_path, spec.device, spec.threads)
    fd = inbox.fileno()
    try:
        outbox.send(("ready", spec.name, model.input_shape, placement))
        while True:
            header = _read_exact(fd, _HEADER.size)
            if header is None:  # the frontend closed the inbox
                return
            request_id, payload, delay_s = pickle.loads(_read_exact(fd, _HEADER.unpack(header)[0]))
            outbox.send(serve_one(spec, model, request_id, payload, delay_s))
    except (BrokenPipeError, EOFError, OSError):
        return  # the frontend went away


def wait_until_ready(transport, names: set[str], deadline: float, why_exit=lambda worker: "",
                     why_late=lambda late: "") -> None:
    """Take ``transport``'s events until every worker of ``names`` is ready (``transport.ready``); events
    of other workers are put back, in order, for the caller. A worker of ``names`` that exits, or the
    ``deadline`` (``time.monotonic()``) passing, closes the transport and raises RuntimeError (with
    ``why_exit(worker)`` or ``why_late(workers not ready)``)."""
    kept = []
    while not names <= transport.ready:
        event = transport.receive(0.5)
        if isinstance(event, WorkerEvent) and event.worker in names:
            if event.kind == "exit":
                why = why_exit(event.worker)
                transport.close()
                raise RuntimeError(f"worker {event.worker} did not start" + (f": {why}" if why else ""))
        elif event is not None:
            kept.append(event)  # another worker's: left for the caller
        if time.monotonic() > deadline:
            late = sorted(names - transport.ready)
            why = why_late(late)
            transport.close()
            raise RuntimeError(f"workers {late} did not start in time" + (f" ({why})" if why else ""))
    transport.events.extendleft(reversed(kept))


class ProcessTransport:
    """Workers as spawned OS processes, each with an inbox and a response pipe of its own
    (:class:`Transport`); ``input_shapes`` holds each worker's model input shape.
    """

    clock = staticmethod(time.monotonic)

    def __init__(self, start_timeout_s: float = 120.0):
        self.context = mp.get_context("spawn")
        self.start_timeout_s = start_timeout_s
        self.specs: dict[str, WorkerSpec] = {}
        self.processes: dict[str, mp.Process] = {}
        self.inboxes = {}  # worker -> write end of its inbox (non-blocking)
        self.outgoing: dict[str, bytearray] = {}  # bytes not yet taken by the worker
        self.readers = {}  # worker -> read end of its response pipe
        self.ready: set[str] = set()
        self.input_shapes: dict[str, tuple] = {}
        self.placement: dict[str, tuple[int, ...]] = {}
        self.events: collections.deque = collections.deque()
        atexit.register(self.close)  # no worker outlives the interpreter, stopped or not

    def _spawn(self, spec: WorkerSpec) -> None:
        inbox_reader, inbox_writer = self.context.Pipe(duplex=False)
        reader, writer = self.context.Pipe(duplex=False)
        process = self.context.Process(target=_worker_main, args=(spec, inbox_reader, writer),
                                       name=f"flake-worker-{spec.name}", daemon=True)
        process.start()
        inbox_reader.close()
        writer.close()
        os.set_blocking(inbox_writer.fileno(), False)
        self.specs[spec.name], self.processes[spec.name] = spec, process
        self.inboxes[spec.name], self.outgoing[spec.name] = inbox_writer, bytearray()
        self.readers[spec.name] = reader

    def start(self, specs: list[WorkerSpec]) -> None:
        """Start the workers and wait until every one has loaded its model."""
        for spec in specs:
            self._spawn(spec)
        wait_until_ready(self, {spec.name for spec in specs}, time.monotonic() + self.start_timeout_s,
                         why_exit=lambda worker: "see its error above")

    def restart(self, worker: str) -> None:
        """Start ``worker`` again (a running one is killed first, one still starting is left to
        start); returns at once, a ``WorkerEvent(worker, "ready")`` follows from :meth:`receive`."""
        process = self.processes.get(worker)
        if process is not None and process.is_alive():
            if worker not in self.ready:
                return
            self.kill(worker)
            process.join(timeout=5)
        self._drop(worker)
        self._spawn(self.specs[worker])

    def send(self, worker: str, request_id: int, payload: np.ndarray, delay_s: float = 0.0) -> None:
        """Queue a request on ``worker``'s inbox; never blocks (a request to a dead worker is lost,
        and its death is reported by :meth:`receive`)."""
        if worker not in self.inboxes:
            return
        data = pickle.dumps((request_id, payload, float(delay_s)), protocol=pickle.HIGHEST_PROTOCOL)
        self.outgoing[worker] += _HEADER.pack(len(data)) + data
        self._flush(worker)

    def _flush(self, worker: str) -> None:
        buffer = self.outgoing[worker]
        try:
            while buffer:
                del buffer[: os.write(self.inboxes[worker].fileno(), buffer)]
        except BlockingIOError:
            pass  # the inbox pipe is full: the rest goes when the worker has read
        except OSError:
            buffer.clear()  # the worker is gone

    def receive(self, timeout: float) -> Response | WorkerEvent | None:
        """The next response or worker event, waiting at most ``timeout`` seconds."""
        end = time.monotonic() + max(timeout, 0.0)
        while not self.events:
            by_fd = {r.fileno(): w for w, r in self.readers.items()}
            writing = {self.inboxes[w].fileno(): w for w, b in self.outgoing.items() if b and w in self.inboxes}
            remaining = end - time.monotonic()
            readable, writable, _ = select.select(list(by_fd), list(writing), [], max(remaining, 0.0))
            for fd in writable:
                self._flush(writing[fd])
            for fd in readable:
                self._read(by_fd[fd])
            if remaining <= 0:
                break
        return self.events.popleft() if self.events else None

    def _read(self, worker: str) -> None:
        reader = self.readers[worker]
        try:
            while reader.poll():
                message = reader.recv()
                if isinstance(message, tuple) and message[0] == "ready":
                    _, name, shape, placement = message
                    self.input_shapes[name], self.placement[name] = shape, placement
                    self.ready.add(name)
                    self.events.append(WorkerEvent(name, "ready"))
                else:
                    self.events.append(message)
        except (EOFError, OSError):  # the worker died
            self._drop(worker)
            self.events.append(WorkerEvent(worker, "exit"))

    def _drop(self, worker: str) -> None:
        """Forget a dead worker's pipes (the process object stays, for ``is_alive`` and ``close``)."""
        self.ready.discard(worker)
        for pipe in (self.readers.pop(worker, None), self.inboxes.pop(worker, None)):
            if pipe is not None:
                pipe.close()
        self.outgoing.pop(worker, None)

    def pid(self, worker: str) -> int:
        return self.processes[worker].pid

    def pause(self, worker: str) -> None:
        os.kill(self.processes[worker].pid, signal.SIGSTOP)

    def resume(self, worker: str) -> None:
        os.kill(self.processes[worker].pid, signal.SIGCONT)

    def kill(self, worker: str) -> None:
        """SIGKILL; returns at once (the death is reported by :meth:`receive`, as for any death)."""
        try:
            os.kill(self.processes[worker].pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def reset(self) -> bool:
        """Real processes cannot be made idle at once: the caller waits for them (:class:`Transport`)."""
        return False

    def is_alive(self, worker: str) -> bool:
        """The worker's process runs and has loaded its model."""
        process = self.processes.get(worker)
        return process is not None and worker in self.ready and process.is_alive()

    def close(self) -> None:
        """Stop every worker (SIGKILL: a worker holds nothing that needs a clean exit) and forget its
        pipes. Nothing here waits on a pipe, so a full inbox cannot hang the exit."""
        for process in self.processes.values():
            if process.is_alive():
                try:
                    os.kill(process.pid, signal.SIGKILL)
                except OSError:
                    pass
        for process in self.processes.values():
            process.join(timeout=10)
        for worker in list(self.processes):
            self._drop(worker)
        self.processes.clear()
        self.events.clear()
