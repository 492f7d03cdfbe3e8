"""OpenVINO runtime: every served model is exported once and compiled for a device (docs/DESIGN.md §5).

- :func:`export` converts a PyTorch model with ``ov.convert_model`` (traced with an example input)
  and saves it as OpenVINO IR keeping FP32 weights (``compress_to_fp16=False``), so that served
  answers have the accuracy measured in PyTorch.
- :func:`compile_model` compiles for ``CPU`` (default), or ``GPU``, ``NPU``, ``AUTO`` when
  ``ov.Core().available_devices`` lists them, with the ``LATENCY`` performance hint and, on CPU, a
  fixed number of inference threads (1 per worker on a 2-core machine) and FP32 inference (OpenVINO
  would otherwise compute in bf16 on CPUs that support it).
- :class:`CompiledModel` runs one request at a time on numpy arrays.

Torch is imported only where a PyTorch model is converted, so that serving workers stay light.

The paper ran on an Intel Neural Compute Stick 2 (the ``MYRIAD`` device). OpenVINO removed MYRIAD
in release 2023.0, so current OpenVINO cannot drive that stick; a user with one can install the
last release that supports it (OpenVINO 2022.3 LTS), export the models with this module under a
current release, and serve the saved IR files with ``device="MYRIAD"`` there.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np


def core():
    import openvino as ov

    return ov.Core()


def available_devices() -> list[str]:
    """OpenVINO devices of this machine, e.g. ``['CPU']`` or ``['CPU', 'GPU', 'NPU']``."""
    return list(core().available_devices)


def export(model, example_input, path: str | os.PathLike | None = None):
    """Convert ``model`` (eval mode, contiguous weights) to an ``ov.Model``; save it as IR when
    ``path`` (``.xml``) is given. The input shape is fixed to ``example_input``'s shape."""
    import openvino as ov
    import torch

    model = model.eval().to("cpu", memory_format=torch.contiguous_format)
    example_input = example_input.contiguous()
    with torch.no_grad(), warnings.catch_warnings():
        # ov.convert_model traces the model with torch.jit.trace, which torch deprecates in favour of
        # torch.export; the traced graph is what OpenVINO converts, so the notice is not ours to act on
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.trace(_method)?` is deprecated",
                                category=FutureWarning)
        ov_model = ov.convert_model(model, example_input=example_input,
                                    input=[tuple(example_input.shape)])
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        ov.save_model(ov_model, str(path), compress_to_fp16=False)
    return ov_model


def compile_model(model, device: str = "CPU", threads: int | None = 1, hint: str = "LATENCY"):
    """Compile an ``ov.Model`` or an IR path for ``device`` with a performance hint.

    Raises ValueError naming the available devices when ``device`` is not one of them (``AUTO``
    and ``MULTI:``/``HETERO:`` lists are passed through to OpenVINO).
    """
    ov_core = core()
    devices = list(ov_core.available_devices)
    if device not in devices and not device.startswith(("AUTO", "MULTI", "HETERO")):
        raise ValueError(f"OpenVINO device {device!r} is not available here; available: "
                         f"{', '.join(devices)} (or AUTO)")
    config = {"PERFORMANCE_HINT": hint}
    if threads is not None and device == "CPU":
        config["INFERENCE_NUM_THREADS"] = int(threads)
    if device == "CPU":  # OpenVINO's CPU default is bf16 on CPUs with AVX512-BF16/AMX: keep FP32 answers
        config["INFERENCE_PRECISION_HINT"] = "f32"
    if isinstance(model, (str, os.PathLike)):
        model = ov_core.read_model(str(model))
    return ov_core.compile_model(model, device, config)


class CompiledModel:
    """One compiled model and one infer request: ``outputs = model(inputs)`` on numpy arrays."""

    def __init__(self, model, device: str = "CPU", threads: int | None = 1, hint: str = "LATENCY"):
        self.compiled = compile_model(model, device, threads, hint)
        self.request = self.compiled.create_infer_request()
        self.input_shape = tuple(self.compiled.input(0).get_shape())
        self.device = device

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        inputs = np.ascontiguousarray(inputs, dtype=np.float32)
        if inputs.shape != self.input_shape:
            raise ValueError(f"input has shape {inputs.shape}, the compiled model expects {self.input_shape}")
        self.request.infer({0: inputs})
        return self.request.get_output_tensor(0).data.copy()


def max_abs_difference(model, compiled: CompiledModel, inputs) -> float:
    """Largest absolute difference between PyTorch and OpenVINO outputs on ``inputs`` (one at a
    time, in the compiled batch shape)."""
    import torch

    model = model.eval().to("cpu", memory_format=torch.contiguous_format)
    batch = compiled.input_shape[0]
    worst = 0.0
    with torch.no_grad():
        for start in range(0, len(inputs) - batch + 1, batch):
            x = inputs[start: start + batch].contiguous()
            worst = max(worst, float(np.abs(model(x).numpy() - compiled(x.numpy())).max()))
    return worst
