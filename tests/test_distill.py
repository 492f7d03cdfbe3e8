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


def test_decoded_kd_by_hand():
    """k = 2: F(x1) = [ln 3, 0], F(x2) = [0, 0], S(p) = [0, 0]; dec_1 = S − F(x2) = [0, 0],
    dec_2 = S − F(x1) = [−ln 3, 0]. KL([.75, .25] ‖ [.5, .5]) and KL([.5, .5] ‖ [.25, .75])."""
    members = torch.tensor([[[math.log(3.0), 0.0], [0.0, 0.0]]])
    student = torch.zeros(1, 2)
    second = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert distill.decoded_kd_loss(student, members, tau=1.0).item() == pytest.approx((KL_3_1 + second) / 2, rel=1e-5)
    # τ = 2 on doubled logits: the same distributions, scaled by τ²
    assert distill.decoded_kd_loss(2 * student, 2 * members, tau=2.0).item() == pytest.approx(
        4 * (KL_3_1 + second) / 2, rel=1e-5)
    # a parity output equal to the sum of the members decodes exactly: zero
    assert distill.decoded_kd_loss(members.sum(1), members, tau=4.0).item() == pytest.approx(0.0, abs=1e-6)


def test_standardized_mse_by_hand():
    teacher = torch.tensor([1.0, 3.0]).view(1, 1, 1, 2)  # one channel: mean 2, std 1
    student = torch.tensor([2.0, 2.0]).view(1, 1, 1, 2)
    assert distill.standardized_mse(student, teacher).item() == pytest.approx(1.0, rel=1e-4)
    # two channels on different scales weigh the same: channel 2 is channel 1 times 10
    t2 = torch.cat([teacher, 10 * teacher], dim=1)
    s2 = torch.cat([student, 10 * student], dim=1)
    assert distill.standardized_mse(s2, t2).item() == pytest.approx(1.0, rel=1e-4)
    assert distill.inter_term([s2, student], [t2, teacher], kind="std_mse").item() == pytest.approx(2.0, rel=1e-4)
    with pytest.raises(ValueError, match="kind"):
        distill.inter_term([s2], [t2], kind="cosine")
    # a dead teacher channel (σ = 0) is divided by the floor, 0.1 x the RMS σ: here 0.1 x sqrt(1/2)
    dead = torch.cat([teacher, torch.zeros_like(teacher)], dim=1)
    student_dead = torch.cat([student, torch.ones_like(student)], dim=1)
    floor = 0.1 * math.sqrt(0.5)
    assert distill.standardized_mse(student_dead, dead).item() == pytest.approx((1.0 + 1.0 / floor ** 2) / 2, rel=1e-4)


def test_objective_weights_and_names():
    paper = distill.objective("paper", gamma=0.7, beta=0.5)
    assert (paper.task, paper.kd, paper.decoded_kd, paper.inter) == pytest.approx((0.3, 0.7, 0.0, 0.5))
    assert paper.inter_kind == "channel_kl" and paper.needs_teacher
    assert distill.objective("task").terms() == ("task",)
    assert distill.objective("task1+dkd").terms() == ("task", "decoded_kd")
    assert distill.objective("task1+std").inter_kind == "std_mse"
    assert set(distill.OBJECTIVES) == {"paper", "task", "task+kd", "task+inter", "kd+inter", "task1+kd", "task1+dkd",
                                       "task1+std"}
    without_task = distill.objective("kd+inter", gamma=0.7, beta=0.5)  # leave-one-out: the paper's weights, no L_task
    assert (without_task.task, without_task.kd, without_task.inter) == pytest.approx((0.0, 0.7, 0.5))
    with pytest.raises(ValueError, match="unknown objective"):
        distill.objective("kd-only")


def test_paper_objective_is_algorithm_1():
    """The paper-literal variant on the shared batch gives the loss of FlakeObjective (all terms)."""
    from flake_lib import parity, train

    torch.manual_seed(0)
    deployed = models.build_model("resnet14", width=0.25).eval()
    teacher = models.build_model("resnet14", width=0.25).eval()
    student = models.build_student(teacher, 1, copy_weights=True).eval()
    batch = (torch.randn(8, 3, 32, 32), torch.zeros(8, dtype=torch.long), torch.arange(8))
    reference = distill.FlakeObjective(deployed, teacher, models.block_units(teacher), beta=0.5)
    shared = train.SharedBatch(batch, None, {
        "deployed": lambda s: deployed(s.batch[0]),
        "members": lambda s: parity.group_batch(s["deployed"], 2),
        "parity:addition": lambda s: parity.group_batch(s.batch[0], 2).sum(1),
        "teacher:addition": lambda s: distill.teacher_pass(teacher, s["parity:addition"]),
    })
    arm = distill.FlakeArmLoss(distill.objective("paper", beta=0.5), "addition", models.block_units(student))
    with torch.no_grad():
        expected = reference(student, batch)
        got = arm(student, shared)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    assert arm.last["task"] == pytest.approx(reference.last["task"], rel=1e-5)
    assert 0.7 * arm.last["kd"] == pytest.approx(reference.last["kd"], rel=1e-5)
    assert arm.last["inter"] == pytest.approx(reference.last["inter"], rel=1e-5)


def test_teacher_pass_and_warmup_loss():
    """The teacher's stage inputs and outputs; the warm-up loss is zero for a student that keeps
    every block and equals the per-stage MSE, computed by hand, for a block-skipped one."""
    from flake_lib import train

    torch.manual_seed(0)
    teacher = models.build_model("resnet14", width=0.25).eval()
    x = torch.randn(4, 3, 32, 32)
    out = distill.teacher_pass(teacher, x)
    assert len(out["stage_inputs"]) == len(out["features"]) == 3
    torch.testing.assert_close(models.run_stage(teacher, 1, out["stage_inputs"][1]), out["features"][1])
    torch.testing.assert_close(out["out"], teacher(x))
    shared = train.SharedBatch((x,), None, {"teacher:addition": lambda s: distill.teacher_pass(teacher, s.batch[0])})
    full = models.build_student(teacher, 2, copy_weights=True).eval()
    assert distill.WarmupArmLoss("addition")(full, shared).item() == pytest.approx(0.0, abs=1e-10)
    small = models.build_student(teacher, 1, copy_weights=True).eval()
    by_hand = sum(((small.get_submodule(f"layer{i + 1}")[0](out["stage_inputs"][i]) - out["features"][i]) ** 2).mean()
                  for i in range(3))
    assert distill.WarmupArmLoss("addition")(small, shared).item() == pytest.approx(by_hand.item(), rel=1e-5)
