"""Models: deployed models ``F``, parity models and their compressed students.

Architectures (``build_model(arch, num_classes)``):

- ``resnet{6n+2}`` (``resnet8``, ``resnet20``, ``resnet32``, ``resnet56``, ``resnet110`` ...): the CIFAR
  ResNets of He et al. (2016, §4.2): a 3×3 stem, three stages of ``n`` BasicBlocks with widths
  16/32/64 (times ``width``), identity shortcuts with zero padding (option A), global pooling, a linear
  classifier. ResNet-20 has 0.27 M parameters.
- ``resnet50-cifar``, ``resnet152-cifar``: torchvision's ResNet-50/152 with the CIFAR stem (3×3 conv,
  stride 1, no max-pool) for 32×32 inputs; ``resnet50``, ``resnet152`` keep the ImageNet stem.
- ``mobilenet_v3_large``, ``mobilenet_v3_small``: torchvision's MobileNetV3 (``small_input=True`` makes
  the first convolution stride 1, for 32×32 or 64×64 inputs).

A *student* (docs/DESIGN.md §2, Fig. 4 of the paper) keeps the teacher's stem, stage widths and the first
``keep[i]`` blocks of stage ``i``; skipped blocks are removed (ResNets) or replaced by ``nn.Identity``
(MobileNetV3, whose blocks live in one flat ``features`` list). The first block of a stage, which
changes resolution or width, is always kept, so teacher and student stage outputs — the *block-wise
units* of feature distillation — have the same shapes. ResNet-152 with ``keep=(3, 4, 6, 3)`` is
exactly ResNet-50.

A *thin* student (:func:`thin_student`, this artifact's variant, not the paper's) keeps the teacher's
depth and scales every stage's channels so that its FLOPs are at most half the teacher's.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

ARCHS = ("resnet{6n+2}", "resnet50-cifar", "resnet152-cifar", "resnet50", "resnet152",
         "mobilenet_v3_large", "mobilenet_v3_small")


# ----------------------------------------------------------------------------- CIFAR ResNets

class ZeroPadShortcut(nn.Module):
    """Option-A shortcut: subsample by ``stride`` and zero-pad the new channels (no parameters)."""

    def __init__(self, stride: int, extra_channels: int):
        super().__init__()
        self.stride, self.extra = stride, extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))


class BasicBlock(nn.Module):
    """``relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))`` with 3×3 convolutions."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = (ZeroPadShortcut(stride, planes - in_planes)
                         if stride != 1 or in_planes != planes else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """He et al.'s CIFAR ResNet with ``blocks_per_stage`` BasicBlocks per stage (depth 6n+2)."""

    def __init__(self, blocks_per_stage: Sequence[int] = (3, 3, 3), num_classes: int = 10,
                 width: float = 1.0):
        super().__init__()
        self.blocks_per_stage, self.width = tuple(blocks_per_stage), width
        widths = [max(1, round(c * width)) for c in (16, 32, 64)]
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        in_planes, stages = widths[0], []
        for i, (planes, blocks) in enumerate(zip(widths, blocks_per_stage)):
            layers = []
            for b in range(blocks):
                layers.append(BasicBlock(in_planes, planes, 2 if (i > 0 and b == 0) else 1))
                in_planes = planes
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(in_planes, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# ----------------------------------------------------------------------------- factory

def build_model(arch: str, num_classes: int = 10, *, width: float = 1.0,
                small_input: bool = True) -> nn.Module:
    """Build an untrained model by name (see the module docstring for the names)."""
    import torchvision

    match = re.fullmatch(r"resnet(\d+)", arch)
    if match and (int(match.group(1)) - 2) % 6 == 0 and arch not in ("resnet50", "resnet152"):
        n = (int(match.group(1)) - 2) // 6
        return CifarResNet((n, n, n), num_classes, width)
    base = arch.removesuffix("-cifar")
    if base in ("resnet50", "resnet152"):
        model = getattr(torchvision.models, base)(weights=None, num_classes=num_classes)
        if arch.endswith("-cifar"):
            model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
            model.maxpool = nn.Identity()
        return model
    if arch in ("mobilenet_v3_large", "mobilenet_v3_small"):
        model = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
        if small_input:
            model.features[0][0].stride = (1, 1)
        return model
    raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHS)} "
                     "(CIFAR ResNet depths are 6n+2: 8, 14, 20, 32, 44, 56, 110, ...)")


# ----------------------------------------------------------------------------- stages and students

def stages(model: nn.Module) -> list[tuple[str, nn.Module, list[int]]]:
    """The model's stages as ``(unit_name, container, block_indices)``.

    ``unit_name`` names the module whose output is the stage output (the block-wise unit);
    ``container[i]`` for ``i`` in ``block_indices`` are the stage's blocks, first block first.
    """
    if all(hasattr(model, f"layer{i}") for i in (1, 2, 3)):  # CIFAR and torchvision ResNets
        names = [n for n in ("layer1", "layer2", "layer3", "layer4") if hasattr(model, n)]
        return [(n, getattr(model, n), list(range(len(getattr(model, n))))) for n in names]
    features = getattr(model, "features", None)
    if isinstance(features, nn.Sequential) and len(features) > 2:  # MobileNetV3
        groups: list[list[int]] = []
        for i in range(1, len(features) - 1):
            block = features[i]
            same_shape = isinstance(block, nn.Identity) or getattr(block, "use_res_connect", False)
            if not same_shape or not groups:  # a block that changes shape starts a stage
                groups.append([i])
            else:
                groups[-1].append(i)
        return [(f"features.{g[-1]}", features, g) for g in groups]
    raise TypeError(f"cannot find the stages of {type(model).__name__}")


def block_units(model: nn.Module) -> list[str]:
    """Names of the block-wise units (stage outputs), for forward hooks (``model.get_submodule``)."""
    return [name for name, _, _ in stages(model)]


def blocks_per_stage(model: nn.Module) -> list[int]:
    """Blocks actually computed in each stage (skipped ``nn.Identity`` blocks are not counted)."""
    return [sum(not isinstance(c[i], nn.Identity) for i in idx) for _, c, idx in stages(model)]


def build_student(teacher: nn.Module, keep: int | Sequence[int], *,
                  copy_weights: bool = False) -> nn.Module:
    """A student that keeps the first ``keep[i]`` blocks of stage ``i`` of ``teacher`` (Fig. 4).

    ``keep`` may be one number for every stage (capped at each stage's length). With
    ``copy_weights=False`` the student is re-initialised; with True it starts from the teacher's
    weights of the kept blocks (the teacher is never modified).
    """
    student = copy.deepcopy(teacher).requires_grad_(True)  # a frozen teacher gives a trainable student
    layout = stages(student)
    keep = [keep] * len(layout) if isinstance(keep, int) else list(keep)
    if len(keep) != len(layout):
        raise ValueError(f"keep has {len(keep)} entries but the model has {len(layout)} stages")
    for (name, container, idx), k in zip(layout, keep):
        if k < 1:
            raise ValueError(f"stage {name}: keep at least one block (the one that changes shape)")
        k = min(k, len(idx))
        if container is getattr(student, name, None):  # ResNet stage: drop the tail
            setattr(student, name, nn.Sequential(*list(container)[:k]))
        else:  # flat feature list: keep indices, replace skipped blocks by identities
            for i in idx[k:]:
                container[i] = nn.Identity()
    if not copy_weights:
        for module in student.modules():
            if hasattr(module, "reset_parameters") and module is not student:
                module.reset_parameters()
    return student


def run_stage(model: nn.Module, index: int, x: torch.Tensor) -> torch.Tensor:
    """The output of stage ``index`` of ``model`` for the stage input ``x`` (its blocks in order)."""
    _, container, idx = stages(model)[index]
    for i in idx:
        x = container[i](x)
    return x


def stage_entry_modules(model: nn.Module) -> list[nn.Module]:
    """The first block of each stage: its input is the stage input (for forward pre-hooks)."""
    return [container[idx[0]] for _, container, idx in stages(model)]


def thin_student(arch: str, num_classes: int = 10, *, width: float = 1.0,
                 max_flops_ratio: float = 0.5, input_shape: Sequence[int] = (1, 3, 32, 32),
                 small_input: bool = True) -> tuple[nn.Module, float]:
    """A student of the teacher's depth with every stage thinner: this artifact's alternative to the
    block-skipped student of Fig. 4. Channels are scaled by the largest ``w = width·j/64`` (``j < 64``)
    whose model has at most ``max_flops_ratio`` times the teacher's FLOPs; returns ``(model, w)``.
    Defined for the CIFAR ResNets and MobileNetV3 (``width_mult``); untrained."""
    w = _thin_width(arch, num_classes, width, max_flops_ratio, tuple(input_shape), small_input)
    return _scaled_model(arch, num_classes, w, small_input), w


@functools.lru_cache(maxsize=64)
def _thin_width(arch: str, num_classes: int, width: float, max_flops_ratio: float, input_shape: tuple,
                small_input: bool) -> float:
    """The largest ``width·j/64`` whose model has at most ``max_flops_ratio`` of the FLOPs (bisection:
    FLOPs grow with the width)."""
    budget = max_flops_ratio * count_flops(build_model(arch, num_classes, width=width, small_input=small_input),
                                           input_shape)

    def fits(j: int) -> bool:
        return count_flops(_scaled_model(arch, num_classes, width * j / 64, small_input), input_shape) <= budget

    if not fits(1):
        raise ValueError(f"no width of {arch} reaches {max_flops_ratio} of its FLOPs")
    low, high = 1, 63  # fits(low) holds; find the largest j <= 63 that fits
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if fits(mid) else (low, mid - 1)
    return width * low / 64


def _stage_widths(model: CifarResNet) -> list[int]:
    return [getattr(model, f"layer{i}")[0].conv2.out_channels for i in (1, 2, 3)]


def thin_selection(teacher: CifarResNet, widths: Sequence[int]) -> dict:
    """Which teacher channels a thin CIFAR ResNet of stage ``widths`` keeps (see :func:`slice_thin`):
    ``{"stream": [P1, P2, P3], "inner": {(stage, block): Q}}``, each a list of teacher channel indices in
    the student's channel order.

    A stage's residual stream keeps its most important channels (the sum of ``|γ|`` of the stage's
    last batch norms, and of the stem's for stage 1). The option-A shortcut pads a stage's input with
    zero channels in front and behind, so stream ``P_{i-1}`` reappears shifted in stage ``i``: the thin
    student's stage ``i`` is ``[front pad choice, P_{i-1} + front_T, back pad choice]``, the pads chosen
    among the teacher's own pad channels. Each block's inner channels keep the largest ``|γ|`` of its
    first batch norm."""
    teacher_widths = _stage_widths(teacher)
    layers = [getattr(teacher, f"layer{i}") for i in (1, 2, 3)]

    def importance(stage: int) -> torch.Tensor:
        value = sum(block.bn2.weight.detach().abs() for block in layers[stage])
        return value + (teacher.bn1.weight.detach().abs() if stage == 0 else 0)

    def top(candidates: list[int], score: torch.Tensor, n: int) -> list[int]:
        if n > len(candidates):
            raise ValueError(f"a thin stage needs {n} of {len(candidates)} channels: widths {list(widths)} do "
                             f"not fit the teacher's {teacher_widths}")
        ranked = sorted(candidates, key=lambda c: -float(score[c]))
        return sorted(ranked[:n])

    stream = [top(list(range(teacher_widths[0])), importance(0), widths[0])]
    for i in (1, 2):
        front_t = (teacher_widths[i] - teacher_widths[i - 1]) // 2
        front_s = (widths[i] - widths[i - 1]) // 2
        back_s = widths[i] - widths[i - 1] - front_s
        score = importance(i)
        front = top(list(range(front_t)), score, front_s)
        back = top(list(range(front_t + teacher_widths[i - 1], teacher_widths[i])), score, back_s)
        stream.append(front + [c + front_t for c in stream[i - 1]] + back)
    inner = {(i, b): top(list(range(block.bn1.num_features)), block.bn1.weight.detach().abs(), widths[i])
             for i, layer in enumerate(layers) for b, block in enumerate(layer)}
    return {"stream": stream, "inner": inner}


@torch.no_grad()
def slice_thin(teacher: CifarResNet, student: CifarResNet) -> CifarResNet:
    """Initialise a thin CIFAR ResNet of the teacher's depth with the teacher's weights on the channels
    :func:`thin_selection` keeps (convolutions, batch norms with their running statistics, the
    classifier): a pruned copy of the teacher, the thin student's counterpart of "the teacher's kept
    blocks". Returns ``student``."""
    depth = [len(getattr(m, f"layer{i}")) for m in (teacher, student) for i in (1, 2, 3)]
    if depth[:3] != depth[3:]:
        raise ValueError("a thin student has the teacher's depth")
    chosen = thin_selection(teacher, _stage_widths(student))
    stream = [torch.tensor(c) for c in chosen["stream"]]

    def copy_bn(target: nn.BatchNorm2d, source: nn.BatchNorm2d, index: torch.Tensor) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(target, name).copy_(getattr(source, name)[index])
        target.num_batches_tracked.copy_(source.num_batches_tracked)

    student.conv1.weight.copy_(teacher.conv1.weight[stream[0]])
    copy_bn(student.bn1, teacher.bn1, stream[0])
    for i in range(3):
        pairs = zip(getattr(teacher, f"layer{i + 1}"), getattr(student, f"layer{i + 1}"))
        for b, (t_block, s_block) in enumerate(pairs):
            inputs = stream[i - 1] if (b == 0 and i > 0) else stream[i]
            inner = torch.tensor(chosen["inner"][(i, b)])
            s_block.conv1.weight.copy_(t_block.conv1.weight[inner][:, inputs])
            copy_bn(s_block.bn1, t_block.bn1, inner)
            s_block.conv2.weight.copy_(t_block.conv2.weight[stream[i]][:, inner])
            copy_bn(s_block.bn2, t_block.bn2, stream[i])
    student.fc.weight.copy_(teacher.fc.weight[:, stream[2]])
    student.fc.bias.copy_(teacher.fc.bias)
    return student


def supports_thin(arch: str, from_teacher: bool = False) -> bool:
    """Whether :func:`thin_student` is defined for ``arch`` (CIFAR ResNets, MobileNetV3) and, with
    ``from_teacher``, whether it can start from its teacher's channels (:func:`slice_thin`: CIFAR ResNets)."""
    match = re.fullmatch(r"resnet(\d+)", arch)
    cifar = bool(match) and (int(match.group(1)) - 2) % 6 == 0 and arch not in ("resnet50", "resnet152")
    return cifar or (not from_teacher and arch in ("mobilenet_v3_large", "mobilenet_v3_small"))


def _scaled_model(arch: str, num_classes: int, w: float, small_input: bool) -> nn.Module:
    match = re.fullmatch(r"resnet(\d+)", arch)
    if match and (int(match.group(1)) - 2) % 6 == 0 and arch not in ("resnet50", "resnet152"):
        return build_model(arch, num_classes, width=w)
    if arch in ("mobilenet_v3_large", "mobilenet_v3_small"):
        from torchvision.models.mobilenetv3 import MobileNetV3, _mobilenet_v3_conf

        setting, last_channel = _mobilenet_v3_conf(arch, width_mult=w)
        model = MobileNetV3(setting, last_channel, num_classes=num_classes)
        if small_input:
            model.features[0][0].stride = (1, 1)
        return model
    raise ValueError(f"thin students are defined for the CIFAR ResNets and MobileNetV3, not {arch!r}")


# ----------------------------------------------------------------------------- cost

def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_flops(model: nn.Module, input_shape: Sequence[int] = (1, 3, 32, 32)) -> int:
    """Floating-point operations of one forward pass (a multiply-add counts as 2), per
    ``torch.utils.flop_counter`` (convolutions and matrix products; element-wise ops excluded)."""
    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(*input_shape))
    model.train(was_training)
    return int(counter.get_total_flops())
