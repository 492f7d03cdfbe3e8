"""Distillation losses against hand-computed values, and hooks that leave forward untouched."""

import copy
import math

import pytest
import torch

from flake_lib import distill, models

KL_3_1 = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)  # KL([0.75, 0.25] || [0.5, 0.5]) = 0.130812


def test_kd_loss_by_hand():
    teacher = torch.tensor([[math.log(3.0), 0.0]])
    student = torch.zeros(1, 2)
    assert distill.kd_loss(student, teacher, tau=1.0, gamma=1.0).item() == pytest.approx(KL_3_1, rel=1e-5)
    # τ = 2 on logits scaled by 2 gives the same distributions; the loss is scaled by γ τ²
    assert distill.kd_loss(student, 2 * teacher, tau=2.0, gamma=0.7).item() == pytest.approx(
        0.7 * 4 * KL_3_1, rel=1e-5)
    # a batch of two identical rows has the same batch mean
    assert distill.kd_loss(student.repeat(2, 1), teacher.repeat(2, 1), 1.0, 1.0).item() == pytest.approx(
        KL_3_1, rel=1e-5)


def test_channel_kl_by_hand():
    teacher = torch.tensor([math.log(3.0), 0.0]).view(1, 1, 1, 2)  # one channel, two positions
    student = torch.zeros(1, 1, 1, 2)
    assert distill.channel_kl(student, teacher, tau=1.0).item() == pytest.approx(KL_3_1, rel=1e-5)
    # two channels, the second identical: the mean over channels halves it; τ² scales
    t2 = torch.cat([teacher, torch.zeros_like(teacher)], dim=1) * 2
    assert distill.channel_kl(torch.zeros_like(t2), t2, tau=2.0).item() == pytest.approx(4 * KL_3_1 / 2, rel=1e-5)
    assert distill.inter_loss([student, student], [teacher, teacher], 1.0).item() == pytest.approx(2 * KL_3_1, rel=1e-5)
    with pytest.raises(ValueError, match="unit shapes differ"):
        distill.channel_kl(torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 4, 4))


def test_hooks_read_units_without_changing_outputs():
    model = models.build_model("resnet8", width=0.5).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        plain = model(x)
        with distill.FeatureHooks(model, models.block_units(model)) as hooks:
            hooked = model(x)
        assert [tuple(f.shape) for f in hooks.features] == [(2, 8, 32, 32), (2, 16, 16, 16), (2, 32, 8, 8)]
        torch.testing.assert_close(plain, hooked)
        assert not model.layer1._forward_hooks  # hooks are removed on exit


def test_identical_student_has_zero_kd_and_inter():
    torch.manual_seed(0)
    deployed = models.build_model("resnet8", width=0.5).eval()
    teacher = models.build_model("resnet8", width=0.5).eval()
    student = copy.deepcopy(teacher).eval()
    objective = distill.FlakeObjective(deployed, teacher, models.block_units(teacher), use=("task", "kd", "inter"))
    batch = (torch.randn(8, 3, 32, 32), torch.zeros(8, dtype=torch.long))
    with torch.no_grad():
        loss = objective(student, batch)
    assert objective.last["kd"] == pytest.approx(0.0, abs=1e-6)
    assert objective.last["inter"] == pytest.approx(0.0, abs=1e-6)
    assert objective.last["task"] > 0 and loss.item() == pytest.approx(0.3 * objective.last["task"], rel=1e-5)


def test_flake_objective_trains_a_real_student():
    torch.manual_seed(0)
    deployed = models.build_model("resnet14", width=0.5)
    teacher = models.build_model("resnet14", width=0.5)
    student = models.build_student(teacher, 1)
    objective = distill.FlakeObjective(deployed, teacher, models.block_units(teacher), beta=0.5)
    loss = objective(student.train(), (torch.randn(8, 3, 32, 32), torch.zeros(8, dtype=torch.long)))
    loss.backward()
    assert set(objective.last) == {"task", "kd", "inter"}
    assert all(p.grad is not None for p in student.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="subset"):
        distill.FlakeObjective(deployed, teacher, [], use=("task", "dark"))


def test_naive_kd_objective_combines_ce_and_kd():
    torch.manual_seed(0)
    deployed = models.build_model("resnet8", width=0.5).eval()
    student = copy.deepcopy(deployed).eval()
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        loss = distill.NaiveKDObjective(deployed)(student, (x, y))
        ce = torch.nn.functional.cross_entropy(student(x), y)
    assert loss.item() == pytest.approx(0.3 * ce.item(), rel=1e-5)  # identical student: KD term is 0
