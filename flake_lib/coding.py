"""Coded computation: coding groups, encoders and the subtraction decoder (docs/DESIGN.md §2).

A *coding group* holds ``k`` queries ``x_1..x_k``. The encoder makes one parity query ``p``; a parity
model is trained so that ``F_p(p) ≈ Σ_i F(x_i)``. When ``F(x_j)`` is unavailable, the subtraction
decoder reconstructs it from the parity output and the ``k − 1`` available outputs::

    F(x_j) ≈ F_p(p) − Σ_{i ≠ j} F(x_i)

With one parity query per group (``r = 1``) the code recovers at most one unavailable member.

Encoders:

- ``addition``: ``p = Σ_i x_i`` (the paper, any ``k ≥ 2``). Exact for a linear ``F`` with ``F_p = F``.
- ``concatenation`` (ParM): ``k = 2`` puts both images side by side, each resized to half width;
  ``k = 4`` puts the four images in a 2×2 grid, each at half height and half width. ``p`` has the
  shape of one query.

Each code is one :class:`Coder` (after ParM's ``Coder``): :class:`AdditionCoder`,
:class:`ConcatenationCoder` and :class:`WeightedCoder` (the second parity query of ``r = 2``), looked up
by name in :data:`CODERS`; the functions below find the code there.

The serving frontend works on numpy arrays: :func:`encode_np` is the same encoder in numpy (equal to
:func:`encode` bit for bit) and :func:`subtract_decode` rebuilds one output of one group.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

ENCODERS = ("addition", "concatenation")  #: the paper's and ParM's encoders (one parity query)
PARITY_ENCODERS = ENCODERS + ("weighted",)  #: every encoder a parity model can be trained for (:data:`CODERS`)


class DecodingError(ValueError):
    """A group has more unavailable members than the code can recover."""


def make_groups(n: int, k: int, generator: torch.Generator | None = None,
                shuffle: bool = True) -> torch.Tensor:
    """Split query indices ``0..n-1`` into ``n // k`` coding groups of ``k``: a ``(G, k)`` tensor.

    With ``shuffle`` the indices are permuted first (seeded by ``generator``); the ``n % k`` indices
    left over are not grouped.
    """
    if k < 2:
        raise ValueError(f"a coding group needs k >= 2 members, got k={k}")
    if n < k:
        raise ValueError(f"cannot form a coding group of k={k} from {n} queries")
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    return order[: (n // k) * k].view(-1, k)


def add_encode(grouped: torch.Tensor) -> torch.Tensor:
    """Addition encoder: ``(G, k, ...) → (G, ...)``, ``p = Σ_i x_i``."""
    _check_grouped(grouped)
    return grouped.sum(dim=1)


def concat_encode(grouped: torch.Tensor) -> torch.Tensor:
    """ParM's concatenation encoder: ``(G, k, C, H, W) → (G, C, H, W)`` for ``k ∈ {2, 4}``.

    Images are downsampled by area averaging (``k = 2``: width halved, side by side;
    ``k = 4``: both halved, 2×2 grid in row-major order).
    """
    _check_grouped(grouped)
    if grouped.dim() != 5:
        raise ValueError(f"concatenation needs images (G, k, C, H, W), got shape {tuple(grouped.shape)}")
    g, k, c, h, w = grouped.shape
    flat = grouped.reshape(g * k, c, h, w).float()
    if k == 2:
        if w % 2:
            raise ValueError(f"concatenation with k=2 needs an even width, got {w}")
        half = F.avg_pool2d(flat, kernel_size=(1, 2)).view(g, 2, c, h, w // 2)
        return torch.cat([half[:, 0], half[:, 1]], dim=-1)
    if k == 4:
        if h % 2 or w % 2:
            raise ValueError(f"concatenation with k=4 needs even height and width, got {h}x{w}")
        q = F.avg_pool2d(flat, kernel_size=2).view(g, 4, c, h // 2, w // 2)
        top = torch.cat([q[:, 0], q[:, 1]], dim=-1)
        bottom = torch.cat([q[:, 2], q[:, 3]], dim=-1)
        return torch.cat([top, bottom], dim=-2)
    raise ValueError(f"the concatenation encoder supports k = 2 or 4, got k={k}")


def encode(grouped: torch.Tensor, encoder: str = "addition") -> torch.Tensor:
    """Encode coding groups ``(G, k, ...)`` into parity queries with the named encoder's :class:`Coder`."""
    _check_grouped(grouped)
    return coder(encoder, grouped.shape[1]).encode(grouped)


def output_weights(k: int, encoder: str = "addition") -> tuple[float, ...]:
    """The weights ``w_i`` of a parity model's target ``Σ_i w_i F(x_i)``: all 1, except for the
    ``weighted`` code (:func:`two_parity_weights`)."""
    return coder(encoder, k).weights


def parity_target(member_outputs: torch.Tensor, encoder: str = "addition") -> torch.Tensor:
    """What a parity model of ``encoder`` is trained to output: ``Σ_i w_i F(x_i)`` from ``(G, k, C)``
    member outputs (``w_i = 1`` but for the ``weighted`` code)."""
    return coder(encoder, member_outputs.shape[1]).target(member_outputs)


def two_parity_weights(k: int) -> tuple[float, ...]:
    """The centred weights ``w_i = i − (k − 1)/2`` of the second parity query (``k = 4``: −1.5, −0.5,
    0.5, 1.5). Distinct (so any two members can be solved for), small (the input ``p_w`` stays in the
    range of a sum of ``k`` images) and, for even ``k``, never 0 (so alone it also rebuilds one member);
    their worst pair's condition number is :func:`two_parity_condition`."""
    if k < 2 or k % 2:
        raise ValueError(f"the weighted parity code is defined for even k >= 2, got k={k}")
    return tuple(float(i - (k - 1) / 2) for i in range(k))


def encode_np(grouped: np.ndarray, encoder: str = "addition") -> np.ndarray:
    """:func:`encode` on numpy arrays ``(G, k, ...) → (G, ...)``, without torch: ``addition`` is
    ``Σ_i x_i``; ``concatenation`` averages pixel pairs (``k = 2``) or 2×2 blocks (``k = 4``) in the
    order torch's ``avg_pool2d`` adds them, so both encoders equal the torch ones exactly."""
    grouped = np.asarray(grouped)
    _check_grouped(grouped)
    if encoder not in ENCODERS:
        raise ValueError(f"unknown encoder {encoder!r}; known: {', '.join(ENCODERS)}")
    return coder(encoder, grouped.shape[1]).encode_np(grouped)


def _concat_encode_np(grouped: np.ndarray) -> np.ndarray:
    """:func:`concat_encode` in numpy, adding in the order torch's ``avg_pool2d`` does (equal bit for bit)."""
    if grouped.ndim != 5:
        raise ValueError(f"concatenation needs images (G, k, C, H, W), got shape {grouped.shape}")
    k, h, w = grouped.shape[1], grouped.shape[3], grouped.shape[4]
    x = grouped.astype(np.float32, copy=False)
    if k == 2:
        if w % 2:
            raise ValueError(f"concatenation with k=2 needs an even width, got {w}")
        half = (x[..., 0::2] + x[..., 1::2]) / np.float32(2)
        return np.concatenate([half[:, 0], half[:, 1]], axis=-1)
    if k == 4:
        if h % 2 or w % 2:
            raise ValueError(f"concatenation with k=4 needs even height and width, got {h}x{w}")
        q = (x[..., 0::2, 0::2] + x[..., 0::2, 1::2] + x[..., 1::2, 0::2] + x[..., 1::2, 1::2]) / np.float32(4)
        top = np.concatenate([q[:, 0], q[:, 1]], axis=-1)
        bottom = np.concatenate([q[:, 2], q[:, 3]], axis=-1)
        return np.concatenate([top, bottom], axis=-2)
    raise ValueError(f"the concatenation encoder supports k = 2 or 4, got k={k}")


def subtract_decode(parity_output, known_outputs):
    """The subtraction decoder for one unavailable output: ``F(x_j) ≈ F_p(p) − Σ_{i≠j} F(x_i)``.

    ``parity_output`` is ``F_p(p)``; ``known_outputs`` the ``k − 1`` available outputs ``F(x_i)`` of
    the group (numpy arrays or tensors of the same shape). Flake's cache-partner recovery uses it with
    the partners' outputs: ``F_p(x + Σ_c x_c) − Σ_c F(x_c)``.
    """
    rebuilt = parity_output
    for output in known_outputs:
        rebuilt = rebuilt - output
    return rebuilt


def decode(parity_output: torch.Tensor, outputs: torch.Tensor,
           available: torch.Tensor) -> torch.Tensor:
    """Subtraction decoder: fill in the unavailable member of each group.

    ``parity_output`` ``(G, D)``, ``outputs`` ``(G, k, D)`` (values at unavailable positions are
    ignored, NaN allowed), ``available`` bool ``(G, k)``. Returns ``(G, k, D)`` where each unavailable
    ``j`` holds ``F_p(p) − Σ_{i≠j} F(x_i)``. Raises DecodingError for a group with more than one
    unavailable member.
    """
    if outputs.dim() != 3 or parity_output.shape != (outputs.shape[0], outputs.shape[2]):
        raise ValueError(f"shapes do not match: parity output {tuple(parity_output.shape)}, "
                         f"outputs {tuple(outputs.shape)} (expected (G, D) and (G, k, D))")
    if available.shape != outputs.shape[:2]:
        raise ValueError(f"available has shape {tuple(available.shape)}, expected {tuple(outputs.shape[:2])}")
    missing = (~available).sum(dim=1)
    if (missing > 1).any():
        g = int(torch.nonzero(missing > 1)[0])
        raise DecodingError(f"group {g} has {int(missing[g])} unavailable members; a code with one "
                            "parity query recovers at most one per group")
    mask = available.unsqueeze(-1)
    known = torch.where(mask, outputs, torch.zeros_like(outputs))
    rebuilt = (parity_output - known.sum(dim=1)).unsqueeze(1).expand_as(outputs)
    return torch.where(mask, outputs, rebuilt)


def decode_each(parity_output: torch.Tensor, outputs: torch.Tensor, encoder: str = "addition") -> torch.Tensor:
    """Reconstruction of every member as if it alone were unavailable: ``(G, k, D)``.

    ``rec_j = F_p(p) − (Σ_i F(x_i) − F(x_j))``; used to evaluate degraded-mode accuracy. For the
    ``weighted`` code, ``rec_j = (F_p(p_w) − Σ_{i≠j} w_i F(x_i)) / w_j``.
    """
    return coder(encoder, outputs.shape[1]).decode_each(parity_output, outputs)


def decode_pairs(parity_sum: torch.Tensor, parity_weighted: torch.Tensor, outputs: torch.Tensor,
                 a: int, b: int, weights) -> torch.Tensor:
    """:func:`two_parity_decode` for members ``a`` and ``b`` of every group at once: ``(G, 2, D)``.

    ``s₁ = F_p(p) − Σ_{i∉{a,b}} F(x_i)``, ``s_w = F_w(p_w) − Σ_{i∉{a,b}} w_i F(x_i)``;
    ``F(x_b) = (s_w − w_a s₁) / (w_b − w_a)``, ``F(x_a) = s₁ − F(x_b)``.
    """
    w = torch.tensor(weights, dtype=outputs.dtype, device=outputs.device)
    keep = [i for i in range(outputs.shape[1]) if i not in (a, b)]
    known = outputs[:, keep]
    s1 = parity_sum - known.sum(dim=1)
    sw = parity_weighted - (known * w[keep].view(1, -1, 1)).sum(dim=1)
    f_b = (sw - w[a] * s1) / (w[b] - w[a])
    return torch.stack([s1 - f_b, f_b], dim=1)


def _check_grouped(grouped) -> None:
    if len(grouped.shape) < 3 or grouped.shape[1] < 2:
        raise ValueError(f"expected coding groups (G, k>=2, ...), got shape {tuple(grouped.shape)}")


def weighted_encode(grouped, weights):
    """A second parity query with a different linear code: ``p_w = Σ_i w_i x_i`` (``r = 2``).

    ``grouped`` is ``(G, k, ...)`` (numpy or torch); its parity model is trained to ``Σ_i w_i F(x_i)``.
    """
    w = torch.as_tensor(weights, dtype=torch.float32) if isinstance(grouped, torch.Tensor) \
        else np.asarray(weights, dtype=np.float32)
    if w.shape[0] != grouped.shape[1]:
        raise ValueError(f"{len(w)} weights for groups of {grouped.shape[1]}")
    shape = (1, -1) + (1,) * (grouped.ndim - 2)
    return (grouped * w.reshape(shape)).sum(1)


def two_parity_condition(weights) -> float:
    """The largest 2-norm condition number of ``[[1, 1], [w_a, w_b]]`` over every pair ``a < b``.

    With two members ``a, b`` of a group unavailable, :func:`two_parity_decode` solves that system; its
    condition number bounds how much the parity models' errors are amplified in the rebuilt outputs.
    """
    w = np.asarray(weights, dtype=np.float64)
    return max(np.linalg.cond(np.array([[1.0, 1.0], [w[a], w[b]]]))
               for a in range(len(w)) for b in range(a + 1, len(w)))


def two_parity_decode(parity_sum, parity_weighted, outputs, unavailable, weights):
    """Rebuild up to two unavailable outputs of a group from two parity outputs (``r = 2``).

    ``parity_sum ≈ Σ_i F(x_i)`` and ``parity_weighted ≈ Σ_i w_i F(x_i)``; ``outputs`` is ``(k, ...)``
    with anything in the rows ``unavailable``. Subtracting the available members leaves
    ``s₁ = Σ_{u} F(x_u)`` and ``s_w = Σ_{u} w_u F(x_u)``: one member is ``s₁`` (the subtraction decoder);
    two members ``a, b`` solve ``[[1, 1], [w_a, w_b]] [F(x_a), F(x_b)]ᵀ = [s₁, s_w]ᵀ``. Returns ``outputs``
    with those rows replaced (a numpy array).
    """
    outputs = np.array(outputs, dtype=np.float64, copy=True)
    w = np.asarray(weights, dtype=np.float64)
    missing = sorted(set(int(u) for u in unavailable))
    if len(missing) > 2:
        raise DecodingError(f"{len(missing)} unavailable members; two parity queries recover at most 2")
    if not missing:
        return outputs
    known = [i for i in range(len(outputs)) if i not in missing]
    s1 = np.asarray(parity_sum, dtype=np.float64) - outputs[known].sum(0)
    if len(missing) == 1:
        outputs[missing[0]] = s1
        return outputs
    a, b = missing
    sw = np.asarray(parity_weighted, dtype=np.float64) - np.tensordot(w[known], outputs[known], axes=1)
    # F_a + F_b = s1, w_a F_a + w_b F_b = sw  =>  F_b = (sw − w_a s1) / (w_b − w_a)
    if np.isclose(w[a], w[b]):
        raise DecodingError(f"members {a} and {b} have the same weight {w[a]}: the system is singular")
    outputs[b] = (sw - w[a] * s1) / (w[b] - w[a])
    outputs[a] = s1 - outputs[b]
    return outputs


# ----------------------------------------------------------------------------- one class per code

class Coder:
    """A linear code of ``k`` queries with one parity query (after ParM's ``Coder``): how queries are
    encoded (:meth:`encode`, :meth:`encode_np`), what the parity model learns (:meth:`target`:
    ``Σ_i w_i F(x_i)``, with :attr:`weights` ``w``) and how a member is rebuilt (:meth:`decode_each`:
    ``F(x_j) ≈ (F_p(p) − Σ_{i≠j} w_i F(x_i)) / w_j``). A new code is a subclass registered in
    :data:`CODERS`; every other function of this module finds it by its name."""

    name = ""

    def __init__(self, k: int):
        if k < 2:
            raise ValueError(f"a coding group needs k >= 2 members, got k={k}")
        self.k = k

    @property
    def weights(self) -> tuple[float, ...]:
        return (1.0,) * self.k

    def encode(self, grouped: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode_np(self, grouped: np.ndarray) -> np.ndarray:
        raise ValueError(f"the {self.name} code has no numpy encoder (the serving frontend does not use it)")

    def target(self, member_outputs: torch.Tensor) -> torch.Tensor:
        w = torch.tensor(self.weights, dtype=member_outputs.dtype, device=member_outputs.device)
        return (member_outputs * w.view(1, -1, 1)).sum(dim=1)

    def decode_each(self, parity_output: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        w = torch.tensor(self.weights, dtype=outputs.dtype, device=outputs.device).view(1, -1, 1)
        weighted = outputs * w
        return (parity_output.unsqueeze(1) - weighted.sum(dim=1, keepdim=True) + weighted) / w

    def __repr__(self) -> str:
        return f"{type(self).__name__}(k={self.k})"


class AdditionCoder(Coder):
    """The paper's code: ``p = Σ_i x_i``, target ``Σ_i F(x_i)``, ``F(x_j) ≈ F_p(p) − Σ_{i≠j} F(x_i)``."""

    name = "addition"

    def encode(self, grouped):
        return add_encode(grouped)

    def encode_np(self, grouped):
        return np.asarray(grouped).sum(axis=1)

    def target(self, member_outputs):
        return member_outputs.sum(dim=1)

    def decode_each(self, parity_output, outputs):
        return parity_output.unsqueeze(1) - outputs.sum(dim=1, keepdim=True) + outputs


class ConcatenationCoder(AdditionCoder):
    """ParM's code: the ``k`` queries downsampled into one image (:func:`concat_encode`); the parity
    model learns ``Σ_i F(x_i)`` and decodes by subtraction, as the addition code."""

    name = "concatenation"

    def encode(self, grouped):
        return concat_encode(grouped)

    def encode_np(self, grouped):
        return _concat_encode_np(np.asarray(grouped))


class WeightedCoder(Coder):
    """The second parity query of ``r = 2``: ``p_w = Σ_i w_i x_i`` with :func:`two_parity_weights`."""

    name = "weighted"

    def __init__(self, k: int):
        super().__init__(k)
        self._weights = two_parity_weights(k)

    @property
    def weights(self):
        return self._weights

    def encode(self, grouped):
        return weighted_encode(grouped, self._weights)


#: Every code by name: the one table a new code is added to.
CODERS: dict[str, type[Coder]] = {c.name: c for c in (AdditionCoder, ConcatenationCoder, WeightedCoder)}


def coder(encoder: str, k: int) -> Coder:
    """The :class:`Coder` of ``encoder`` for groups of ``k``."""
    if encoder not in CODERS:
        raise ValueError(f"unknown encoder {encoder!r}; known: {', '.join(CODERS)}")
    return CODERS[encoder](k)
