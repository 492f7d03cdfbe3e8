"""A Ray cluster of several nodes on this machine, laid out as on real edge nodes (docs/DESIGN.md §5).

:class:`LocalCluster` starts a head (the frontend's node) and edge nodes, each a ``ray start --block``
process of its own with its own custom resource (``{"edge0": 1}``), temporary folder and a small object
store. :meth:`LocalCluster.stop` ends exactly the processes these nodes started, by process id: never
``ray stop``, which would end every Ray process of the machine.

**Not on loopback.** Ray 2.60 listens on every interface of the machine and gives each node the
machine's own address, even when told ``--node-ip-address=127.0.0.1`` (it resolves a local address to
the machine's): on a machine others can reach, a local cluster is reachable too while it runs, and Ray
has no authentication (README, "Security").
Notebooks 04 (``engine = "ray"`` without an address) and 07 and ``tests/test_ray_transport.py`` use it;
on real nodes ``ray start`` is run by hand instead (README, "Running on edge nodes with Ray").
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil

#: Ray's least object store; /dev/shm may be small.
OBJECT_STORE_BYTES = 80 * 1024**2
LOOPBACK = "127.0.0.1"  #: where free ports are looked for; Ray itself listens on every interface (see the module)


def free_ports(n: int) -> list[int]:
    """``n`` TCP ports of 127.0.0.1 free at the time of the call."""
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind((LOOPBACK, 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def running(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _signal(p: psutil.Process, signum: int) -> None:
    try:
        p.send_signal(signum)  # psutil checks that the pid is still that process
    except psutil.NoSuchProcess:
        pass


class LocalCluster:
    """A head and edge nodes on this machine under ``root`` (a new short folder in /tmp when ``None``:
    Ray's socket paths must stay under 108 bytes). ``edges``: ``{node name: custom resource}``.

    ``with LocalCluster(["edge0", "edge1"]) as cluster: ray.init(address=cluster.address, ...)``; or
    :meth:`start` and :meth:`stop`. :meth:`stop` returns the processes still running (none, normally).
    """

    def __init__(self, edges: Sequence[str] | Mapping[str, dict] = ("edge0", "edge1"), root: Path | None = None,
                 object_store_bytes: int = OBJECT_STORE_BYTES, start_timeout_s: float = 90.0):
        self.edges = dict(edges) if isinstance(edges, Mapping) else {name: {name: 1} for name in edges}
        self._own_root = root is None
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="flkray", dir="/tmp"))
        self.object_store_bytes, self.start_timeout_s = object_store_bytes, start_timeout_s
        self.starters: dict[str, subprocess.Popen] = {}
        self.seen: dict[int, psutil.Process] = {}
        self.gcs_port = free_ports(1)[0]
        self.address = f"{LOOPBACK}:{self.gcs_port}"

    # -- starting
    def start_node(self, name: str, resources: dict | None = None) -> None:
        manager, objects, agent, agent_grpc, metrics, env_agent = free_ports(6)
        command = [sys.executable, "-m", "ray.scripts.scripts", "start", "--block", "--disable-usage-stats",
                   "--num-cpus=0", "--num-gpus=0",
                   f"--object-store-memory={self.object_store_bytes}", f"--temp-dir={self.root / name}",
                   f"--node-manager-port={manager}", f"--object-manager-port={objects}",
                   f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
                   f"--metrics-export-port={metrics}", f"--runtime-env-agent-port={env_agent}"]
        if name == "head":
            command += ["--head", f"--port={self.gcs_port}", "--include-dashboard=false"]
        else:
            command += [f"--address={self.address}"]
        if resources:
            command.append(f"--resources={json.dumps(resources)}")
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        with open(self.root / f"{name}.log", "w") as log:
            self.starters[name] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=self.root,
                                                   start_new_session=True, env=env)

    def start(self) -> LocalCluster:
        """The head, then every edge node; returns once the head is up (call :meth:`wait_for_nodes`
        after ``ray.init`` to wait for the edges)."""
        self.start_node("head")
        end = time.monotonic() + self.start_timeout_s
        while not (self.root / "head" / "session_latest").exists():  # the GCS is up then
            if time.monotonic() > end or self.starters["head"].poll() is not None:
                raise RuntimeError(f"the Ray head did not start: {self.log('head')[-2000:]}")
            time.sleep(0.2)
        for name, resources in self.edges.items():
            self.start_node(name, resources)
        return self

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text() if path.is_file() else ""

    def wait_for_nodes(self, timeout_s: float | None = None) -> list[dict]:
        """Until the head and every edge node are alive in the cluster this process is connected to
        (``ray.init(address=self.address)`` first); returns ``ray.nodes()`` of the live nodes."""
        import ray

        n = 1 + len(self.edges)
        end = time.monotonic() + (timeout_s or self.start_timeout_s)
        while time.monotonic() < end:
            for name, process in self.starters.items():
                if process.poll() is not None:
                    raise RuntimeError(f"ray start of {name} ended: {self.log(name)[-2000:]}")
            nodes = [node for node in ray.nodes() if node["Alive"]]
            if len(nodes) >= n:
                return nodes
            time.sleep(0.5)
        raise TimeoutError(f"{n} Ray nodes not up within {timeout_s or self.start_timeout_s} s")

    def connect(self) -> list[dict]:
        """``ray.init`` this process to the cluster and wait for every node."""
        import logging

        import ray

        ray.init(address=self.address, log_to_driver=False, logging_level=logging.WARNING)
        return self.wait_for_nodes()

    # -- stopping
    def processes(self) -> list[psutil.Process]:
        """Every live process these nodes started: the starters, their descendants, and any process that
        names our temporary folder (and its descendants)."""
        found = {}
        for process in self.starters.values():
            try:
                found[process.pid] = psutil.Process(process.pid)
            except psutil.NoSuchProcess:
                pass
        for p in psutil.process_iter(["cmdline"]):
            if str(self.root) in " ".join(p.info["cmdline"] or ()):
                found[p.pid] = p
        for p in list(found.values()):
            try:
                found.update({c.pid: c for c in p.children(recursive=True)})
            except psutil.NoSuchProcess:
                pass
        self.seen.update(found)
        return [p for p in found.values() if running(p)]

    def track(self, pids) -> None:
        """Count these processes (e.g. the workers' actors) as ours too."""
        for pid in pids:
            try:
                self.seen[pid] = psutil.Process(pid)
            except psutil.NoSuchProcess:
                pass

    def stop(self, timeout_s: float = 30.0) -> list[psutil.Process]:
        """SIGTERM, then SIGKILL after ``timeout_s``, to exactly our processes; removes the temporary
        folder it made; returns the processes left running."""
        ours = self.processes()
        for p in ours:
            _signal(p, signal.SIGTERM)
        _, alive = psutil.wait_procs(ours, timeout=timeout_s)
        for p in alive + self.processes():
            _signal(p, signal.SIGKILL)
        psutil.wait_procs(list(self.seen.values()), timeout=10)
        for process in self.starters.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        left = [p for p in list(self.seen.values()) + self.processes() if running(p)]
        if not left and self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)
        return left

    def close(self) -> list[psutil.Process]:
        """Disconnect this process (``ray.shutdown``) and :meth:`stop` the nodes."""
        import ray

        if ray.is_initialized():
            ray.shutdown()
        return self.stop()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def start_for(placement: Mapping[str, str] | None) -> LocalCluster:
    """A started local cluster with one edge node per resource ``placement`` names (``{worker:
    resource}``; none: the head alone), this process connected to it: what ``engine = "ray"`` without a
    Ray address runs on. :meth:`LocalCluster.close` ends it."""
    cluster = LocalCluster(sorted(set((placement or {}).values())))
    try:
        cluster.start()
        cluster.connect()
    except BaseException:
        cluster.close()
        raise
    return cluster
