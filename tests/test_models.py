import pytest
import torch
from torch import nn

from flake_lib import models


def test_resnet20_matches_he_et_al():
    net = models.build_model("resnet20", num_classes=10)
    assert models.count_parameters(net) == 269_722  # "0.27M" in He et al. Table 6
    assert models.blocks_per_stage(net) == [3, 3, 3]
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    wide = models.build_model("resnet20", width=2.0)
    assert wide.conv1.out_channels == 32


@pytest.mark.parametrize("arch,size,classes", [("resnet50-cifar", 32, 10), ("resnet152-cifar", 32, 100),
                                               ("mobilenet_v3_large", 64, 200),
                                               ("mobilenet_v3_small", 64, 200)])
def test_paper_architectures_build_and_run(arch, size, classes):
    net = models.build_model(arch, num_classes=classes).eval()
    with torch.no_grad():
        assert net(torch.zeros(1, 3, size, size)).shape == (1, classes)


def test_cifar_stem_of_torchvision_resnet():
    net = models.build_model("resnet50-cifar")
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert isinstance(net.maxpool, nn.Identity)


def test_student_of_resnet152_is_resnet50():
    teacher = models.build_model("resnet152-cifar")
    student = models.build_student(teacher, (3, 4, 6, 3))
    assert models.blocks_per_stage(student) == [3, 4, 6, 3]
    assert models.count_parameters(student) == models.count_parameters(models.build_model("resnet50-cifar"))
    assert models.blocks_per_stage(teacher) == [3, 8, 36, 3]  # the teacher is untouched


def _unit_shapes(model, units, x):
    shapes = {}
    hooks = [model.get_submodule(u).register_forward_hook(
        lambda _m, _i, out, u=u: shapes.__setitem__(u, tuple(out.shape))) for u in units]
    model.eval()(x)
    for h in hooks:
        h.remove()
    return shapes


@pytest.mark.parametrize("arch,keep,size", [("resnet32", 2, 32), ("mobilenet_v3_large", 1, 64)])
def test_student_units_have_teacher_shapes(arch, keep, size):
    teacher = models.build_model(arch)
    student = models.build_student(teacher, keep)
    units = models.block_units(teacher)
    assert models.block_units(student) == units
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        assert _unit_shapes(teacher, units, x) == _unit_shapes(student, units, x)
    assert models.count_flops(student, (1, 3, size, size)) < models.count_flops(teacher, (1, 3, size, size))


def test_student_weights_copied_or_reset():
    teacher = models.build_model("resnet20")
    copied = models.build_student(teacher, (1, 2, 3), copy_weights=True)
    assert torch.equal(copied.layer2[1].conv1.weight, teacher.layer2[1].conv1.weight)
    fresh = models.build_student(teacher, (1, 2, 3))
    assert not torch.equal(fresh.layer2[1].conv1.weight, teacher.layer2[1].conv1.weight)


def test_student_rejects_bad_keep():
    teacher = models.build_model("resnet20")
    with pytest.raises(ValueError, match="3 stages"):
        models.build_student(teacher, (1, 1))
    with pytest.raises(ValueError, match="at least one block"):
        models.build_student(teacher, (1, 0, 1))


def test_unknown_architecture():
    with pytest.raises(ValueError, match="unknown architecture 'resnet21'"):
        models.build_model("resnet21")


def test_flop_count_by_hand():
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert models.count_flops(conv, (1, 3, 8, 8)) == 2 * (8 * 8) * 8 * (3 * 3 * 3)
    assert models.count_flops(nn.Linear(5, 4), (2, 5)) == 2 * 2 * 5 * 4
