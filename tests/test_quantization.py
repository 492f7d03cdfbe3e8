"""INT8 post-training quantization with NNCF, on a tiny model (the smoke chain runs it on the real ones)."""

import numpy as np
import pytest
import torch
from torch import nn

from flake_lib import quantization, runtime


@pytest.fixture(scope="module")
def tiny_ir(tmp_path_factory):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(8, 10)).eval()
    path = tmp_path_factory.mktemp("ir") / "tiny.xml"
    runtime.export(model, torch.zeros(1, 3, 8, 8), path)
    return model, path


def test_int8_model_is_quantized_and_close_to_fp32(tiny_ir, tmp_path):
    model, path = tiny_ir
    calibration = np.random.default_rng(0).normal(size=(64, 3, 8, 8)).astype(np.float32)
    int8_path = quantization.quantize_int8(path, calibration, tmp_path / "tiny-int8.xml", subset_size=32)
    ops = {op.get_type_name() for op in runtime.core().read_model(str(int8_path)).get_ops()}
    assert "FakeQuantize" in ops
    x = torch.from_numpy(np.random.default_rng(1).normal(size=(5, 3, 8, 8)).astype(np.float32))
    with torch.no_grad():
        reference = model(x)
    fp32, int8 = quantization.OpenVINOModule(path)(x), quantization.OpenVINOModule(int8_path)(x)
    assert fp32.shape == int8.shape == (5, 10)  # any batch size, although the IR was exported for 1
    assert torch.allclose(fp32, reference, atol=1e-5)
    error = (int8 - reference).abs().max() / reference.abs().max()
    assert 0 < error < 0.1  # INT8 changes the outputs, by a few per cent of their range


def test_quantize_needs_calibration_inputs(tiny_ir, tmp_path):
    with pytest.raises(ValueError, match="calibration"):
        quantization.quantize_int8(tiny_ir[1], np.zeros((0, 3, 8, 8), np.float32), tmp_path / "x.xml")
