import numpy as np
import pytest
import torch
from torch import nn

from flake_lib import coding


@pytest.mark.parametrize("k", [2, 3, 4])
def test_addition_code_is_exact_for_a_linear_model(k):
    torch.manual_seed(k)
    linear = nn.Linear(48, 7, bias=False).double()
    x = torch.randn(30, 48, dtype=torch.float64)
    groups = coding.make_groups(len(x), k, torch.Generator().manual_seed(0))
    grouped = x[groups]
    outputs = linear(grouped)  # (G, k, 7)
    parity = linear(coding.add_encode(grouped))
    for j in range(k):  # any one member unavailable
        available = torch.ones(len(groups), k, dtype=torch.bool)
        available[:, j] = False
        damaged = outputs.clone()
        damaged[:, j] = float("nan")  # the decoder must not read it
        rebuilt = coding.decode(parity, damaged, available)
        torch.testing.assert_close(rebuilt, outputs, rtol=0, atol=1e-10)
    torch.testing.assert_close(coding.decode_each(parity, outputs), outputs, rtol=0, atol=1e-10)


def test_decoder_on_hand_computed_values():
    parity = torch.tensor([[10.0, 1.0]])
    outputs = torch.tensor([[[3.0, 0.5], [0.0, 0.0], [4.0, -1.0]]])
    available = torch.tensor([[True, False, True]])
    rebuilt = coding.decode(parity, outputs, available)
    assert rebuilt[0, 1].tolist() == [3.0, 1.5]  # 10-3-4, 1-0.5+1
    assert rebuilt[0, 0].tolist() == [3.0, 0.5]  # available members are passed through


def test_decoder_refuses_two_unavailable_members():
    parity = torch.zeros(2, 3)
    outputs = torch.zeros(2, 3, 3)
    available = torch.tensor([[True, True, True], [False, True, False]])
    with pytest.raises(coding.DecodingError, match="group 1 has 2 unavailable"):
        coding.decode(parity, outputs, available)


def test_decoder_checks_shapes():
    with pytest.raises(ValueError, match="shapes do not match"):
        coding.decode(torch.zeros(2, 4), torch.zeros(2, 2, 3), torch.ones(2, 2, dtype=torch.bool))


def test_make_groups_partitions_the_batch():
    groups = coding.make_groups(11, 3, torch.Generator().manual_seed(1))
    assert groups.shape == (3, 3)
    assert len(set(groups.flatten().tolist())) == 9 and groups.max() < 11
    assert coding.make_groups(6, 2, shuffle=False).tolist() == [[0, 1], [2, 3], [4, 5]]
    with pytest.raises(ValueError):
        coding.make_groups(5, 1)


def test_encoders_keep_the_query_shape():
    grouped = torch.rand(5, 2, 3, 32, 32)
    assert coding.encode(grouped, "addition").shape == (5, 3, 32, 32)
    assert coding.encode(grouped, "concatenation").shape == (5, 3, 32, 32)
    assert coding.encode(torch.rand(5, 4, 3, 32, 32), "concatenation").shape == (5, 3, 32, 32)
    assert coding.add_encode(torch.rand(5, 3, 10)).shape == (5, 10)


def test_concatenation_places_downsampled_images():
    x = torch.arange(2 * 1 * 2 * 4, dtype=torch.float32).view(1, 2, 1, 2, 4)
    p = coding.concat_encode(x)[0, 0]
    # left half: x1 averaged over pairs of columns; right half: x2
    assert p[:, :2].tolist() == [[0.5, 2.5], [4.5, 6.5]]
    assert p[:, 2:].tolist() == [[8.5, 10.5], [12.5, 14.5]]
    four = torch.stack([torch.full((1, 2, 2), float(i)) for i in range(4)]).unsqueeze(0)
    grid = coding.concat_encode(four)[0, 0]
    assert grid.tolist() == [[0.0, 1.0], [2.0, 3.0]]


def test_concatenation_rejects_other_k_and_encoders():
    with pytest.raises(ValueError, match="k = 2 or 4"):
        coding.concat_encode(torch.rand(2, 3, 3, 8, 8))
    with pytest.raises(ValueError, match="unknown encoder"):
        coding.encode(torch.rand(2, 2, 3, 8, 8), "xor")


@pytest.mark.parametrize("encoder,k", [("addition", 2), ("addition", 3), ("addition", 4),
                                       ("concatenation", 2), ("concatenation", 4)])
def test_numpy_encoder_equals_the_torch_encoder_exactly(encoder, k):
    grouped = 10 * torch.randn(6, k, 3, 16, 16, generator=torch.Generator().manual_seed(k))
    assert torch.equal(torch.from_numpy(coding.encode_np(grouped.numpy(), encoder)), coding.encode(grouped, encoder))
    with pytest.raises(ValueError):
        coding.encode_np(grouped.numpy(), "xor")


def test_subtract_decode_by_hand_and_against_decode():
    parity, known = np.array([10.0, 1.0]), [np.array([3.0, 0.5]), np.array([4.0, -1.0])]
    assert coding.subtract_decode(parity, known).tolist() == [3.0, 1.5]  # 10-3-4, 1-0.5+1
    outputs = torch.randn(4, 3, 5, dtype=torch.float64)
    parity = outputs.sum(dim=1)
    available = torch.ones(4, 3, dtype=torch.bool)
    available[:, 1] = False
    via_decode = coding.decode(parity, outputs, available)[:, 1]
    torch.testing.assert_close(coding.subtract_decode(parity, [outputs[:, 0], outputs[:, 2]]), via_decode)


@pytest.mark.parametrize("encoder", list(coding.CODERS))
def test_every_coder_rebuilds_each_member_of_a_linear_model(encoder):
    """With F linear and F_p = F, each code's decoder returns every member exactly (up to rounding)."""
    k = 4
    code = coding.coder(encoder, k)
    outputs = torch.randn(3, k, 10, dtype=torch.float64)
    rebuilt = code.decode_each(code.target(outputs), outputs)
    assert torch.allclose(rebuilt, outputs)
    assert set(coding.PARITY_ENCODERS) == set(coding.CODERS) and code.name == encoder
