"""Dense probes on frozen patch tokens (UNIC's patch-level evaluation), after DINOv2's linear protocols.

    result = dense_probe(encoder, data, "segmentation", "segmentation", device)   # {"miou", "pixel_acc", ...}
    result = dense_probe(encoder, data, "depth", "depth", device, DenseProtocol(steps=2000))  # {"rmse", ...}

**Segmentation**, DINOv2's *linear* protocol (Oquab et al. 2023; ``dinov2/eval/segmentation`` ``BNHead``): the last
layer's patch tokens, normalised per channel, a linear layer to class logits on the patch grid, the logits
upsampled bilinearly to the label map, pixel cross-entropy (label 255 ignored); AdamW (lr 1e-3, weight decay 1e-4),
linear warm-up then linear decay. Scored by mIoU: per class, intersection over union accumulated over every test
pixel, averaged over the classes that occur in the ground truth or the predictions (mmsegmentation's rule).

**Depth**, DINOv2's *lin. 1* protocol (``dinov2/eval/depth`` ``BNHead``): each patch token with the CLS token
concatenated, upsampled bilinearly x4, a linear layer to 256 depth bins spread evenly over (1e-3, the deepest
training pixel); the depth of a pixel is the bins' centres weighted by relu(logit) + 0.1, normalised (AdaBins'
linear normalisation), upsampled to the map; loss the scale-invariant log loss (SigLoss, 0.15, its 100-step warm-up)
on pixels with a depth. Scored as the toolbox DINOv2 evaluates with: per test image RMSE (metres), delta < 1.25 (the
share of pixels whose max(pred / true, true / pred) is under 1.25) and absolute relative error, averaged over images.

Both heads are linear in the tokens (bilinear upsampling is linear and its weights sum to one, so the layer runs on
the token grid and its logits are upsampled: the same function, cheaper). Where DINOv2 puts a BatchNorm before the
layer, the tokens here are standardised with the training tokens' per-channel mean and std: what that BatchNorm
applies at test time. The tokens of a split are computed once and kept in memory (float16) when they fit in
``memory_gb``; otherwise each training batch is encoded on the fly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..core.progress import progress
from .features import PROGRESS_MIN_IMAGES

DENSE_KINDS = ("segmentation", "depth")
IGNORE = 255  # segmentation label that is not scored
DEPTH_BINS = 256
MIN_DEPTH = 1e-3
SIGLOSS_LAMBDA = 0.15
SIGLOSS_WARMUP = 100  # steps with the mean term only (DINOv2's SigLoss warm_up)
DEPTH_UPSAMPLE = 4
PROGRESS_MIN_STEPS = 5000  # a dense probe trained this long shows a progress bar (DINOv2's schedule: 40,000)


@dataclass
class DenseProtocol:
    """The optimisation of a dense probe (DINOv2: 40,000 steps of 16 images, AdamW 1e-3, weight decay 1e-4)."""

    steps: int = 40_000
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_frac: float = 0.0375  # DINOv2's 1,500 linear warm-up steps of 40,000, then linear (poly 1) decay to 0
    memory_gb: float = 8.0  # tokens of a split above this are encoded batch by batch instead of kept
    examples: int = 6  # test images whose predicted maps are returned (figures)
    seed: int = 0


@dataclass
class DenseTokens:
    """The patch tokens of a split and its maps, in memory."""

    tokens: torch.Tensor  # (N, D, h, w) float16
    cls: torch.Tensor  # (N, D) float16
    targets: torch.Tensor  # (N, H, W): class indices (long) or depths (float)
    skipped: list[str] = field(default_factory=list)

    def __len__(self):
        return len(self.targets)


def _grid(features) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, D, h, w) patch tokens and (B, D) CLS token of a ``Features``, float32."""
    b, n, d = features.patch.shape
    h, w = features.grid
    return features.patch.float().transpose(1, 2).reshape(b, d, h, w), features.cls.float()


@torch.no_grad()
def encode_batches(encoder, data, split: str, task: str, device, batch_size: int, shuffle: bool = False,
                   epoch: int = 0):
    """(tokens, cls, targets, skipped) per batch of a split, encoded by ``encoder.features``, on ``device``."""
    for images, labels, bad in data.loader(split, batch_size, shuffle=shuffle, seed=0, epoch=epoch):
        if images is None:
            yield None, None, None, bad
            continue
        with torch.inference_mode():
            tokens, cls = _grid(encoder.features(images.to(device)))
        yield tokens, cls, labels[task].to(device), bad


def token_bytes(encoder, data, split: str, device) -> int:
    """Memory the float16 tokens of a whole split would take (from one image's)."""
    with torch.inference_mode():
        tokens, cls = _grid(encoder.features(data.first_image(split).to(device)))
    n = len(data.train if split == "train" else data.test)
    return 2 * n * (tokens.numel() + cls.numel())


def dense_tokens(encoder, data, split: str, task: str, device, batch_size: int = 64) -> DenseTokens:
    """Every patch token of a split, in memory (float16), with its maps; unreadable images skipped and listed."""
    tokens, cls, targets, skipped = [], [], [], []
    n = len(data.train if split == "train" else data.test)
    batches = progress(encode_batches(encoder, data, split, task, device, batch_size), total=-(-n // batch_size),
                       desc=f"patch tokens of {encoder.name} on {data.name}/{split}", unit="batch",
                       disable=n < PROGRESS_MIN_IMAGES)
    for t, c, y, bad in batches:
        skipped += bad
        if t is not None:
            tokens.append(t.half().cpu())
            cls.append(c.half().cpu())
            targets.append(y.cpu())
    if not tokens:
        raise ValueError(f"no readable image in the {split} split of {data.name!r}")
    return DenseTokens(torch.cat(tokens), torch.cat(cls), torch.cat(targets), skipped)


class DenseHead(torch.nn.Module):
    """The linear probe: standardised tokens (and CLS, for depth) -> per-pixel logits or depth at ``size``."""

    def __init__(self, kind: str, dim: int, n_out: int, mean: torch.Tensor, std: torch.Tensor,
                 max_depth: float = 10.0):
        super().__init__()
        if kind not in DENSE_KINDS:
            raise ValueError(f"dense probe kind must be one of {DENSE_KINDS}, got {kind!r}")
        self.kind = kind
        self.register_buffer("mean", mean.view(1, -1, 1, 1))
        self.register_buffer("std", std.view(1, -1, 1, 1))
        self.linear = torch.nn.utils.skip_init(torch.nn.Conv2d, dim, n_out, 1)  # fit_dense_probe initialises it
        self.register_buffer("bins", torch.linspace(MIN_DEPTH, max_depth, n_out) if kind == "depth" else torch.zeros(0))

    def inputs(self, tokens: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
        x = tokens.float()
        if self.kind == "depth":  # lin. 1: the CLS token beside every patch token
            x = torch.cat([x, cls.float()[:, :, None, None].expand_as(x)], dim=1)
        return (x - self.mean) / self.std

    def forward(self, tokens: torch.Tensor, cls: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        logits = self.linear(self.inputs(tokens, cls))
        if self.kind == "segmentation":
            return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        logits = F.interpolate(logits, scale_factor=DEPTH_UPSAMPLE, mode="bilinear", align_corners=False)
        weights = torch.relu(logits) + 0.1
        depth = (weights / weights.sum(1, keepdim=True) * self.bins.view(1, -1, 1, 1)).sum(1, keepdim=True)
        return F.interpolate(depth, size=size, mode="bilinear", align_corners=False)[:, 0]


def sig_loss(pred: torch.Tensor, target: torch.Tensor, warm_up: bool = False) -> torch.Tensor:
    """Scale-invariant log loss on pixels with a depth (target > 0): sqrt(var(g) + 0.15 mean(g)^2), g the log ratio."""
    valid = target > 0
    g = torch.log(pred[valid] + 1e-3) - torch.log(target[valid] + 1e-3)
    if g.numel() < 2:
        return pred.sum() * 0.0
    if warm_up:
        return torch.sqrt(SIGLOSS_LAMBDA * g.mean() ** 2)
    return torch.sqrt(g.var() + SIGLOSS_LAMBDA * g.mean() ** 2)


def _schedule(step: int, protocol: DenseProtocol) -> float:
    warm = max(1, int(protocol.warmup_frac * protocol.steps))
    if step < warm:
        return (step + 1) / warm
    return max(0.0, 1.0 - (step - warm) / max(1, protocol.steps - warm))


class _TrainBatches:
    """Training batches: drawn from tokens in memory, or encoded on the fly epoch after epoch."""

    def __init__(self, source, protocol: DenseProtocol, encoder=None, data=None, task=None, device=None):
        self.source, self.protocol = source, protocol
        self.encoder, self.data, self.task, self.device = encoder, data, task, device
        self.gen = torch.Generator().manual_seed(protocol.seed)
        self.epoch, self.stream = 0, None

    def __next__(self):
        if isinstance(self.source, DenseTokens):
            idx = torch.randint(len(self.source), (self.protocol.batch_size,), generator=self.gen)
            return tuple(t[idx].to(self.device) for t in (self.source.tokens, self.source.cls, self.source.targets))
        while True:
            if self.stream is None:
                self.stream = encode_batches(self.encoder, self.data, "train", self.task, self.device,
                                             self.protocol.batch_size, shuffle=True, epoch=self.epoch)
            for tokens, cls, targets, _ in self.stream:
                if tokens is not None:
                    return tokens, cls, targets
            self.stream, self.epoch = None, self.epoch + 1


def _statistics(batches: _TrainBatches, kind: str, n: int = 32) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Per-channel mean and std of the head's inputs, and the deepest pixel: over every training token in memory,
    else over ``n`` training batches."""
    source = batches.source
    if isinstance(source, DenseTokens):
        chunks = ((source.tokens[i : i + 256], source.cls[i : i + 256], source.targets[i : i + 256])
                  for i in range(0, len(source), 256))
    else:
        chunks = (next(batches) for _ in range(n))
    total, sq, count, deepest = 0.0, 0.0, 0, 0.0
    for tokens, cls, targets in chunks:
        x = tokens.cpu().double()
        if kind == "depth":
            x = torch.cat([x, cls.cpu().double()[:, :, None, None].expand_as(x)], dim=1)
            deepest = max(deepest, float(targets.max()))
        total = total + x.sum(dim=(0, 2, 3))
        sq = sq + x.pow(2).sum(dim=(0, 2, 3))
        count += x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = (sq / count - mean**2).clamp_min(0).sqrt()
    return mean.float(), std.float().clamp_min(1e-6), deepest


def fit_dense_probe(train, kind: str, n_classes: int, protocol: DenseProtocol, encoder=None, data=None, task=None,
                    device=None) -> DenseHead:
    """Train the linear head on ``train`` (``DenseTokens``; or, with ``train=None``, batches that ``encoder``
    encodes from ``data`` on the fly). A run of ``PROGRESS_MIN_STEPS`` steps or more shows a progress bar."""
    batches = _TrainBatches(train, protocol, encoder, data, task, device)
    mean, std, deepest = _statistics(batches, kind)
    n_out = DEPTH_BINS if kind == "depth" else n_classes
    head = DenseHead(kind, len(mean), n_out, mean, std, max_depth=max(deepest, 2 * MIN_DEPTH))
    # The layer's initialisation (Conv2d's own rule) from a generator of its own: probes run side by side in
    # threads, and a reseeded global generator would hand each the draws of whichever thread came first.
    gen = torch.Generator().manual_seed(protocol.seed)
    torch.nn.init.kaiming_uniform_(head.linear.weight, a=math.sqrt(5), generator=gen)
    bound = 1 / math.sqrt(head.linear.weight[0].numel())
    torch.nn.init.uniform_(head.linear.bias, -bound, bound, generator=gen)
    head.to(device or "cpu")
    opt = torch.optim.AdamW(head.linear.parameters(), lr=protocol.lr, weight_decay=protocol.weight_decay)
    name = f"{encoder.name}: " if encoder is not None else ""
    for step in progress(range(protocol.steps), desc=f"{name}{kind} probe", unit="step",
                         disable=protocol.steps < PROGRESS_MIN_STEPS):
        tokens, cls, targets = next(batches)
        for group in opt.param_groups:
            group["lr"] = protocol.lr * _schedule(step, protocol)
        out = head(tokens, cls, tuple(targets.shape[-2:]))
        if kind == "segmentation":
            loss = F.cross_entropy(out, targets.long(), ignore_index=IGNORE)
        else:
            loss = sig_loss(out, targets.float(), warm_up=step < SIGLOSS_WARMUP)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return head.eval()


@torch.no_grad()
def evaluate_dense(head: DenseHead, batches, n_classes: int, examples: int = 0) -> dict:
    """Scores of a fitted head over test batches of (tokens, cls, targets); ``examples``: the predicted maps of the
    first test images (uint8 classes, or float depths)."""
    confusion = torch.zeros(n_classes, n_classes, dtype=torch.long)
    rmse, delta1, abs_rel, kept = [], [], [], []
    for tokens, cls, targets in batches:
        out = head(tokens, cls, tuple(targets.shape[-2:]))
        pred = (out.argmax(1) if head.kind == "segmentation" else out).cpu()
        targets = targets.cpu()
        if len(kept) < examples:
            kept += list(pred[: examples - len(kept)].to(torch.uint8 if head.kind == "segmentation" else torch.float32))
        if head.kind == "segmentation":
            valid = targets != IGNORE
            confusion += torch.bincount(targets[valid].long() * n_classes + pred[valid],
                                        minlength=n_classes * n_classes).view(n_classes, n_classes)
            continue
        for p, t in zip(pred, targets.float()):
            valid = t > 0
            if valid.any():
                p, t = p[valid].clamp_min(MIN_DEPTH), t[valid]
                rmse.append(float(((p - t) ** 2).mean().sqrt()))
                delta1.append(float((torch.maximum(p / t, t / p) < 1.25).float().mean()))
                abs_rel.append(float(((p - t).abs() / t).mean()))
    example_maps = torch.stack(kept) if kept else None
    if head.kind == "segmentation":
        inter = confusion.diag().double()
        union = confusion.sum(0).double() + confusion.sum(1).double() - inter
        present = union > 0
        iou = torch.where(present, inter / union.clamp_min(1), torch.full_like(inter, math.nan))
        return {"miou": 100 * float(iou[present].mean()) if present.any() else 0.0,
                "pixel_acc": 100 * float(inter.sum() / confusion.sum().clamp_min(1)),
                "iou": [round(100 * v, 2) if not math.isnan(v) else None for v in iou.tolist()],
                "examples": example_maps}
    if not rmse:
        raise ValueError("no test pixel with a depth to score")
    n = len(rmse)
    return {"rmse": sum(rmse) / n, "delta1": 100 * sum(delta1) / n, "abs_rel": sum(abs_rel) / n,
            "examples": example_maps}


def _test_batches(test, protocol, encoder, data, task, device):
    if isinstance(test, DenseTokens):
        for i in range(0, len(test), 64):
            yield tuple(t[i : i + 64].to(device or "cpu") for t in (test.tokens, test.cls, test.targets))
        return
    for tokens, cls, targets, _ in encode_batches(encoder, data, "test", task, device, protocol.batch_size):
        if tokens is not None:
            yield tokens, cls, targets


def dense_probe(encoder, data, task: str, kind: str, device, protocol: DenseProtocol | None = None) -> dict:
    """Fit the dense probe of ``kind`` on ``data``'s training split (label ``task``) and score it on the test split.

    ``encoder.features(images)`` gives the ``Features`` (CLS, patch tokens, grid). Returns the scores
    (``evaluate_dense``) and ``skipped``, the unreadable images met."""
    protocol = protocol or DenseProtocol()
    if encoder.features is None:
        raise ValueError(f"{encoder.name}: a dense probe needs the model's patch tokens (Encoder.features)")
    n_classes = len(data.tasks[task])
    splits = {}
    for split in ("train", "test"):
        fits = token_bytes(encoder, data, split, device) <= protocol.memory_gb * 2**30
        splits[split] = dense_tokens(encoder, data, split, task, device) if fits else None
    skipped = [s for part in splits.values() if part is not None for s in part.skipped]
    head = fit_dense_probe(splits["train"], kind, n_classes, protocol, encoder, data, task, device)
    scores = evaluate_dense(head, _test_batches(splits["test"], protocol, encoder, data, task, device), n_classes,
                            protocol.examples)
    return {**scores, "skipped": skipped}
