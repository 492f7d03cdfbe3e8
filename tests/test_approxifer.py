"""ApproxIFER's Berrut code and the r = 2 learned-code decoder, against exact cases."""

import itertools

import numpy as np
import pytest
import torch

from flake_lib import approxifer, coding


def test_chebyshev_points_are_the_papers():
    assert approxifer.data_points(2) == pytest.approx([np.cos(np.pi / 4), np.cos(3 * np.pi / 4)])
    assert approxifer.worker_points(3) == pytest.approx([1.0, 0.5, -0.5])


def test_berrut_weights_sum_to_one_and_interpolate_their_nodes():
    nodes = approxifer.worker_points(5)
    w = approxifer.berrut_weights(nodes, np.concatenate([approxifer.data_points(4), nodes[[2]]]))
    assert w.sum(1) == pytest.approx(np.ones(5))
    assert w[-1] == pytest.approx(np.eye(5)[2])


def test_berrut_by_hand_for_two_nodes():
    # nodes 1, -1, at 0: weights (1/(0-1)) / (1/(0-1) - 1/(0+1)) = (-1)/(-2) = 1/2 for each
    w = approxifer.berrut_weights(np.array([1.0, -1.0]), np.array([0.0, 0.5]))
    assert w[0] == pytest.approx([0.5, 0.5])
    # at 0.5: (1/(-0.5)) / (1/(-0.5) - 1/1.5) = -2 / (-2 - 2/3) = 0.75
    assert w[1] == pytest.approx([0.75, 0.25])


@pytest.mark.parametrize("k,s", [(2, 1), (4, 1), (4, 2), (8, 1)])
def test_decoder_is_exact_for_a_constant_model(k, s):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(k, 3, 4, 4)).astype(np.float32)
    coded = approxifer.encode(x, k + s)
    constant = np.array([1.0, -2.0, 3.0])
    results = np.stack([constant for _ in coded])
    for missing in itertools.combinations(range(k + s), s):
        kept = np.array([i for i in range(k + s) if i not in missing])
        assert approxifer.decode(results[kept], kept, k, k + s) == pytest.approx(np.tile(constant, (k, 1)))


def test_encoder_passes_through_the_queries_at_the_data_points():
    x = np.random.default_rng(1).normal(size=(3, 2)).astype(np.float64)
    w = approxifer.berrut_weights(approxifer.data_points(3), approxifer.data_points(3))
    assert w @ x == pytest.approx(x)


def test_error_falls_as_more_workers_compute_a_smooth_model():
    k = 4
    x = np.linspace(-1.0, 1.0, k)[:, None] * np.ones((k, 2))

    def smooth(batch):
        return np.sin(batch) + batch ** 2

    errors = []
    for n in (5, 9, 17, 33, 65):  # odd N: no worker point falls on a data point (2Kn ≠ (2j+1)N)
        y = smooth(approxifer.encode(x, n))
        errors.append(np.abs(approxifer.decode(y, np.arange(n), k, n) - smooth(x)).max())
    assert all(later < earlier for earlier, later in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.1 * errors[0]  # Berrut converges as O(1/N): 0.26 -> 0.018 here


def test_decode_rejects_unsorted_workers():
    with pytest.raises(ValueError, match="sorted"):
        approxifer.decode(np.zeros((2, 3)), np.array([1, 0]), 2, 3)


def test_evaluate_counts_every_decoded_answer():
    rng = np.random.default_rng(2)
    images = rng.normal(size=(40, 1, 2, 2)).astype(np.float32)
    labels = np.zeros(40, dtype=int)

    def always_class_zero(batch):  # a constant model: every decoded answer is class 0
        out = np.zeros((len(batch), 10))
        out[:, 0] = 1.0
        return out

    acc = approxifer.evaluate(always_class_zero, images, labels, k=4, s=2)
    assert (acc.full_top1, acc.degraded_top1, acc.n_queries, acc.n_missing_sets) == (1.0, 1.0, 40, 15)
    assert acc.extra_inferences_per_query == 0.5
    assert acc.overall_top1(0.1) == pytest.approx(1.0)


def test_two_parity_decoder_is_exact_for_a_linear_model_with_any_two_missing():
    rng = np.random.default_rng(3)
    k, weights = 4, [-1.5, -0.5, 0.5, 1.5]
    matrix = rng.normal(size=(12, 5))  # F(x) = x @ matrix, linear
    x = rng.normal(size=(1, k, 12))
    outputs = x[0] @ matrix
    p_sum = x[0].sum(0) @ matrix  # F(p) for p = Σ x_i
    p_weighted = coding.weighted_encode(x, weights)[0] @ matrix
    for missing in list(itertools.combinations(range(k), 2)) + [(i,) for i in range(k)]:
        damaged = outputs.copy()
        damaged[list(missing)] = np.nan
        rebuilt = coding.two_parity_decode(p_sum, p_weighted, damaged, missing, weights)
        assert rebuilt == pytest.approx(outputs)


def test_two_parity_decoder_refuses_three_missing_and_equal_weights():
    with pytest.raises(coding.DecodingError):
        coding.two_parity_decode(np.zeros(2), np.zeros(2), np.zeros((4, 2)), [0, 1, 2], [1, 2, 3, 4])
    with pytest.raises(coding.DecodingError, match="same weight"):
        coding.two_parity_decode(np.zeros(2), np.zeros(2), np.zeros((4, 2)), [0, 1], [1, 1, 3, 4])


def test_condition_number_by_hand():
    # [[1, 1], [1, 2]]: singular values from eig of A A^T = [[2, 3], [3, 5]]: (7 ± sqrt(45)) / 2
    expected = np.sqrt((7 + np.sqrt(45)) / (7 - np.sqrt(45)))
    assert coding.two_parity_condition([1, 2]) == pytest.approx(expected)
    assert coding.two_parity_condition([-1.5, -0.5, 0.5, 1.5]) < coding.two_parity_condition([1, 2, 3, 4])


def test_weighted_code_trains_to_the_weighted_sum_and_decodes_one_and_two_missing_for_a_linear_model():
    torch.manual_seed(4)
    k = 4
    weights = coding.two_parity_weights(k)
    assert weights == (-1.5, -0.5, 0.5, 1.5)
    linear = torch.nn.Linear(12, 5, bias=False).double().requires_grad_(False)
    grouped = torch.randn(6, k, 12, dtype=torch.float64)
    outputs = linear(grouped)  # (G, k, 5)
    p_sum = linear(coding.encode(grouped, "addition"))
    p_weighted = linear(coding.encode(grouped, "weighted"))
    # a linear F is its own parity model for the weighted target Σ w_i F(x_i)
    torch.testing.assert_close(p_weighted, coding.parity_target(outputs, "weighted"), rtol=0, atol=1e-10)
    torch.testing.assert_close(coding.decode_each(p_weighted, outputs, "weighted"), outputs, rtol=0, atol=1e-10)
    for a, b in itertools.combinations(range(k), 2):  # the vectorised pair decoder, every pair
        rebuilt = coding.decode_pairs(p_sum, p_weighted, outputs, a, b, weights)
        torch.testing.assert_close(rebuilt, outputs[:, [a, b]], rtol=0, atol=1e-9)
        one = coding.two_parity_decode(p_sum[0].numpy(), p_weighted[0].numpy(), outputs[0].numpy(), [a, b], weights)
        assert one[[a, b]] == pytest.approx(rebuilt[0].numpy())


def test_weighted_code_needs_an_even_group_and_the_targets_by_hand():
    with pytest.raises(ValueError, match="even k"):
        coding.two_parity_weights(3)
    members = torch.tensor([[[1.0], [2.0], [3.0], [4.0]]])
    assert coding.parity_target(members, "weighted").item() == pytest.approx(-1.5 - 1.0 + 1.5 + 6.0)
    assert coding.parity_target(members, "addition").item() == 10.0
    assert coding.output_weights(2, "concatenation") == (1.0, 1.0)
