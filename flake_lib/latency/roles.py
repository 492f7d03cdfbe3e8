"""Who plays which role in each method's deployment, and how each worker is specified.

Every method has the deployed instances ``F0 … F{k−1}`` and, except ``none``, redundant instances named
by its registry entry (:mod:`flake_lib.methods`): ``FR*`` (replicas of ``F``: ``srp``, ``hedge``, the
extra instances of ``equal``, ApproxIFER's ``S`` coded instances), ``PM*`` (``pm``'s parity model),
``FP*`` (Flake's parity model), ``NKD*`` (the NKD student); ``instances`` says how many. Faults name
*roles* (``deployed0``, ``redundant0`` …), so one schedule is replayed on every method (:mod:`.faults`).

Modes (:func:`worker_specs`): ``native`` runs each model as it is on the host CPU; ``emulated`` pads each
worker's service time to a stated per-model device time by sleeping (``WorkerSpec.pad_to_s``: an
accelerator busy with the request while the host CPU is free).
"""

from __future__ import annotations

from collections.abc import Sequence

from .. import methods, serving

MODES = ("native", "emulated")


def worker_model(worker: str) -> str:
    """The model a worker serves: ``F0 → F``, ``FR1 → F``, ``PM0 → PM``, ``FP0 → Flake``, ``NKD0 → NKD``."""
    return methods.worker_models()[worker.rstrip("0123456789")]


def deployment(method: str, instances: int = 1, k: int = 2) -> serving.Deployment:
    """Which workers play which role for ``method``: ``k`` deployed instances of ``F`` and ``instances``
    redundant ones (parity for ``pm``/``flake``, backup for the others, none for ``none``)."""
    spec = methods.get(method)
    deployed = [f"F{j}" for j in range(k)]
    extra = [f"{spec.redundant}{j}" for j in range(instances)] if spec.redundant else []
    if spec.role == "parity":  # approxifer: its S extra instances of F take coded queries
        return serving.Deployment(deployed, parity=extra)
    return serving.Deployment(deployed, backup=extra)


def role_map(method: str, instances: int = 1, k: int = 2) -> dict[str, str]:
    """``{role: worker}``: ``deployed0..`` and ``redundant0..`` of ``method``."""
    dep = deployment(method, instances, k)
    roles = {f"deployed{j}": w for j, w in enumerate(dep.deployed)}
    roles.update({f"redundant{j}": w for j, w in enumerate(dep.parity + dep.backup)})
    return roles


def workers_for(methods: Sequence[str], instances: int = 1, k: int = 2) -> list[str]:
    """Every worker the methods need (each once)."""
    names: list[str] = []
    for method in methods:
        dep = deployment(method, instances, k)
        names += [w for w in dep.deployed + dep.parity + dep.backup if w not in names]
    return names


def device_times(flops: dict[str, float], *, overhead_ms: float = 0.0, f_ms: float | None = None,
                 ms_per_gflop: float | None = None) -> dict[str, float]:
    """Per-model device times of the emulated mode (an ASSUMPTION, stated per setting): a fixed
    per-inference overhead plus a term proportional to the model's FLOPs,
    ``t_m = overhead_ms + slope · flops_m``, the slope given (``ms_per_gflop``) or chosen so that ``F``
    takes ``f_ms`` (``slope = (f_ms − overhead_ms) / flops_F``). A fixed overhead shrinks what a
    compressed model can gain: only the proportional part shrinks with its FLOPs."""
    if (f_ms is None) == (ms_per_gflop is None):
        raise ValueError("give the device time of F (f_ms) or the slope (ms_per_gflop), not both")
    slope = ms_per_gflop / 1e9 if ms_per_gflop is not None else (f_ms - overhead_ms) / flops["F"]
    if slope < 0:
        raise ValueError(f"the overhead {overhead_ms} ms exceeds F's device time {f_ms} ms")
    return {m: overhead_ms + slope * f for m, f in flops.items()}


def worker_specs(names: Sequence[str], model_paths: dict[str, str], mode: str, *,
                 emulated_ms: dict[str, float] | None = None, device: str = "CPU",
                 cpus: tuple[int, ...] | None = None) -> list[serving.WorkerSpec]:
    """One :class:`serving.WorkerSpec` per worker; in ``emulated`` mode padded to its model's device time."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
    if mode == "emulated" and not emulated_ms:
        raise ValueError("the emulated mode needs a device time per model (emulated_ms)")
    specs = []
    for name in names:
        model = worker_model(name)
        pad = emulated_ms[model] / 1000 if mode == "emulated" else 0.0
        specs.append(serving.WorkerSpec(name, model_paths[model], device, threads=1, cpus=cpus, pad_to_s=pad))
    return specs
