import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from workbench.distillation.task.kd import kd_loss, mix_images, task_distillation_loss


def test_kd_loss_matches_a_hand_computed_value():
    # T = 2: teacher logits (2 ln 3, 0) soften to p_t = (3/4, 1/4); equal student logits give p_s = (1/2, 1/2)
    teacher = torch.tensor([[2 * math.log(3.0), 0.0]])
    student = torch.zeros(1, 2)
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)  # KL(p_t || p_s) = 0.1308...
    assert kd_loss(student, teacher, temperature=2.0).item() == pytest.approx(4 * kl, rel=1e-6)  # times T^2
    # the batch mean, and the direction KL(teacher || student), not the reverse
    reverse = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    both = kd_loss(torch.cat([student, teacher]), torch.cat([teacher, student]), temperature=2.0)
    assert both.item() == pytest.approx(4 * (kl + reverse) / 2, rel=1e-6)


def test_kd_loss_is_zero_only_when_the_distributions_match():
    logits = torch.randn(8, 5)
    assert kd_loss(logits, logits, 3.0).item() == pytest.approx(0.0, abs=1e-6)
    assert kd_loss(logits + 7.0, logits, 3.0).item() == pytest.approx(0.0, abs=1e-6)  # softmax ignores a shift
    assert kd_loss(torch.randn(8, 5), logits, 3.0).item() > 0


def test_temperature_squared_keeps_the_soft_gradient_scale():
    """Hinton et al.: without T^2 the soft gradients shrink as 1 / T^2; with it they stay put, and at high T
    the loss tends to logit matching, (1 / 2C) * sum of squared centred logit differences."""
    gen = torch.Generator().manual_seed(0)
    teacher = torch.randn(16, 6, generator=gen)
    student = torch.randn(16, 6, generator=gen).requires_grad_(True)

    def grad_norm(t):
        (g,) = torch.autograd.grad(kd_loss(student, teacher, t), student)
        return g.norm().item()

    assert grad_norm(20.0) == pytest.approx(grad_norm(40.0), rel=0.02)
    raw = F.kl_div(F.log_softmax(student / 40.0, -1), F.log_softmax(teacher / 40.0, -1), log_target=True,
                   reduction="batchmean")
    assert raw.item() == pytest.approx(kd_loss(student, teacher, 40.0).item() / 1600, rel=1e-5)
    diff = teacher - student.detach()
    diff = diff - diff.mean(-1, keepdim=True)
    limit = (diff**2).sum(-1).mean() / (2 * 6)
    assert kd_loss(student, teacher, 200.0).item() == pytest.approx(limit.item(), rel=0.01)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        kd_loss(student, teacher, 0.0)


def test_task_loss_blends_cross_entropy_and_distillation():
    gen = torch.Generator().manual_seed(1)
    labelled, labels = torch.randn(4, 3, generator=gen), torch.tensor([0, 2, 1, 1])
    student, teacher = torch.randn(10, 3, generator=gen), torch.randn(10, 3, generator=gen)
    ce, kd = F.cross_entropy(labelled, labels), kd_loss(student, teacher, 2.0)
    loss = task_distillation_loss(labelled, labels, student, teacher, kd_weight=0.3, temperature=2.0)
    assert loss.total.item() == pytest.approx((0.7 * ce + 0.3 * kd).item(), rel=1e-6)
    assert loss.ce.item() == pytest.approx(ce.item()) and loss.kd.item() == pytest.approx(kd.item())
    only_kd = task_distillation_loss(labelled, labels, student, teacher, kd_weight=1.0, temperature=2.0)
    assert only_kd.total.item() == pytest.approx(kd.item(), rel=1e-6)
    no_teacher = task_distillation_loss(labelled, labels, None, None, kd_weight=0.9, temperature=2.0)
    assert no_teacher.total.item() == pytest.approx(ce.item()) and no_teacher.kd.item() == 0


def test_mixing_blends_each_image_with_another_one():
    images = torch.rand(32, 3, 8, 8)
    mixed = mix_images(images, 1.0, np.random.default_rng(0))
    lam = mixed.lam.view(-1, 1, 1, 1)
    assert torch.allclose(mixed.images, lam * images + (1 - lam) * images[mixed.partner], atol=1e-6)
    assert ((mixed.lam >= 0) & (mixed.lam <= 1)).all()
    assert sorted(mixed.partner.tolist()) == list(range(32))  # a permutation ...
    assert (mixed.partner != torch.arange(32)).all()  # ... with no image paired with itself
    assert mixed.images.min() >= 0 and mixed.images.max() <= 1  # blends of images are images


def test_mixing_is_reproducible_from_its_generator():
    images = torch.rand(16, 3, 8, 8)
    a, b = (mix_images(images, 0.5, np.random.default_rng(7)) for _ in range(2))
    assert torch.equal(a.images, b.images) and torch.equal(a.partner, b.partner)
    c = mix_images(images, 0.5, np.random.default_rng(8))
    assert not torch.equal(a.lam, c.lam)


def test_mixing_weights_follow_the_beta_concentration():
    images = torch.zeros(4000, 1)
    uniform = mix_images(images, 1.0, np.random.default_rng(0)).lam  # Beta(1, 1): uniform on [0, 1]
    assert uniform.mean().item() == pytest.approx(0.5, abs=0.02)
    assert uniform.var().item() == pytest.approx(1 / 12, abs=0.01)
    near_half = mix_images(images, 50.0, np.random.default_rng(0)).lam
    assert (near_half - 0.5).abs().max() < 0.25
    near_copies = mix_images(images, 0.05, np.random.default_rng(0)).lam
    assert ((near_copies < 0.05) | (near_copies > 0.95)).float().mean() > 0.7
    with pytest.raises(ValueError, match="concentration must be > 0"):
        mix_images(images, 0.0, np.random.default_rng(0))


def test_mixing_a_single_image_leaves_it_alone():
    image = torch.rand(1, 3, 4, 4)
    assert torch.allclose(mix_images(image, 1.0, np.random.default_rng(0)).images, image)
