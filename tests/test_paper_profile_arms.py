"""Every arm the paper profile trains (notebooks 02 and 03) takes one step on the CPU, at tiny sizes."""

import gc

import pytest
import torch

from flake_lib import chain, data, experiment, train


def _plans(params, exp, classes, deployed, teachers):
    k = int(params["parity_codes"][0][0])
    codes = [(int(kk), enc, params["parity_targets"]) for kk, enc in params["parity_codes"]]
    if params.get("compare_targets"):
        codes.append((codes[0][0], codes[0][1], "clean" if params["parity_targets"] == "augmented" else "augmented"))
    schedule = {"schedule": params["lr_schedule"]}
    pm_cfg = train.OptimConfig(epochs=params["parity_epochs"], lr=params["parity_lr"], **schedule)
    parm_cfg = train.OptimConfig(epochs=params.get("parm_epochs") or params["parity_epochs"], lr=params["parm_lr"],
                                 weight_decay=1e-5, optimizer="adam", schedule="constant")
    plans = experiment.parity_plan(exp, deployed, classes, codes, pm_cfg, init=params["parity_init"],
                                   budget_epochs=params["budget_epochs"],
                                   parm_cfg=parm_cfg if params["parm_recipe"] else None, fast_cpu=False)
    variants = experiment.variants_from_params(params["flake_variants"], params["flake_encoders"])
    plans += experiment.distillation_plan(
        exp, deployed, teachers, k=k,
        cfg=train.OptimConfig(epochs=params["distill_epochs"], lr=params["distill_lr"], **schedule),
        nkd_cfg=train.OptimConfig(epochs=params["nkd_epochs"], lr=params["nkd_lr"], **schedule),
        flake_encoders=params["flake_encoders"],
        ablation=params.get("ablation", [["task"], ["task", "kd"], ["task", "inter"], ["task", "kd", "inter"]]),
        ablation_encoders=params["ablation_encoders"], variants=variants, budget_epochs=params["budget_epochs"],
        budget_variant=params["budget_variant"], student_init=params["student_init"], fast_cpu=False)
    return plans, k


def test_paper_profile_recipe():
    params = chain.resolved_profile("paper")
    assert params["parity_init"] == "deployed" and params["parm_recipe"] and params["parm_lr"] == 0.001
    assert params["parity_batch_groups"] == 64 and params["student_init"] == "teacher"
    assert set(params["flake_encoders"]) == {"addition", "concatenation"}


@pytest.mark.parametrize("name", list(chain.resolved_profile("paper")["experiments"]))
def test_every_paper_profile_arm_takes_one_step(name, tmp_path):
    params = chain.resolved_profile("paper")
    exp = experiment.Experiment.from_spec(name, params["experiments"][name], tmp_path)
    dataset = data.spec(exp.dataset)  # the paper's shapes: classes and image size from the registry
    classes, shape = dataset.classes, dataset.image_shape
    torch.manual_seed(0)
    deployed = exp.build_deployed(classes).eval()
    # untrained teachers stand in for the PM models of notebook 02 (same architecture)
    teachers = {enc: exp.build_deployed(classes).eval() for enc in params["flake_encoders"]}
    plans, k = _plans(params, exp, classes, deployed, teachers)
    kinds = {(p.meta["method"], p.meta.get("recipe"), p.meta.get("variant")) for p in plans}
    assert ("pm", "parm", None) in kinds and ("pm", "main", None) in kinds  # both PM recipes
    assert {("flake", None, "paper"), ("flake-ablation", None, "paper"), ("nkd", None, "nkd")} <= kinds
    images = 2 * k
    batch = (torch.randn(images, *shape), torch.randint(0, classes, (images,)), torch.arange(images))
    producers = experiment.shared_producers(deployed, teachers, k, clean_outputs=torch.randn(images, classes))
    shared = train.SharedBatch(batch, None, producers)
    stepped = []
    for plan in plans:
        arm = plan.build()
        arm.model.train()
        optimizer, scheduler = train.make_optimizer(arm.model, arm.cfg, 1)
        before = [p.detach().clone() for p in arm.model.parameters()]
        loss = arm.loss(arm.model, shared)
        loss.backward()
        optimizer.step()
        scheduler.step()
        assert torch.isfinite(loss), plan.name
        assert any(not torch.equal(b, p) for b, p in zip(before, arm.model.parameters())), f"{plan.name} did not move"
        stepped.append(plan.name)
        del arm, optimizer, scheduler, before
        gc.collect()
    assert len(stepped) == len(plans) == len(set(stepped))
