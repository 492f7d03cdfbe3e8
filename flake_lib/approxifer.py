"""ApproxIFER: training-free coded inference with Berrut's rational interpolation.

ApproxIFER (Soleymani, Ali, Mahdavifar, Avestimehr, AAAI 2022) protects ``K`` queries with ``N = K + S``
workers that all run the *unchanged* model ``F``. The ``K`` queries sit at the Chebyshev points of the
first kind and the ``N`` workers at those of the second kind::

    α_j = cos((2j + 1)π / (2K)),   j = 0..K−1          (data points)
    z_n = cos(nπ / N),             n = 0..N−1          (worker points)

Berrut's rational interpolant through nodes ``t_0 > t_1 > …`` with values ``v_i`` is::

    r(t) = Σ_i [(−1)^i / (t − t_i)] v_i  /  Σ_i (−1)^i / (t − t_i)

It has no poles on the real line, whatever the nodes. The encoder evaluates the interpolant of the
queries, ``u(α_j) = x_j``, at the worker points: worker ``n`` computes ``F(u(z_n))``. The decoder
interpolates whichever ``N − S`` (or more) results arrived, each at its worker point, and evaluates
that interpolant at ``α_j`` to approximate ``F(x_j)``. The code is not systematic: no worker computes
``F(x_j)`` itself, so every answer is decoded, and it is exact only when ``F ∘ u`` is a rational
function of this form (a constant ``F``, for example). Its cost per protected query is
``N / K − 1 = S / K`` extra inferences of ``F``.

Accuracies (this artifact's definitions, since the paper's ``A_a`` assumes a systematic code):
``full`` is the accuracy of the ``K`` decoded answers with all ``N`` results in; ``degraded`` the
accuracy with ``S`` results missing, over every choice of the missing ones (or a seeded sample of
them); the overall accuracy at ``f_u`` is ``(1 − f_u)·full + f_u·degraded``, with ``f_u`` the share of
groups that lost ``S`` results — the paper's Eq. for ``A_o`` with ``A_a`` replaced by ``full``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np


def data_points(k: int) -> np.ndarray:
    """``α_j = cos((2j + 1)π / (2K))``, ``j = 0..K−1``: Chebyshev points of the first kind (decreasing)."""
    return np.cos((2 * np.arange(k) + 1) * np.pi / (2 * k))


def worker_points(n: int) -> np.ndarray:
    """``z_n = cos(nπ / N)``, ``n = 0..N−1``: Chebyshev points of the second kind (decreasing)."""
    return np.cos(np.arange(n) * np.pi / n)


def berrut_weights(nodes: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The ``(len(at), len(nodes))`` matrix ``W`` with ``r(at_a) = Σ_i W[a, i] v_i`` for Berrut's interpolant.

    ``W[a, i] = [(−1)^i / (at_a − t_i)] / Σ_l (−1)^l / (at_a − t_l)``, the nodes ``t_i`` taken in the given
    order (decreasing, as the Chebyshev points are). A point that equals a node takes that node's value.
    Every row sums to 1.
    """
    nodes, at = np.asarray(nodes, dtype=np.float64), np.asarray(at, dtype=np.float64)
    diff = at[:, None] - nodes[None, :]
    exact = np.isclose(diff, 0.0, rtol=0.0, atol=1e-14)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = ((-1.0) ** np.arange(len(nodes)))[None, :] / diff
        weights = terms / terms.sum(axis=1, keepdims=True)
    for a in np.flatnonzero(exact.any(axis=1)):  # the interpolant passes through its nodes
        weights[a] = exact[a] / exact[a].sum()
    return weights


def encode(queries: np.ndarray, n: int) -> np.ndarray:
    """The ``N`` coded queries ``u(z_n) = Σ_j W[n, j] x_j`` for ``K`` queries stacked on axis 0."""
    queries = np.asarray(queries)
    w = berrut_weights(data_points(len(queries)), worker_points(n))
    return np.tensordot(w, queries.astype(np.float64), axes=1).astype(queries.dtype, copy=False)


def decode(results: np.ndarray, returned: np.ndarray, k: int, n: int) -> np.ndarray:
    """Approximations of ``F(x_0..x_{K−1})`` from the results of the workers ``returned`` (sorted indices).

    ``results[l]`` is ``F(u(z_{returned[l]}))``; the interpolant through those points is evaluated at α.
    """
    returned = np.asarray(returned)
    if len(returned) == 0:
        raise ValueError("no worker returned a result")
    if np.any(np.diff(returned) <= 0):
        raise ValueError("returned worker indices must be sorted and distinct")
    w = berrut_weights(worker_points(n)[returned], data_points(k))
    return np.tensordot(w, np.asarray(results, dtype=np.float64), axes=1)


def missing_sets(n: int, s: int, max_sets: int | None = None, seed: int = 0) -> list[tuple[int, ...]]:
    """Every choice of ``s`` missing workers out of ``n``, or a seeded sample of ``max_sets`` of them."""
    sets = list(itertools.combinations(range(n), s))
    if max_sets is not None and len(sets) > max_sets:
        pick = np.random.default_rng(seed).choice(len(sets), size=max_sets, replace=False)
        sets = [sets[i] for i in sorted(pick)]
    return sets


@dataclass(frozen=True)
class Accuracy:
    """ApproxIFER's accuracies for one ``(K, S)``: fractions in [0, 1]."""

    k: int
    s: int
    full_top1: float
    full_top5: float
    degraded_top1: float
    degraded_top5: float
    n_queries: int
    n_missing_sets: int

    @property
    def n(self) -> int:
        return self.k + self.s

    @property
    def extra_inferences_per_query(self) -> float:
        """``N / K − 1 = S / K``."""
        return self.s / self.k

    def overall_top1(self, f_u: float) -> float:
        """``(1 − f_u)·full + f_u·degraded``."""
        return (1 - f_u) * self.full_top1 + f_u * self.degraded_top1


def _hits(outputs: np.ndarray, labels: np.ndarray) -> tuple[int, int]:
    top5 = np.argsort(-outputs, axis=-1)[..., :5]
    return int((top5[..., 0] == labels).sum()), int((top5 == labels[..., None]).any(-1).sum())


def evaluate(model_outputs, images: np.ndarray, labels: np.ndarray, k: int, s: int, seed: int = 0,
             max_missing_sets: int | None = None, batch_groups: int = 64) -> Accuracy:
    """Measure ApproxIFER on ``images``: disjoint seeded groups of ``K``, ``N = K + S`` coded queries each.

    ``model_outputs(batch) -> logits`` runs ``F`` on a float32 array ``(B, C, H, W)``. Full accuracy
    decodes from all ``N`` results; degraded accuracy from each set of ``N − S`` results
    (:func:`missing_sets`), every decoded answer counted.
    """
    n = k + s
    order = np.random.default_rng(seed).permutation(len(images))
    groups = order[: len(order) // k * k].reshape(-1, k)
    sets = missing_sets(n, s, max_missing_sets, seed)
    full, degraded, queries = np.zeros(2), np.zeros(2), 0
    w_enc = berrut_weights(data_points(k), worker_points(n)).astype(np.float32)
    w_full = berrut_weights(worker_points(n), data_points(k))
    kept_sets = [[i for i in range(n) if i not in miss] for miss in sets]
    w_missing = [berrut_weights(worker_points(n)[kept], data_points(k)) for kept in kept_sets]
    for start in range(0, len(groups), batch_groups):
        g = groups[start:start + batch_groups]
        x = images[g].astype(np.float32)  # (G, K, C, H, W)
        coded = np.einsum("nk,gk...->gn...", w_enc, x)  # (G, N, C, H, W)
        y = np.asarray(model_outputs(coded.reshape(-1, *x.shape[2:])), dtype=np.float64)
        y = y.reshape(len(g), n, -1)
        truth = labels[g]
        full += _hits(np.einsum("kn,gnc->gkc", w_full, y), truth)
        for w, kept in zip(w_missing, kept_sets):
            degraded += _hits(np.einsum("kn,gnc->gkc", w, y[:, kept]), truth)
        queries += g.size
    return Accuracy(k=k, s=s, full_top1=full[0] / queries, full_top5=full[1] / queries,
                    degraded_top1=degraded[0] / (queries * len(sets)),
                    degraded_top5=degraded[1] / (queries * len(sets)),
                    n_queries=queries, n_missing_sets=len(sets))
