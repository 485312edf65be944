import math

import torch

from workbench.distillation.losses import distillation_loss, feature_loss, teacher_coefficients, teacher_losses


def test_feature_loss_matches_hand_computed_values():
    pred = torch.tensor([[1.0, 0.0]])
    target = torch.tensor([[0.0, 2.0]])
    # cosine: orthogonal -> 1 - 0 = 1; smooth-L1 (beta 1): |1| -> 0.5, |2| -> 1.5, mean 1.0
    assert torch.allclose(feature_loss(pred, target), torch.tensor([0.5 * 1.0 + 0.5 * 1.0]))

    pred = torch.tensor([[1.0, 1.0]])
    target = torch.tensor([[1.5, 1.0]])
    cos = (1.5 + 1.0) / (math.sqrt(2) * math.sqrt(3.25))
    sl1 = (0.5 * 0.5**2 + 0.0) / 2  # |d| = 0.5 < beta: 0.5 d^2 / beta
    assert torch.allclose(feature_loss(pred, target), torch.tensor([0.5 * (1 - cos) + 0.5 * sl1]))


def test_patch_loss_is_averaged_over_tokens_and_cls_patch_averaged():
    cls_p, cls_t = torch.zeros(2, 3), torch.zeros(2, 3)
    cls_p[:, 0], cls_t[:, 0] = 1.0, 1.0  # identical -> 0 loss
    patch_p = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]]).repeat(2, 1, 1)
    patch_t = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]]).repeat(2, 1, 1)  # token 0: 0, token 1: 1.0
    per_token = feature_loss(patch_p, patch_t)
    assert torch.allclose(per_token, torch.tensor([0.5, 0.5]))
    losses = teacher_losses({"a": (cls_p, patch_p)}, {"a": (cls_t, patch_t)})
    assert losses.shape == (1, 2)
    assert torch.allclose(losses, torch.full((1, 2), 0.25))  # mean of cls (0) and patch (0.5)


def test_teacher_dropping_keeps_highest_loss_teacher_and_drops_others_at_rate_p():
    gen = torch.Generator().manual_seed(0)
    t, b, p = 3, 20_000, 0.5
    losses = torch.rand(t, b, generator=gen)
    coeffs = teacher_coefficients(losses, drop_p=p, generator=gen)
    active = coeffs > 0
    worst = losses.argmax(0)
    assert active[worst, torch.arange(b)].all(), "the highest-loss teacher must always be kept"
    others = torch.ones(t, b, dtype=torch.bool)
    others[worst, torch.arange(b)] = False
    drop_rate = 1 - active[others].float().mean().item()
    assert abs(drop_rate - p) < 0.02
    assert torch.isclose(coeffs.sum(), torch.tensor(1.0))
    assert torch.allclose(coeffs[active], torch.full_like(coeffs[active], 1 / active.sum().item()))
    assert not coeffs.requires_grad


def test_teacher_dropping_with_p0_weighs_all_pairs_equally_and_p1_keeps_only_worst():
    losses = torch.tensor([[0.1, 0.9], [0.5, 0.2]])
    assert torch.allclose(teacher_coefficients(losses, 0.0), torch.full((2, 2), 0.25))
    only_worst = teacher_coefficients(losses, 1.0)
    assert torch.equal(only_worst > 0, torch.tensor([[False, True], [True, False]]))


def test_distillation_loss_gradient_flows_through_losses_only():
    losses = torch.tensor([[1.0, 2.0], [3.0, 0.5]], requires_grad=True)
    loss, coeffs = distillation_loss(losses, drop_p=0.0)
    loss.backward()
    assert torch.allclose(losses.grad, coeffs)
    assert torch.isclose(loss, losses.detach().mean())
    assert torch.allclose(coeffs.sum(1), torch.tensor([0.5, 0.5]))  # alpha per teacher
