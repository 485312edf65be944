import numpy as np
import pytest
import torch

from workbench.layers.standardize import PhiS, RunningStandardizer, batch_weight, hadamard, make_standardizer


def test_batch_weight_follows_the_official_cosine_from_1_to_0_001():
    """UNIC's tnorm_ema_schedule: utils.cosine_scheduler(1.0, 0.001, epochs, iterations, warmup_epochs=0)."""
    total = 100
    weights = [batch_weight(s, total) for s in range(total)]
    official = 1e-3 + 0.5 * (1.0 - 1e-3) * (1 + np.cos(np.pi * np.arange(total) / total))
    np.testing.assert_allclose(weights, official, rtol=1e-12)
    assert weights[0] == pytest.approx(1.0) and weights[50] == pytest.approx((1 + 1e-3) / 2)
    assert all(a >= b for a, b in zip(weights, weights[1:]))


def test_running_standardizer_converges_to_known_mean_and_std():
    gen = torch.Generator().manual_seed(0)
    mean = torch.tensor([3.0, -2.0, 0.5, 10.0])
    std = torch.tensor([0.5, 2.0, 1.0, 4.0])
    s = RunningStandardizer(4)
    total = 300
    for step in range(total):
        x = mean + std * torch.randn(64, 16, 4, generator=gen)  # patch tokens: (B, N, D)
        s.update(x, batch_weight(step, total))
    assert torch.allclose(s.mean, mean, atol=0.05 * std.max())
    assert torch.allclose(s.std, std, rtol=0.03)
    z = s(mean + std * torch.randn(20000, 4, generator=gen))
    assert torch.allclose(z.mean(0), torch.zeros(4), atol=0.05)
    assert torch.allclose(z.std(0), torch.ones(4), atol=0.05)


def test_statistics_are_checkpoint_buffers():
    assert set(RunningStandardizer(3).state_dict()) == {"mean", "std"}
    assert {"mean", "second_moment", "transform"} <= set(PhiS(4).state_dict())


@pytest.mark.parametrize("n", [1, 2, 4, 12, 20, 64, 96, 384, 768, 1024])
def test_hadamard_is_orthonormal_with_flat_entries(n):
    h = hadamard(n).double()
    assert torch.allclose(h @ h.t(), torch.eye(n, dtype=torch.double), atol=1e-10)
    assert torch.allclose(h.abs(), torch.full((n, n), n**-0.5, dtype=torch.double))


def test_hadamard_unsupported_order_says_what_to_do():
    with pytest.raises(ValueError, match="standardize='running'"):
        hadamard(22)


def test_phis_gives_every_dimension_the_same_unit_variance():
    gen = torch.Generator().manual_seed(0)
    d = 8
    mixing = torch.randn(d, d, generator=gen) * torch.linspace(0.1, 5, d)
    shift = torch.randn(d, generator=gen) * 3
    s = PhiS(d)
    for step in range(200):
        s.update(torch.randn(256, d, generator=gen) @ mixing + shift, batch_weight(step, 200))
    z = s(torch.randn(50000, d, generator=gen) @ mixing + shift)
    assert torch.allclose(z.mean(0), torch.zeros(d), atol=0.1)
    assert torch.allclose(z.var(0), torch.ones(d), rtol=0.1)  # isotropic variance: the PHI-S property


def test_make_standardizer_rejects_unknown_kind():
    with pytest.raises(ValueError, match="running"):
        make_standardizer("zscore", 4)
    x = torch.randn(3, 4)
    assert torch.equal(make_standardizer("none", 4)(x), x)
