"""Lockstep training: arms trained together equal arms trained alone, resume, best checkpoint."""

import copy

import pytest
import torch
from torch import nn

from flake_lib import data, distill, models, parity, train


def _toy_split(n=48, size=8, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return data.ImageSplit(torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g),
                           torch.arange(n) % classes, [str(c) for c in range(classes)],
                           "cifar10", "train", "toy", False)


def _loader():
    return data.TensorLoader(_toy_split(), 16, shuffle=True, augment=True, seed=5, drop_last=True,
                             with_index=True)


def _producers():
    torch.manual_seed(10)
    deployed = models.build_model("resnet8", num_classes=4, width=0.25).eval()
    teacher = models.build_model("resnet8", num_classes=4, width=0.25).eval()
    producers = {
        "deployed": lambda s: deployed(s.batch[0]),
        "members": lambda s: parity.group_batch(s["deployed"], 2),
        "parity:addition": lambda s: parity.group_batch(s.batch[0], 2).sum(1),
        "parity:concatenation": lambda s: torch.cat([s.batch[0][0::2, :, :, ::2], s.batch[0][1::2, :, :, ::2]], -1),
        "teacher:addition": lambda s: distill.teacher_pass(teacher, s["parity:addition"]),
    }
    return producers, teacher


def _arms(producers_teacher):
    """Two different arms: a ResNet student distilled (KD + L_Inter) on the addition code with SGD,
    and a dropout MLP parity model on the concatenation code with Adam and a shorter schedule."""
    _, teacher = producers_teacher
    torch.manual_seed(1)
    student = models.build_student(teacher, 1, copy_weights=True).requires_grad_(True)
    obj = distill.objective("paper")
    flake = train.Arm("flake", student, distill.FlakeArmLoss(obj, "addition", models.block_units(student)),
                      train.OptimConfig(epochs=3, lr=0.05, schedule="onecycle", warmup_epochs=1))
    torch.manual_seed(2)
    mlp = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(3 * 8 * 8, 4))
    pm = train.Arm("pm", mlp, parity.ParityArmLoss("concatenation"),
                   train.OptimConfig(epochs=2, lr=1e-2, weight_decay=1e-5, optimizer="adam",
                                     schedule="constant"))
    return [flake, pm]


def _run(tmp_path, name, arms, producers, max_epochs=None):
    return train.fit_lockstep(arms, _loader(), checkpoint=tmp_path / name, producers=producers,
                              max_epochs=max_epochs, progress=False, args={"toy": True})


def test_lockstep_arms_equal_arms_trained_alone(tmp_path):
    shared = _producers()
    together = _arms(shared)
    histories = _run(tmp_path, "together.pt", together, shared[0])
    for i, name in enumerate(["flake", "pm"]):
        alone = [_arms(shared)[i]]
        alone_history = _run(tmp_path, f"{name}.pt", alone, shared[0])[name]
        for p, q in zip(together[i].model.parameters(), alone[0].model.parameters()):
            torch.testing.assert_close(p, q, rtol=0, atol=0)
        assert [h["train_loss"] for h in histories[name]] == [h["train_loss"] for h in alone_history]
    assert [len(histories["flake"]), len(histories["pm"])] == [3, 2]
    # an untrained copy differs: the arms did train
    fresh = _arms(shared)
    assert any((p - q).abs().max() > 1e-4 for p, q in zip(fresh[0].model.parameters(),
                                                          together[0].model.parameters()))


def test_lockstep_resumes_after_an_interruption(tmp_path):
    shared = _producers()
    full = _arms(shared)
    full_history = _run(tmp_path, "full.pt", full, shared[0])
    interrupted = _arms(shared)
    first = _run(tmp_path, "resumed.pt", interrupted, shared[0], max_epochs=1)
    assert [len(h) for h in first.values()] == [1, 1]
    resumed = _arms(shared)  # a fresh process: new models, the checkpoint holds every arm
    resumed_history = _run(tmp_path, "resumed.pt", resumed, shared[0])
    for a, b in zip(full, resumed):
        for p, q in zip(a.model.parameters(), b.model.parameters()):
            torch.testing.assert_close(p, q, rtol=0, atol=0)
        assert [h["train_loss"] for h in full_history[a.name]] == [h["train_loss"] for h in resumed_history[a.name]]
    # a checkpoint of other arguments is refused
    other = _arms(shared)
    other[1].cfg.lr = 0.5
    with pytest.raises(ValueError, match="other arguments"):
        _run(tmp_path, "resumed.pt", other, shared[0])


def test_shared_batch_computes_each_key_once_and_records_readers():
    calls = []

    def base(s):
        calls.append("base")
        return s.batch[0] * 2

    def derived(s):
        calls.append("derived")
        return s["base"] + 1

    shared = train.SharedBatch((torch.ones(2),), None, {"base": base, "derived": derived, "other": lambda s: 0})
    assert shared["derived"].tolist() == [3.0, 3.0]
    assert shared.used == {"base", "derived"}
    shared.used = set()
    shared["derived"], shared["base"]
    assert calls == ["derived", "base"] and shared.used == {"base", "derived"}  # cached, dependency kept
    assert set(shared.seconds) == {"base", "derived"} and all(v >= 0 for v in shared.seconds.values())
    with pytest.raises(KeyError, match="no shared producer"):
        shared["missing"]


def test_adam_and_best_on_validation(tmp_path):
    model = nn.Linear(2, 2)
    optimizer, _ = train.make_optimizer(model, train.OptimConfig(lr=1e-3, weight_decay=1e-5, optimizer="adam",
                                                                 schedule="constant"), 10)
    assert isinstance(optimizer, torch.optim.Adam)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)
    assert optimizer.param_groups[0]["weight_decay"] == pytest.approx(1e-5)
    with pytest.raises(ValueError, match="unknown optimizer"):
        train.make_optimizer(model, train.OptimConfig(optimizer="lion"), 10)

    shared = _producers()
    snapshots, scores = [], iter([0.2, 0.7, 0.4])

    def evaluate(m):
        snapshots.append(copy.deepcopy(m.state_dict()))
        return {"val_degraded_top1": next(scores)}

    torch.manual_seed(3)
    arm = train.Arm("parm", nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4)),
                    parity.ParityArmLoss("addition"),
                    train.OptimConfig(epochs=3, lr=1e-2, optimizer="adam", schedule="constant"),
                    evaluate=evaluate, select="val_degraded_top1")
    history = train.fit_lockstep([arm], _loader(), checkpoint=tmp_path / "p.pt", producers=shared[0],
                                 progress=False, export_dir=tmp_path)["parm"]
    assert [h["val_degraded_top1"] for h in history] == [0.2, 0.7, 0.4]
    for key, value in arm.model.state_dict().items():  # the model ends with epoch 2's weights
        torch.testing.assert_close(value, snapshots[1][key])
    exported = train.load_checkpoint(tmp_path / "parm.pt")
    assert exported["selected_epoch"] == 2
    torch.testing.assert_close(exported["model"]["1.weight"], snapshots[1]["1.weight"])
    assert not torch.equal(snapshots[1]["1.weight"], snapshots[2]["1.weight"])


def test_branch_starts_from_its_parent(tmp_path):
    """An arm with init_from takes the parent's weights (and moments) at its start epoch; with a zero
    learning rate it keeps them, so it ends with the parent's weights after that epoch."""
    shared = _producers()
    seen = []
    torch.manual_seed(4)
    parent = train.Arm("main", nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4)),
                       parity.ParityArmLoss("addition"), train.OptimConfig(epochs=3, lr=0.05, schedule="constant"),
                       evaluate=lambda m: seen.append(copy.deepcopy(m.state_dict())) or {})
    branch = train.Arm("branch", nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4)),
                       parity.ParityArmLoss("addition"),
                       train.OptimConfig(epochs=1, lr=0.0, weight_decay=0.0, momentum=0.0, schedule="constant"),
                       start_epoch=2, init_from="main", copy_optimizer=True)
    histories = _run(tmp_path, "b.pt", [parent, branch], shared[0])
    assert [h["run_epoch"] for h in histories["branch"]] == [3]
    for key, value in branch.model.state_dict().items():
        torch.testing.assert_close(value, seen[1][key])  # the parent after its second epoch
    with pytest.raises(ValueError, match="init_from"):
        bad = train.Arm("bad", nn.Linear(1, 1), parity.ParityArmLoss(), train.OptimConfig(epochs=1),
                        start_epoch=5, init_from="main")
        _run(tmp_path, "c.pt", [_arms(shared)[1], bad], shared[0])


def test_cost_of_each_arm_is_recorded(tmp_path):
    shared = _producers()
    arms = _arms(shared)
    histories = _run(tmp_path, "cost.pt", arms, shared[0])
    first = {name: h[0] for name, h in histories.items()}
    for record in first.values():
        assert record["train_seconds"] == pytest.approx(
            record["own_seconds"] + record["data_seconds"] + record["shared_seconds"])
        assert record["lockstep_arms"] == 2
    # the Flake arm reads F's outputs and the teacher; the concatenation PM reads F's outputs only
    assert first["flake"]["shared_seconds"] > first["pm"]["shared_seconds"] > 0
    total = sum(r["lockstep_seconds"] for r in first.values())
    assert total <= first["flake"]["lockstep_wall_seconds"] * 1.05 + 0.05


def test_wsd_branch_equals_a_separate_shorter_run(tmp_path):
    """A 2-epoch point of the budget curve branched from a 3-epoch wsd run (its moments copied, its own
    one-epoch decay) ends with the parameters of a separate 2-epoch wsd run."""
    shared = _producers()
    cfg = train.OptimConfig(epochs=3, lr=0.05, schedule="wsd", warmup_epochs=0.5, decay_epochs=1)
    start, branch_cfg = train.budget_schedule(cfg, 2)
    assert start == 1 and branch_cfg.schedule == "linear" and branch_cfg.epochs == 1
    assert train.budget_schedule(cfg, 1)[0] == 0  # a branch at epoch 0 would cut the warm-up: separate run

    def linear_model():
        torch.manual_seed(6)
        return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))

    main = train.Arm("main", linear_model(), parity.ParityArmLoss("addition"), cfg)
    branch = train.Arm("main-e2", linear_model(), parity.ParityArmLoss("addition"), branch_cfg, start_epoch=start,
                       init_from="main", copy_optimizer=True)
    _run(tmp_path, "wsd.pt", [main, branch], shared[0])
    alone = train.Arm("alone", linear_model(), parity.ParityArmLoss("addition"), train.OptimConfig(
        epochs=2, lr=0.05, schedule="wsd", warmup_epochs=0.5, decay_epochs=1))
    _run(tmp_path, "alone.pt", [alone], shared[0])
    for p, q in zip(branch.model.parameters(), alone.model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
    assert any((p - q).abs().max() > 1e-5 for p, q in zip(main.model.parameters(), alone.model.parameters()))


def test_half_epoch_branch_equals_a_separate_one_epoch_run(tmp_path):
    """Branches may start inside an epoch: the 1-epoch point of a wsd run decaying over its last half
    epoch branches at epoch 0.5 and equals a separate 1-epoch run; the main run is unaffected."""
    shared = _producers()
    cfg = train.OptimConfig(epochs=2, lr=0.05, schedule="wsd", warmup_epochs=0.25, decay_epochs=0.5)
    start, branch_cfg = train.budget_schedule(cfg, 1)
    assert start == 0.5 and branch_cfg.epochs == 0.5

    def linear_model():
        torch.manual_seed(7)
        return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))

    main = train.Arm("main", linear_model(), parity.ParityArmLoss("addition"), cfg)
    branch = train.Arm("main-e1", linear_model(), parity.ParityArmLoss("addition"), branch_cfg, start_epoch=start,
                       init_from="main", copy_optimizer=True)
    histories = _run(tmp_path, "half.pt", [main, branch], shared[0])
    (record,) = histories["main-e1"]  # 3 steps an epoch: the last round(0.5 * 3) = 2 steps of epoch 1
    assert (record["run_start"], record["run_epoch"], record["epoch"]) == (round(1 / 3, 4), 1, round(2 / 3, 4))
    alone = train.Arm("alone", linear_model(), parity.ParityArmLoss("addition"), replace_epochs(cfg, 1))
    _run(tmp_path, "alone1.pt", [alone], shared[0])
    for p, q in zip(branch.model.parameters(), alone.model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
    solo = train.Arm("main", linear_model(), parity.ParityArmLoss("addition"), cfg)
    _run(tmp_path, "solo.pt", [solo], shared[0])
    for p, q in zip(main.model.parameters(), solo.model.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    # its cost as if alone: half of the main run's first epoch and its own half epoch
    expected = 0.5 * histories["main"][0]["train_seconds"] + histories["main-e1"][0]["train_seconds"]
    assert train.alone_seconds([main, branch], histories, "main-e1") == pytest.approx(expected)


def replace_epochs(cfg, epochs):
    import dataclasses

    return dataclasses.replace(cfg, epochs=epochs)


def test_wsd_schedule_shape():
    model = nn.Linear(2, 2)
    _, scheduler = train.make_optimizer(model, train.OptimConfig(epochs=4, lr=1.0, schedule="wsd",
                                                                 warmup_epochs=1, decay_epochs=2), 10)
    lrs = []
    for _ in range(40):
        lrs.append(scheduler.get_last_lr()[0])
        scheduler.optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)  # warm-up
    assert lrs[10:20] == pytest.approx([1.0] * 10)  # stable
    assert lrs[20] == pytest.approx(1.0) and lrs[30] == pytest.approx(0.5) and lrs[39] == pytest.approx(0.05)


def test_alone_seconds_follow_the_lineage():
    def arm(name, epochs, start=0, parent=None):
        return train.Arm(name, nn.Linear(1, 1), None, train.OptimConfig(epochs=epochs), start_epoch=start,
                         init_from=parent)

    arms = [arm("warm", 1), arm("main", 2, 1, "warm"), arm("main-e2", 1, 2, "main")]
    histories = {"warm": [{"run_epoch": 1, "train_seconds": 5.0}],
                 "main": [{"run_epoch": 2, "train_seconds": 7.0}, {"run_epoch": 3, "train_seconds": 11.0}],
                 "main-e2": [{"run_epoch": 3, "train_seconds": 13.0}]}
    assert train.alone_seconds(arms, histories, "warm") == 5.0
    assert train.alone_seconds(arms, histories, "main") == 5.0 + 7.0 + 11.0
    assert train.alone_seconds(arms, histories, "main-e2") == 5.0 + 7.0 + 13.0  # not main's third epoch


def test_each_loss_term_and_its_gradient_are_logged_per_epoch(tmp_path):
    """A Flake arm reports each term of its objective (mean over the epoch's steps, unweighted) and the
    norm of each weighted term's gradient (sampled every GRAD_EVERY steps); a one-term arm only its value."""
    shared = _producers()
    histories = _run(tmp_path, "terms.pt", _arms(shared), shared[0])
    record = histories["flake"][0]
    terms = [key[len("term_"):] for key in record if key.startswith("term_")]
    assert len(terms) >= 2 and all(record[f"grad_{t}"] > 0 for t in terms)
    assert all(record[f"term_{t}"] >= 0 for t in terms)
    assert not any(key.startswith(("term_", "grad_")) for key in histories["pm"][0])
