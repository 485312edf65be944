"""The training loop of every student classifier (``workbench.models.train_classifier``): it learns, it is the same
for a seed, it follows its steps, schedule and clipping, and a stopped run resumes to the run never stopped."""
import inspect
import os
import signal

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from workbench.core.preemption import StoppedJob, handle_preemption
from workbench.core.training import NonFiniteLoss, get_lr
from workbench.data import Labelled
from workbench.distillation.task.checkpoint import StudentCheckpoint
from workbench.models import CrossEntropy, StudentClassifier, make_classifier, supervised, train_classifier


def colour_set(n_per_class: int, seed: int) -> Labelled:
    """Three classes told apart by their bright channel (red, green, blue), in noise: linearly separable."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(3).repeat_interleave(n_per_class)
    pixels = torch.randint(0, 60, (len(labels), 3, 8, 8), generator=gen)
    pixels[torch.arange(len(labels)), labels] += 150
    return Labelled(pixels.to(torch.uint8), labels, torch.arange(len(labels)))


def pooled_linear() -> nn.Module:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 3))


def train(**overrides):
    kwargs = dict(build=pooled_linear, labelled=colour_set(8, seed=0), batch_size=12, steps=40, lr=0.3, seed=0,
                  device="cpu")
    return train_classifier(**{**kwargs, **overrides})


def weights(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.state_dict().values()]


def same(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(weights(a), weights(b)))


def test_it_learns_a_separable_task():
    records = []
    model = train(callback=records.append, eval_every=5)
    test = colour_set(20, seed=1)
    with torch.no_grad():
        accuracy = (model(test.images).argmax(1) == test.labels).float().mean().item()
    assert accuracy == 1.0 and not model.training
    assert records[-1]["loss"] < 0.5 * records[0]["loss"]
    untrained = (pooled_linear()(test.images).argmax(1) == test.labels).float().mean().item()
    assert untrained < 1.0  # the task is not solved at the start


def test_a_seed_gives_the_same_student_and_another_seed_another():
    """The real student classifier of 05 and 06: the seed fixes its initialisation, batches and augmentation."""
    labelled = Labelled((torch.rand(12, 3, 32, 32) * 255).to(torch.uint8), torch.arange(12) % 4, torch.arange(12))
    kwargs = dict(build=lambda: make_classifier("wb_vit_tiny_patch8_32", "random", 4), labelled=labelled,
                  batch_size=4, steps=3, lr=1e-3, device="cpu")
    a = train_classifier(**kwargs, seed=0)
    torch.rand(5)  # the global generator before the call does not matter: the trainer seeds it
    b, c = train_classifier(**kwargs, seed=0), train_classifier(**kwargs, seed=1)
    assert isinstance(a, StudentClassifier) and same(a, b) and not same(a, c)


def test_every_argument_is_a_keyword():
    params = inspect.signature(train_classifier).parameters.values()
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params)
    with pytest.raises(TypeError, match="positional"):
        train_classifier(pooled_linear, labelled=colour_set(2, 0), batch_size=2, steps=1, lr=0.1, seed=0,
                         device="cpu")


class Counting(CrossEntropy):
    """Cross-entropy times ``scale`` (large: large gradients), counting the steps and the images seen."""

    def __init__(self, scale: float = 1.0):
        self.scale, self.steps, self.images = scale, 0, 0

    def loss(self, logits, labels, drawn):
        self.steps += 1
        self.images += len(labels)
        return {"loss": self.scale * F.cross_entropy(logits, labels)}


def test_it_takes_its_steps_on_its_batches_and_its_schedule(monkeypatch):
    lrs = []
    real_set_lr = supervised.set_lr
    monkeypatch.setattr(supervised, "set_lr", lambda opt, lr: (lrs.append(lr), real_set_lr(opt, lr)))
    objective = Counting()
    train(steps=20, batch_size=6, lr=0.1, warmup_frac=0.25, objective=objective)
    assert objective.steps == 20 and objective.images == 20 * 6
    assert lrs == [get_lr(s, 20, 0.1, warmup=5) for s in range(20)]
    assert lrs[0] == 0 and max(lrs) == pytest.approx(0.1) and lrs.index(max(lrs)) in (4, 5)  # warm-up, then cosine
    assert all(a >= b for a, b in zip(lrs[5:], lrs[6:])) and lrs[-1] < 0.01


def test_gradients_are_clipped_to_grad_clip(monkeypatch):
    norms = []
    real_clip = torch.nn.utils.clip_grad_norm_

    def clip(parameters, max_norm):
        parameters = list(parameters)
        before = real_clip(parameters, max_norm)
        after = torch.norm(torch.stack([p.grad.norm() for p in parameters]))
        norms.append((max_norm, before.item(), after.item()))
        return before

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)
    train(steps=5, grad_clip=0.5, objective=Counting(scale=1000.0))
    assert len(norms) == 5 and all(m == 0.5 and after <= 0.5 * (1 + 1e-5) for m, _, after in norms)
    assert max(before for _, before, _ in norms) > 0.5  # it had something to clip
    norms.clear()
    train(steps=5, grad_clip=0, objective=Counting(scale=1000.0))
    assert norms == []  # 0: no clipping


class Diverging(Counting):
    def loss(self, logits, labels, drawn):
        loss = super().loss(logits, labels, drawn)["loss"]
        return {"loss": loss * (float("nan") if self.steps == 3 else 1.0)}


def test_a_loss_no_longer_finite_stops_the_run_saying_where():
    with pytest.raises(NonFiniteLoss, match="non-finite loss at step 2 of student 'toy' \\(seed 0\\); lower lr"):
        train(objective=Diverging(), name="toy")


class Mixing(CrossEntropy):
    """An objective with draws of its own (a random blend of the batch, from the numpy generator): a resumed run
    must draw them again."""

    def draw(self, x, gen, rng: np.random.Generator):
        lam = torch.from_numpy(rng.uniform(0.5, 1.0, size=len(x))).float().view(-1, 1, 1, 1)
        return lam * x + (1 - lam) * x.flip(0), None


class StopAt:
    """Sends this process a real SIGTERM during step ``step``."""

    def __init__(self, step: int):
        self.step, self.calls = step, 0

    def tick(self) -> None:
        if self.calls == self.step:
            os.kill(os.getpid(), signal.SIGTERM)
        self.calls += 1


def test_a_stopped_run_resumes_to_the_run_never_stopped(tmp_path):
    """Stopped by a SIGTERM during step 4, saved after it; the rerun trains steps 5 to 11 only, drawing the batches,
    views and blends of steps 0 to 4 again, and ends with the weights and records of a run never stopped."""
    def run(stop_at: int | None, out):
        records, stopper = [], StopAt(-1 if stop_at is None else stop_at)

        class Stopping(Mixing):
            def loss(self, logits, labels, drawn):
                stopper.tick()
                return super().loss(logits, labels, drawn)

        checkpoint = StudentCheckpoint.of(out, 0, "labels", {"run": "toy"})
        with handle_preemption():
            model = train(steps=12, objective=Stopping(), callback=records.append, eval_every=2,
                          evaluate=lambda m: 50.0, checkpoint=checkpoint)
        return model, records, stopper.calls

    reference, reference_records, _ = run(None, tmp_path / "reference")
    stopped, _, steps = run(4, tmp_path / "resumed")
    assert stopped == StoppedJob(5) and steps == 5  # stopped after the step it was in, saved there
    resumed, records, steps = run(None, tmp_path / "resumed")
    assert steps == 12 - 5  # it continued, it did not start over
    assert same(resumed, reference) and records == reference_records
    assert [r["step"] for r in records] == [0, 2, 4, 6, 8, 10, 11]
