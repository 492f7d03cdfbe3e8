"""INT8 post-training quantization (OpenVINO NNCF): the training-free way to make a parity model cheaper.

NNCF's post-training quantization inserts 8-bit fake-quantize operations on weights and activations;
the activation ranges are calibrated on a few hundred inputs *of the kind the model sees*: plain
images for ``F``, encoded parity queries (``x1 + x2``) for PM and Flake's parity model. No weight is
trained. :class:`OpenVINOModule` runs any IR (FP32 or INT8) as a PyTorch module, so the accuracy code
that evaluates the trained models evaluates the quantized ones unchanged.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import runtime


def quantize_int8(model_path: str | os.PathLike, calibration: np.ndarray, out_path: str | os.PathLike,
                  subset_size: int = 300) -> Path:
    """Quantize the OpenVINO IR at ``model_path`` to INT8 and save it at ``out_path``.

    ``calibration`` is ``(n, C, H, W)`` float32 inputs; the first ``subset_size`` are fed one at a time
    (the exported IRs take a batch of 1). NNCF's default preset (``performance``: symmetric INT8 weights
    and activations).
    """
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # "no CUDA runtime" at import
    import nncf
    import openvino as ov

    nncf.set_log_level(logging.ERROR)
    model = runtime.core().read_model(str(model_path))
    items = [np.ascontiguousarray(calibration[i: i + 1], dtype=np.float32)
             for i in range(min(subset_size, len(calibration)))]
    if not items:
        raise ValueError("no calibration inputs")
    import rich

    # NNCF draws progress bars on rich's global console (a widget under Jupyter): none in the executed
    # notebooks, so that console writes to a buffer while NNCF runs
    rich.reconfigure(file=io.StringIO(), force_jupyter=False)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            quantized = nncf.quantize(model, nncf.Dataset(items), subset_size=len(items))
    finally:
        rich.reconfigure()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(out_path), compress_to_fp16=False)
    return out_path


class OpenVINOModule(nn.Module):
    """An OpenVINO IR as an inference-only ``nn.Module``: ``forward(x)`` on any batch size (the IR is
    reshaped to a dynamic batch), on the CPU with ``threads`` inference threads (None: OpenVINO's choice)."""

    def __init__(self, model_path: str | os.PathLike, device: str = "CPU", threads: int | None = None):
        super().__init__()
        import openvino as ov

        model = runtime.core().read_model(str(model_path))
        shape = model.input(0).get_partial_shape()
        model.reshape({model.input(0): ov.PartialShape([-1, *[d.get_length() for d in list(shape)[1:]]])})
        self.compiled = runtime.compile_model(model, device, threads=threads, hint="THROUGHPUT")
        self.path = str(model_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inputs = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.compiled(inputs)[self.compiled.output(0)].copy())
