"""Training loop (resume, schedules), the parity objective and degraded-mode metrics."""

import pytest
import torch
from torch import nn

from flake_lib import chain, coding, data, experiment, metrics, models, parity, train


def _toy_split(n=64, size=8, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return data.ImageSplit(torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g),
                           torch.arange(n) % classes, [str(c) for c in range(classes)],
                           "cifar10", "train", "toy", False)


def test_parity_loss_by_hand():
    parity_output = torch.tensor([[1.0, 2.0]])
    members = torch.tensor([[[0.0, 1.0], [0.5, 0.5]]])  # sum = [0.5, 1.5]
    assert parity.parity_loss(parity_output, members).item() == pytest.approx(0.25)


def test_parity_objective_is_zero_for_a_linear_model_and_its_copy():
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 5, bias=False))
    objective = parity.ParityObjective(linear, k=2, encoder="addition")
    batch = (torch.randn(10, 3, 8, 8), torch.zeros(10, dtype=torch.long))
    assert objective(linear, batch).item() == pytest.approx(0.0, abs=1e-10)
    other = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 5, bias=False))
    assert objective(other, batch).item() > 1e-3


def test_clean_targets_are_looked_up_by_index():
    deployed = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3))
    clean = torch.arange(30, dtype=torch.float32).view(10, 3)
    objective = parity.ParityObjective(deployed, k=2, targets="clean", clean_outputs=clean)
    batch = (torch.zeros(4, 3, 8, 8), torch.zeros(4, dtype=torch.long), torch.tensor([9, 0, 2, 3]))
    assert objective.member_outputs(batch)[0].tolist() == [[27.0, 28.0, 29.0], [0.0, 1.0, 2.0]]
    with pytest.raises(ValueError, match="clean_outputs"):
        parity.ParityObjective(deployed, targets="clean")


def test_group_batch():
    assert parity.group_batch(torch.zeros(7, 3), 2).shape == (3, 2, 3)
    with pytest.raises(ValueError, match="cannot hold"):
        parity.group_batch(torch.zeros(1, 3), 2)


def test_degraded_mode_by_hand():
    deployed = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 2.0]])
    labels = torch.tensor([0, 1, 1, 1])
    groups = torch.tensor([[0, 1], [2, 3]])
    rebuilt = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [0.0, 1.0]]])
    row = metrics.degraded_mode(deployed, rebuilt, groups, labels)
    assert row["available_top1"] == pytest.approx(0.75)
    assert row["degraded_top1"] == pytest.approx(0.75)  # predictions 0,0,1,1 vs labels 0,1,1,1
    assert row["reconstruction_agreement"] == pytest.approx(0.5)  # F says 0,1,0,1


def _fit(tmp_path, name, max_epochs=None):
    torch.manual_seed(0)
    model = models.build_model("resnet8", num_classes=4, width=0.25)
    loader = data.TensorLoader(_toy_split(), 16, shuffle=True, augment=True, seed=3, drop_last=True)
    test = data.TensorLoader(_toy_split(32, seed=1), 32)
    evaluate = lambda m: {"test_loss": nn.functional.cross_entropy(  # noqa: E731
        train.predict(m, test), test.data.labels).item()}
    cfg = train.OptimConfig(epochs=3, lr=0.05, schedule="onecycle", warmup_epochs=1)
    history = train.fit(model, train.classification_step, loader, cfg, evaluate=evaluate,
                        checkpoint=tmp_path / name, args={"toy": True}, max_epochs=max_epochs,
                        progress=False)
    return model, history


def test_resume_gives_the_same_next_epochs(tmp_path):
    full_model, full = _fit(tmp_path, "full.pt")
    _, first = _fit(tmp_path, "resumed.pt", max_epochs=1)  # interrupted after one epoch
    assert len(first) == 1
    resumed_model, resumed = _fit(tmp_path, "resumed.pt")  # resumes at epoch 2
    assert [h["epoch"] for h in resumed] == [1, 2, 3]
    for a, b in zip(full, resumed):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["test_loss"] == pytest.approx(b["test_loss"], rel=1e-5)
    for p, q in zip(full_model.parameters(), resumed_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_checkpoint_with_other_arguments_is_refused(tmp_path):
    _fit(tmp_path, "run.pt", max_epochs=1)
    model = models.build_model("resnet8", num_classes=4, width=0.25)
    loader = data.TensorLoader(_toy_split(), 16)
    with pytest.raises(ValueError, match="other arguments"):
        train.fit(model, train.classification_step, loader, train.OptimConfig(epochs=5),
                  checkpoint=tmp_path / "run.pt", args={"toy": True}, progress=False)


def test_schedules():
    model = nn.Linear(2, 2)
    _, step = train.make_optimizer(model, train.OptimConfig(epochs=4, lr=0.1), steps_per_epoch=10)
    lrs = []
    for _ in range(40):
        lrs.append(step.get_last_lr()[0])
        step.optimizer.step()
        step.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[20] == pytest.approx(0.01) and lrs[30] == pytest.approx(0.001)
    _, one = train.make_optimizer(model, train.OptimConfig(epochs=4, lr=0.1, schedule="onecycle",
                                                           warmup_epochs=1), steps_per_epoch=10)
    assert one.get_last_lr()[0] == pytest.approx(0.01)  # first warm-up step
    with pytest.raises(ValueError, match="unknown schedule"):
        train.make_optimizer(model, train.OptimConfig(schedule="exponential"), 10)


def test_paper_profile_trains_one_step_on_cpu():
    """Every experiment of the paper profile builds F and a parity model and takes one SGD step."""
    params = chain.resolved_profile("paper")
    for name, spec in params["experiments"].items():
        exp = experiment.Experiment.from_spec(name, spec, "unused")
        dataset = data.spec(exp.dataset)
        classes = dataset.classes
        deployed = exp.build_deployed(classes)
        x, y = torch.randn(2, *dataset.image_shape), torch.randint(0, classes, (2,))
        optimizer, _ = train.make_optimizer(deployed, train.OptimConfig(), 1)
        loss = train.classification_step(deployed, (x, y))
        loss.backward()
        optimizer.step()
        assert torch.isfinite(loss)
        # an untrained F in eval mode has no meaningful outputs; random targets stand in for them
        parity_model = exp.build_deployed(classes)
        k, encoder = params["parity_codes"][-1]
        objective = parity.ParityObjective(deployed, k, encoder, targets="clean",
                                           clean_outputs=torch.randn(2, classes))
        loss = objective(parity_model.train(), (x, y, torch.arange(2)))
        loss.backward()
        assert torch.isfinite(loss)
        assert all(p.grad is not None for p in parity_model.parameters())


def test_experiment_spec_errors():
    with pytest.raises(ValueError, match="dataset and deployed_arch"):
        experiment.Experiment.from_spec("x", {"dataset": "cifar10", "arch": "resnet20"}, ".")


def test_evaluate_parity_is_exact_for_linear_models():
    linear = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4, bias=False))
    split = _toy_split(40)
    outputs = train.predict(linear, data.TensorLoader(split, 8))
    row = experiment.evaluate_parity(linear, outputs, split, k=2, encoder="addition")
    assert row["reconstruction_agreement"] == pytest.approx(1.0)
    assert row["degraded_top1"] == pytest.approx(metrics.top_k_accuracy(outputs, split.labels))
    assert row["n_groups"] == 20 and coding.make_groups(40, 2).shape == (20, 2)


def test_learning_curve_subset_covers_every_class():
    labels = torch.arange(4).repeat_interleave(10)  # stored class by class, like the test splits
    split = data.ImageSplit(torch.zeros(40, 3, 8, 8, dtype=torch.uint8), labels, list("abcd"),
                            "cifar10", "test", "toy", False)
    linear = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))
    seen = []
    original = experiment.evaluate_parity
    try:
        experiment.evaluate_parity = lambda m, o, s, *a, **k: seen.append(s.labels) or {
            "degraded_top1": 0.0, "reconstruction_agreement": 0.0}
        experiment.parity_evaluator(linear, split, 2, "addition", eval_images=8)(linear)
    finally:
        experiment.evaluate_parity = original
    assert torch.bincount(seen[0], minlength=4).tolist() == [2, 2, 2, 2]


def test_mixed_precision_is_off_on_a_cpu_and_the_time_left_is_stated():
    import torch

    from flake_lib import train

    with train.autocast(torch.device("cpu")):
        assert not torch.is_autocast_enabled("cpu")  # the quick profile trains in float32
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    assert train.eta_text([], 3) == ""
    assert train.eta_text([30.0, 50.0], 3) == "≈ 2.0 min left (40.0 s/epoch)"
    assert train.eta_text([3600.0], 3).startswith("≈ 3.0 h left")
