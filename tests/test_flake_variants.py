"""Validation split, thin students, Flake variants as lockstep arms, and the downstream Flake name."""

import json

import pytest
import torch

from flake_lib import data, experiment, models, train


def _toy_split(n=64, size=8, classes=4, seed=0, split="train"):
    g = torch.Generator().manual_seed(seed)
    return data.ImageSplit(torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g),
                           torch.arange(n) % classes, [str(c) for c in range(classes)],
                           "cifar10", split, "toy", False)


def test_validation_split_is_carved_from_training_and_fixed():
    split = _toy_split(80)
    train_part, validation = data.train_validation_split(split, 20, seed=0)
    assert len(train_part) == 60 and len(validation) == 20 and validation.split == "validation"
    assert torch.bincount(validation.labels, minlength=4).tolist() == [5, 5, 5, 5]
    pixels = {tuple(x.flatten().tolist()) for x in train_part.images}
    assert not any(tuple(x.flatten().tolist()) in pixels for x in validation.images)  # disjoint
    again = data.train_validation_split(split, 20, seed=0)[1]
    assert torch.equal(again.images, validation.images)
    assert not torch.equal(data.train_validation_split(split, 20, seed=1)[1].images, validation.images)
    with pytest.raises(ValueError, match="n_validation"):
        data.train_validation_split(split, 80)


def test_thin_student_keeps_depth_and_halves_flops():
    teacher = models.build_model("resnet14", width=1.0)
    thin, w = models.thin_student("resnet14", 10, width=1.0)
    ratio = models.count_flops(thin) / models.count_flops(teacher)
    assert ratio <= 0.5 and ratio > 0.4 and w < 1
    assert models.blocks_per_stage(thin) == models.blocks_per_stage(teacher) == [2, 2, 2]
    small, _ = models.thin_student("mobilenet_v3_small", 200, input_shape=(1, 3, 64, 64))
    big = models.build_model("mobilenet_v3_small", 200)
    assert models.count_flops(small, (1, 3, 64, 64)) <= 0.5 * models.count_flops(big, (1, 3, 64, 64))
    with pytest.raises(ValueError, match="thin students"):
        models.thin_student("resnet50-cifar", 10)


def test_thin_slice_is_the_teacher_without_its_other_channels():
    """The sliced thin student computes what the teacher computes once every channel the selection
    drops is silenced (its batch norm's weight and bias set to 0); with the teacher's widths it is the
    teacher."""
    import copy

    torch.manual_seed(0)
    teacher = models.build_model("resnet14", width=0.5).eval()
    for module in teacher.modules():
        if isinstance(module, torch.nn.BatchNorm2d):  # trained-looking statistics, distinct importances
            module.weight.data.uniform_(0.2, 1.5)
            module.bias.data.normal_(0, 0.1)
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 2.0)
    thin, _ = models.thin_student("resnet14", 10, width=0.5)
    models.slice_thin(teacher, thin).eval()
    chosen = models.thin_selection(teacher, models._stage_widths(thin))
    silenced = copy.deepcopy(teacher)

    def silence(bn, keep):
        drop = [c for c in range(bn.num_features) if c not in set(keep)]
        bn.weight.data[drop] = 0
        bn.bias.data[drop] = 0

    silence(silenced.bn1, chosen["stream"][0])
    for i in range(3):
        for b, block in enumerate(getattr(silenced, f"layer{i + 1}")):
            silence(block.bn1, chosen["inner"][(i, b)])
            silence(block.bn2, chosen["stream"][i])
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(thin(x), silenced(x), rtol=1e-4, atol=1e-5)
        assert (thin(x) - teacher(x)).abs().max() > 1e-3  # the dropped channels did matter
        same = models.slice_thin(teacher, models.build_model("resnet14", width=0.5).eval())
        torch.testing.assert_close(same(x), teacher(x))
    with pytest.raises(ValueError, match="do not fit"):
        models.thin_selection(teacher, [8, 30, 40])


def test_stages_compose_to_the_forward_pass():
    torch.manual_seed(0)
    model = models.build_model("resnet8", width=0.5).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        h = torch.relu(model.bn1(model.conv1(x)))
        for i in range(3):
            h = models.run_stage(model, i, h)
        torch.testing.assert_close(model.fc(h.mean((2, 3))), model(x))


def test_flake_names_and_the_downstream_choice(tmp_path):
    exp = experiment.Experiment("toy", "cifar10", "resnet8", tmp_path, 0.25, (1, 1, 1))
    # the paper-literal addition Flake keeps the name earlier checkpoints were written under
    assert experiment.flake_checkpoint(exp) == "flake-k2-addition-inter+kd+task"
    assert experiment.flake_checkpoint(exp, "task1+dkd", "concatenation") == "flake-k2-concatenation-task1+dkd"
    with pytest.raises(FileNotFoundError, match="notebook 03"):
        experiment.flake_checkpoint(exp, "selected")
    (tmp_path / "accuracy").mkdir()
    (tmp_path / "accuracy" / "flake_selection.json").write_text(json.dumps(
        {"experiments": {"toy": {"variant": "thin", "encoder": "concatenation"}}}))
    assert experiment.flake_checkpoint(exp, "selected", "selected") == "flake-k2-concatenation-thin"
    assert experiment.flake_checkpoint(exp, "selected", "addition") == "flake-k2-addition-thin"


def test_the_paper_ablation_keeps_its_checkpoint_names():
    assert experiment.flake_name("task+kd", "concatenation") == "flake-k2-concatenation-kd+task"
    assert experiment.flake_name("task+inter") == "flake-k2-addition-inter+task"
    assert experiment.flake_name("task") == "flake-k2-addition-task"
    assert experiment.ablation_objective(["inter", "task", "kd"]) == "paper"
    assert experiment.terms_label(("kd", "task")) == "L_task + L_KD"
    assert experiment.objective_label("paper") == "L_task + L_KD + L_Inter"
    assert not experiment.objective_label("task1+dkd").startswith("L_")  # L_ labels name the paper's terms
    assert models.supports_thin("resnet20") and models.supports_thin("mobilenet_v3_large")
    assert not models.supports_thin("resnet152-cifar")
    with pytest.raises(ValueError, match="no objective"):
        experiment.ablation_objective(["kd"])


def test_variant_specs_are_checked():
    v = experiment.FlakeVariant.from_spec("thin", {"objective": "task1+dkd", "student": "thin", "init": "scratch"})
    assert v.student == "thin"
    for spec, message in [({"objective": "nope"}, "unknown objective"), ({"student": "wide"}, "skip or thin"),
                          ({"init": "magic"}, "init must be"),
                          ({"student": "thin", "init": "nkd"}, "thin student starts"),
                          ({"student": "thin", "init": "scratch"}, "L_Inter"), ({"lr": 1}, "unknown keys")]:
        with pytest.raises(ValueError, match=message):
            experiment.FlakeVariant.from_spec("x", spec)


def test_every_kind_of_arm_trains_in_one_lockstep_run(tmp_path):
    """PM arms of both codes (F-initialised SGD, ParM-faithful Adam), Flake variants (paper, decoded
    KD, thin, warm-up and NKD initialisations), the warm-up and NKD: one run, every arm exported and
    loadable by name."""
    exp = experiment.Experiment("toy", "cifar10", "resnet14", tmp_path, 0.25, (1, 1, 1))
    train_split, validation = _toy_split(64), _toy_split(16, seed=1, split="validation")
    torch.manual_seed(0)
    deployed = exp.build_deployed(4).eval()
    cfg = train.OptimConfig(epochs=2, lr=0.01, schedule="onecycle", warmup_epochs=0.5)
    adam = train.OptimConfig(epochs=2, lr=1e-3, weight_decay=1e-5, optimizer="adam", schedule="constant")
    pm_eval = experiment.ParityValidation(deployed, validation, 2, "addition")
    arms = [experiment.pm_arm(exp, deployed, 4, cfg, encoder=e, evaluate=pm_eval)
            for e in ("addition", "concatenation")]
    arms.append(experiment.pm_arm(exp, deployed, 4, adam, init="scratch", name="pm-k2-addition-parm",
                                  evaluate=pm_eval, select="val_degraded_top1"))
    experiment.run_lockstep(exp, "pm", arms, deployed, train_split, batch_groups=8, progress=False)
    assert (exp.checkpoint_dir / "pm-k2-addition-parm.pt").is_file()
    assert train.load_checkpoint(exp.checkpoint_dir / "pm-k2-addition-parm.pt")["selected_epoch"] in (1, 2)
    teachers = {e: experiment.load_trained(exp, f"pm-k2-{e}", 4) for e in ("addition", "concatenation")}
    variants = {name: experiment.FlakeVariant.from_spec(name, spec) for name, spec in {
        "paper": {}, "task1+dkd": {"objective": "task1+dkd"}, "task1+std": {"objective": "task1+std"},
        "thin": {"objective": "task1+dkd", "student": "thin", "init": "scratch"},
        "warmup": {"objective": "task", "init": "warmup"}, "from-nkd": {"objective": "task", "init": "nkd"}}.items()}
    arms = [experiment.nkd_arm(exp, deployed, cfg, evaluate=experiment.ClassifierValidation(deployed, validation))]
    arms.append(experiment.warmup_arm(exp, teachers["addition"], train.OptimConfig(epochs=1, lr=0.01)))
    init_arm = {"warmup": "warmup-k2-addition", "nkd": "nkd"}
    for encoder in ("addition", "concatenation"):
        for v in variants.values():
            if encoder == "concatenation" and v.init in init_arm:
                continue
            arms.append(experiment.flake_arm(exp, teachers[encoder], v, cfg, encoder=encoder,
                                             init_arm=init_arm.get(v.init),
                                             evaluate=experiment.ParityValidation(deployed, validation, 2, encoder)))
    histories = experiment.run_lockstep(exp, "flake", arms, deployed, train_split, teachers=teachers,
                                        batch_groups=8, progress=False)
    assert [h["epoch"] for h in histories["warmup-k2-addition"]] == [1]
    assert [h["run_epoch"] for h in histories["flake-k2-addition-warmup"]] == [2]
    assert [h["run_epoch"] for h in histories["flake-k2-addition-from-nkd"]] == [2]
    for name, history in histories.items():
        assert history and all(torch.isfinite(torch.tensor(h["train_loss"])) for h in history), name
    for encoder in ("addition", "concatenation"):
        for variant in ("paper", "thin"):
            model = experiment.load_flake(exp, 4, variant, encoder)
            assert models.count_flops(model, (1, 3, 8, 8)) < models.count_flops(deployed, (1, 3, 8, 8))
    # the exported Flake equals the arm it was trained as
    paper = next(a for a in arms if a.name == "flake-k2-addition-inter+kd+task")
    for p, q in zip(paper.model.state_dict().values(), experiment.load_flake(exp, 4).state_dict().values()):
        torch.testing.assert_close(p, q)


def test_plans_branch_the_budget_curve_from_wsd_runs(tmp_path):
    """With a wsd schedule the budget curve's shorter schedules branch from the full runs (PM, the
    paper's Flake, the budget variant, NKD); the whole plan trains in one pass."""
    exp = experiment.Experiment("toy", "cifar10", "resnet14", tmp_path, 0.25, (1, 1, 1))
    train_split = _toy_split(64)
    torch.manual_seed(0)
    deployed = exp.build_deployed(4).eval()
    cfg = train.OptimConfig(epochs=3, lr=0.01, schedule="wsd", warmup_epochs=0.5, decay_epochs=1)
    pm_plan = experiment.parity_plan(exp, deployed, 4, [(2, "addition", "augmented")], cfg, budget_epochs=[1, 2])
    pm_arms = {p.name: p.build() for p in pm_plan}
    assert (pm_arms["pm-k2-addition-e2"].start_epoch, pm_arms["pm-k2-addition-e2"].init_from) == (1, "pm-k2-addition")
    assert pm_arms["pm-k2-addition-e1"].start_epoch == 0 and pm_arms["pm-k2-addition-e1"].cfg.epochs == 1
    experiment.run_lockstep(exp, "pm", list(pm_arms.values()), deployed, train_split, batch_groups=8, progress=False)
    teachers = {"addition": experiment.load_trained(exp, "pm-k2-addition", 4)}
    variants = experiment.variants_from_params({"warmup": {"objective": "task1+dkd", "init": "warmup"}}, ["addition"])
    plan = experiment.distillation_plan(exp, deployed, teachers, cfg=cfg, nkd_cfg=cfg, variants=variants,
                                        budget_epochs=[1, 2], budget_variant="warmup")
    arms = {p.name: p.build() for p in plan}
    meta = {p.name: p.meta for p in plan}
    assert meta["nkd-e2"]["budget"] and arms["nkd-e2"].init_from == "nkd" and arms["nkd-e2"].start_epoch == 1
    paper_e2 = arms["flake-k2-addition-inter+kd+task-e2"]
    assert (paper_e2.init_from, paper_e2.start_epoch, paper_e2.cfg.schedule) == (
        "flake-k2-addition-inter+kd+task", 1, "linear")
    assert arms["flake-k2-addition-warmup"].init_from == "warmup-k2-addition"
    assert arms["flake-k2-addition-warmup-e2"].init_from == "flake-k2-addition-warmup"  # branch after the warm-up
    assert "flake-k2-addition-warmup-e1" not in arms  # one epoch is all warm-up: no point
    histories = experiment.run_lockstep(exp, "distill", list(arms.values()), deployed, train_split,
                                        teachers=teachers, batch_groups=8, progress=False)
    assert [h["run_epoch"] for h in histories["flake-k2-addition-inter+kd+task-e2"]] == [2]
    assert len(histories["flake-k2-addition-inter+kd+task"]) == 3


def test_group_flake_variant_is_the_papers_or_a_profile_variant():
    exp = experiment.Experiment.from_spec("cifar10-resnet", {"dataset": "cifar10", "deployed_arch": "resnet14",
                                                             "width": 1.0, "student_keep": [1, 1, 1]}, "/nonexistent")
    variants = {"mine": {"objective": "task", "init": "teacher", "encoders": ["addition"]},
                "warm": {"objective": "task", "init": "warmup"}}
    assert experiment.group_flake_variant(exp, "paper", variants) == experiment.paper_variant("paper")
    mine = experiment.group_flake_variant(exp, "mine", variants)
    assert (mine.name, mine.objective, mine.init) == ("mine", "task", "teacher")
    with pytest.raises(ValueError, match="larger groups"):
        experiment.group_flake_variant(exp, "warm", variants)
    with pytest.raises(ValueError, match="neither"):
        experiment.group_flake_variant(exp, "unknown", variants)
