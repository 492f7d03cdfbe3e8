"""The paper profile's serving path at its own shapes, tiny and untrained: notebook 04's experiment (the
paper's MobileNetV3 on 64×64 Tiny-ImageNet) is exported to OpenVINO, checked against PyTorch, costed,
coded with every encoder of the profile and served through the frontend for a few queries. Nobody can
run the paper profile at full size here; this keeps it from breaking silently. (Notebooks 02 and 03's
arms at paper shapes: ``test_paper_profile_arms.py``.)"""

import numpy as np
import pytest
import torch

from flake_lib import chain, coding, data, experiment, models, runtime
from flake_lib import latency as lt

PARAMS = chain.resolved_profile("paper")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    name = PARAMS["latency_experiment"]
    exp = experiment.Experiment.from_spec(name, PARAMS["experiments"][name], tmp_path_factory.mktemp("paper"))
    dataset = data.spec(exp.dataset)
    torch.manual_seed(0)
    deployed = exp.build_deployed(dataset.classes).eval()
    torch_models = {"F": deployed, "PM": exp.build_deployed(dataset.classes).eval(),
                    "Flake": experiment.build_flake_student(exp, dataset.classes).eval(),
                    "NKD": models.build_student(deployed, exp.student_keep).eval()}
    folder = tmp_path_factory.mktemp("ir")
    paths = {}
    for role, model in torch_models.items():
        paths[role] = str(folder / f"{role}.xml")
        runtime.export(model, torch.zeros(1, *dataset.image_shape), paths[role])
    return exp, dataset, torch_models, paths


def test_the_paper_models_export_at_the_paper_shape_and_agree_with_pytorch(served):
    exp, dataset, torch_models, paths = served
    assert dataset.image_shape == (3, 64, 64) and dataset.classes == 200  # Tiny-ImageNet, as the paper
    x = torch.randn(4, *dataset.image_shape)
    costs = {}
    for role, model in torch_models.items():
        compiled = runtime.CompiledModel(paths[role], "CPU", threads=1)
        assert compiled(x[:1].numpy()).shape == (1, dataset.classes)
        with torch.no_grad():
            scale = model(x).abs().max().item()
        assert runtime.max_abs_difference(model, compiled, x) <= 1e-3 * max(scale, 1.0), role
        costs[role] = experiment.cost(model, dataset.image_shape)["flops"]
    assert costs["Flake"] < costs["PM"] == costs["F"] and costs["NKD"] == costs["Flake"]  # compressed


@pytest.mark.parametrize("encoder", PARAMS["flake_encoders"])
def test_every_code_of_the_paper_profile_encodes_and_decodes_at_the_paper_shape(served, encoder):
    _, dataset, torch_models, _ = served
    k = int(PARAMS["parity_codes"][0][0])
    grouped = torch.randn(3, k, *dataset.image_shape)
    parity_query = coding.encode(grouped, encoder)
    assert parity_query.shape == (3, *dataset.image_shape)
    assert np.array_equal(coding.encode_np(grouped.numpy(), encoder), parity_query.numpy())
    with torch.no_grad():
        outputs = torch_models["F"](grouped.flatten(0, 1)).view(3, k, -1)
        rebuilt = coding.decode_each(torch_models["PM"](parity_query), outputs, encoder)
    assert rebuilt.shape == outputs.shape and torch.isfinite(rebuilt).all()


def test_every_method_serves_the_paper_models_through_the_frontend(served):
    _, dataset, _, paths = served
    rng = np.random.default_rng(0)
    images = rng.standard_normal((16, *dataset.image_shape)).astype(np.float32)
    labels = rng.integers(0, dataset.classes, 16)
    frontend, workers = lt.placement(1)
    config = lt.FaultConfig(straggler_rate_per_s=5, reference_ms=5.0, cap_ms=50, pause_rate_per_s=0.0)
    schedule = lt.make_schedule(50, 40, len(images), config, 1 + rng.pareto(1.1, 1000), seed=3)
    methods = ["srp", "pm", "flake", "nkd"]
    with lt.Bench("native", lt.workers_for(methods, instances=1), paths, images, labels, frontend_cpus=frontend,
                  worker_cpus=workers, drain_s=10.0) as bench:
        for method in methods:
            frame, info = bench.run(method, schedule, bound_ms=PARAMS.get("timing_bound_ms", 10.0))
            assert sorted(frame["query"]) == list(range(40)) and info["n_failed"] == 0, method
