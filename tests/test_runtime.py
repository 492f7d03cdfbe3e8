"""OpenVINO export: the served model computes what PyTorch computes."""

import numpy as np
import pytest
import torch

from flake_lib import models, runtime


@pytest.mark.parametrize("arch,size", [("resnet8", 32), ("mobilenet_v3_small", 64)])
def test_openvino_matches_pytorch(arch, size, tmp_path):
    torch.manual_seed(0)
    model = models.build_model(arch, num_classes=10).eval()
    with torch.no_grad():  # give BatchNorm non-trivial statistics
        model.train()(torch.randn(16, 3, size, size))
    model.eval()
    path = tmp_path / f"{arch}.xml"
    runtime.export(model, torch.zeros(1, 3, size, size), path)
    assert path.is_file() and path.with_suffix(".bin").is_file()
    compiled = runtime.CompiledModel(path, "CPU", threads=1)
    inputs = torch.randn(8, 3, size, size)
    scale = model(inputs).abs().max().item()
    assert runtime.max_abs_difference(model, compiled, inputs) < 1e-3 * max(1.0, scale)
    with pytest.raises(ValueError, match="expects"):
        compiled(np.zeros((2, 3, size, size), dtype=np.float32))


def test_unknown_device_is_named():
    model = runtime.export(torch.nn.Linear(4, 2), torch.zeros(1, 4))
    with pytest.raises(ValueError, match="not available here; available: .*CPU"):
        runtime.compile_model(model, "MYRIAD")
    assert "CPU" in runtime.available_devices()


def test_export_is_quiet_about_torch_jit_trace():
    """OpenVINO traces with torch.jit.trace; its deprecation notice is filtered where export calls it."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runtime.export(models.build_model("resnet8", num_classes=10).eval(), torch.zeros(1, 3, 32, 32))
    assert not [w for w in caught if "torch.jit.trace" in str(w.message)], [str(w.message) for w in caught]
