"""The training loop of a student classifier on a few labelled images: the one loop of 05's students and
fine-tuned teachers and of 06's students.

    model = train_classifier(build=lambda: make_classifier("wb_vitc_tiny_patch8_32", "random", 36),
                             labelled=Labelled(pixels, labels, indices), batch_size=32, steps=100, lr=1e-3,
                             seed=0, device=device)

One concept, a step repeated ``steps`` times: a batch of labelled images (``workbench.data.labelled``), flipped
and shifted, through the model, a loss, a clipped AdamW update on the workbench's schedule
(``workbench.core.training``). It lives with the models, below the stages, so that every stage trains its
classifiers with it without importing another stage. What differs between students is the ``objective``: the
images of a step and the loss on the model's logits. ``CrossEntropy`` (the default) is plain supervised training;
05's knowledge distillation adds its extra images, its teacher and its loss. Every random draw is seeded by
``seed``: the global generator before the model is built (its initialisation), a ``torch.Generator`` for the
batches and augmentation, a numpy generator for the objective's own draws; a student is the same wherever and
whenever it trains. With a ``checkpoint``, a preempted run saves itself after its step and a rerun continues from
it to the weights of a run never stopped: the step's random draws are drawn again up to where it stopped.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.precision import autocast, resolve_precision
from ..core.preemption import StoppedJob, requested
from ..core.training import NonFiniteLoss, configure_optimizer, get_lr, set_lr
from ..data.labelled import Labelled, augment


class Objective(Protocol):
    def draw(self, x: torch.Tensor, gen: torch.Generator, rng: np.random.Generator) -> tuple[torch.Tensor, Any]:
        """The model's input of a step, its augmented labelled images ``x`` first, and what the loss needs besides:
        every random draw of the step but the batch's (drawn again when a stopped run resumes)."""

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, drawn: Any) -> dict[str, torch.Tensor]:
        """``{"loss": what is minimised, other parts to record}`` from the logits of ``draw``'s input."""


class Checkpoint(Protocol):
    def job(self) -> dict | None:
        """What a stopped run saved (None: nothing to resume)."""

    def restore(self, model: nn.Module, opt: torch.optim.Optimizer) -> tuple[int, list[dict]]:
        """The weights, the optimizer and the global generators back; returns the step and the records so far."""

    def save(self, model: nn.Module, opt: torch.optim.Optimizer, step: int, records: list[dict]) -> None:
        """The run after ``step`` steps."""


class CrossEntropy:
    """Plain supervised training: cross-entropy on the labelled images, nothing else drawn."""

    def draw(self, x: torch.Tensor, gen: torch.Generator, rng: np.random.Generator) -> tuple[torch.Tensor, None]:
        return x, None

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, drawn: None) -> dict[str, torch.Tensor]:
        return {"loss": F.cross_entropy(logits.float(), labels)}


def train_classifier(*, build: Callable[[], nn.Module], labelled: Labelled, batch_size: int, steps: int, lr: float,
                     seed: int, device, weight_decay: float = 0.05, warmup_frac: float = 0.3, grad_clip: float = 5.0,
                     objective: Objective | None = None, name: str = "student",
                     evaluate: Callable[[nn.Module], float] | None = None,
                     callback: Callable[[dict], None] | None = None, eval_every: int = 25,
                     checkpoint: Checkpoint | None = None, precision: str = "fp32") -> nn.Module | StoppedJob:
    """The model ``build()`` returns, trained ``steps`` steps of ``batch_size`` labelled images (see the module
    docstring); returned in eval mode. The defaults of the recipe are 05's (a long warm-up and a loose clip get a
    random student off its plateau at chance sooner; ``grad_clip=0``: none).

    ``callback`` gets a record ``{"student": name, "seed", "step", <the objective's losses>}`` every ``eval_every``
    steps and at the last, with ``"top1": evaluate(model)`` every other time. With a ``checkpoint``, a run stopped
    before continues from it, and a preemption stops this one after its current step, saved there (a
    ``StoppedJob`` is returned instead of the model). ``precision``: of the forward (``core.precision``; "auto" is
    resolved by ``classifier_precision`` once per run, before the students train)."""
    # Seeded before the model is built: its initialisation, its batches and its augmentation are the seed's alone.
    torch.manual_seed(seed)
    device = torch.device(device)
    model = build().to(device)
    opt = configure_optimizer(model, lr, weight_decay)
    gen, rng, amp = torch.Generator().manual_seed(seed), np.random.default_rng(seed), autocast(precision, device)
    batches, objective = labelled.batches(batch_size, gen), objective or CrossEntropy()

    def draw() -> tuple[torch.Tensor, Any, torch.Tensor]:
        x, y = next(batches)
        return *objective.draw(augment(x, gen), gen, rng), y

    # A stopped run: weights, optimizer and global generators come back; its own streams are drawn again.
    start, records = 0, []
    if checkpoint is not None and checkpoint.job() is not None:
        start, records = checkpoint.restore(model, opt)
        for _ in range(start):
            draw()
        for record in records if callback is not None else []:
            callback(record)

    model.train()
    for step in range(start, steps):
        # One step: the scheduled lr, the forward in the run's precision, the loss in fp32, a clipped update.
        set_lr(opt, get_lr(step, steps, lr, int(warmup_frac * steps)))
        inputs, drawn, y = draw()
        with amp:
            logits = model(inputs.to(device, non_blocking=True))
        losses = objective.loss(logits, y.to(device), drawn)
        if not torch.isfinite(losses["loss"]):
            raise NonFiniteLoss(f"non-finite loss at step {step} of student {name!r} (seed {seed}); lower lr")
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        if grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()

        # The live records: the losses every eval_every steps and at the last, top-1 every other time.
        if callback is not None and (step % eval_every == 0 or step == steps - 1):
            record = {"student": name, "seed": seed, "step": step, **{k: v.item() for k, v in losses.items()}}
            if evaluate is not None and (step % (2 * eval_every) == 0 or step == steps - 1):
                record["top1"] = evaluate(model)
                model.train()
            records.append(record)
            callback(record)
        # Preempted (SIGTERM, SIGUSR1): saved after this step, for a rerun to continue from.
        if checkpoint is not None and requested() and step < steps - 1:
            checkpoint.save(model, opt, step + 1, records)
            return StoppedJob(step + 1)
    return model.eval()


def classifier_precision(precision: str, *, build: Callable[[], nn.Module], batch_size: int, input_size: int,
                         device, name: str, log=print) -> str:
    """``precision`` for classifiers ``build()`` makes, "auto" resolved (``core.precision``) by timing a forward and
    backward of one at ``batch_size`` images of ``input_size``: every random draw undone, nothing kept."""
    device, model = torch.device(device), None

    def trial(p: str) -> None:
        nonlocal model
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            model = model or build().to(device).train()
            x = torch.rand(batch_size, 3, input_size, input_size, device=device)
            with autocast(p, device):
                logits = model(x)
            logits.float().logsumexp(1).mean().backward()
        model.zero_grad(set_to_none=True)

    return resolve_precision(precision, device, trial, {"classifier": name, "batch": batch_size, "size": input_size},
                             log)
