"""The ring's building blocks, in one process: partial attention with its log-sum-exp, and the merge."""

import torch

from pid.parallel.ring import attend_with_lse, attend_with_lse_math, merge


def test_merged_partials_equal_attention_over_all_keys_and_hidden_keys_count_for_nothing():
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, n, 8, generator=gen) for n in (5, 11, 11))
    full = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    bias = torch.zeros(2, 1, 1, 4)
    bias[0, ..., 1:] = float("-inf")
    bias[1] = float("-inf")  # sample 1: every key of this block hidden
    hidden = attend_with_lse(q, k[..., :4, :], v[..., :4, :], bias)
    assert torch.equal(hidden[0][1], torch.zeros_like(hidden[0][1])) and torch.isinf(hidden[1][1]).all()
    for attend in (attend_with_lse, attend_with_lse_math):
        first, second = attend(q, k[..., :4, :], v[..., :4, :]), attend(q, k[..., 4:, :], v[..., 4:, :])
        torch.testing.assert_close(merge(first, *second)[0], full, rtol=1e-6, atol=1e-6)
        masked = attend(q, k[..., :4, :], v[..., :4, :], bias)
        torch.testing.assert_close(masked[0], hidden[0], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(merge(masked, *second)[0][1], attend(q, k[..., 4:, :], v[..., 4:, :])[0][1])
