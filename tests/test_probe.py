import torch

from workbench.probe import linear_probe


def test_linear_probe_separable_vs_random_labels():
    gen = torch.Generator().manual_seed(0)
    centers = torch.randn(5, 16, generator=gen) * 3
    ytr = torch.randint(0, 5, (500,), generator=gen)
    yte = torch.randint(0, 5, (200,), generator=gen)
    xtr = centers[ytr] + torch.randn(500, 16, generator=gen)
    xte = centers[yte] + torch.randn(200, 16, generator=gen)
    result = linear_probe(xtr, ytr, xte, yte)
    assert result["top1"] > 95
    shuffled = linear_probe(xtr, ytr[torch.randperm(500, generator=gen)], xte, yte)
    assert shuffled["top1"] < 40
