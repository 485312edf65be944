"""Dense probes on patch tokens: tasks with a known answer, the scores by hand, the world's masks."""
import math

import pytest
import torch
import torch.nn.functional as F

import workbench as wb
from workbench import transfer as tr
from workbench.data import Data, InMemorySplit, world
from workbench.models import Features
from workbench.probing import DenseProtocol
from workbench.probing.dense import DenseTokens, evaluate_dense, fit_dense_probe
from workbench.probing.runner import one_thread_each

D, GRID, SIZE = 8, 4, 16
W = torch.randn(4, D, generator=torch.Generator().manual_seed(2))  # 4 classes: linear in the tokens
A = F.normalize(torch.randn(D, generator=torch.Generator().manual_seed(3)), dim=0)


def _up(x):
    return F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)


def _segmentation(tokens):
    """Labels a linear layer on the tokens gets exactly: the argmax of its upsampled logits."""
    return _up(torch.einsum("cd,ndhw->nchw", W, tokens)).argmax(1)


def _depth(tokens):
    """Depths that are a linear function of the tokens (metres, about 3 +- 0.4)."""
    return 3 + 0.4 * _up(torch.einsum("d,ndhw->nhw", A, tokens)[:, None])[:, 0]


def _tokens(n, seed):
    t = torch.randn(n, D, GRID, GRID, generator=torch.Generator().manual_seed(seed)).half()
    return t, torch.zeros(n, D).half()


def _batches(tokens: DenseTokens, size=50):
    return ((tokens.tokens[i : i + size], tokens.cls[i : i + size], tokens.targets[i : i + size])
            for i in range(0, len(tokens), size))


@pytest.mark.parametrize("kind", ["segmentation", "depth"])
def test_a_task_that_is_linear_in_the_patch_tokens_is_solved(kind):
    label = _segmentation if kind == "segmentation" else _depth
    (tr_x, tr_c), (te_x, te_c) = _tokens(300, 0), _tokens(100, 1)
    train = DenseTokens(tr_x, tr_c, label(tr_x.float()))
    test = DenseTokens(te_x, te_c, label(te_x.float()))
    protocol = DenseProtocol(steps=1000 if kind == "segmentation" else 300, batch_size=16 if kind == "segmentation"
                             else 8, lr=0.05)
    with one_thread_each():
        head = fit_dense_probe(train, kind, 4, protocol)
        scores = evaluate_dense(head, _batches(test), 4, examples=3)
    if kind == "segmentation":
        assert scores["miou"] > 95 and scores["pixel_acc"] > 97
        assert scores["examples"].shape == (3, SIZE, SIZE) and scores["examples"].dtype == torch.uint8
    else:
        assert scores["rmse"] < 0.05 and scores["delta1"] == 100.0  # the depths spread 0.4 m around 3 m
    # a head that never trained is far from it: the scores measure the fit
    untrained = fit_dense_probe(train, kind, 4, DenseProtocol(steps=1, lr=1e-6))
    far = evaluate_dense(untrained, _batches(test), 4)
    assert far["miou"] < 60 if kind == "segmentation" else far["rmse"] > 0.2


class _Head:
    def __init__(self, kind, out):
        self.kind, self.out = kind, out

    def __call__(self, tokens, cls, size):
        return self.out


def test_miou_and_depth_scores_by_hand():
    target = torch.tensor([[[0, 0, 1, 1, 255]]])
    logits = F.one_hot(torch.tensor([[[0, 1, 1, 1, 0]]]), 3).permute(0, 3, 1, 2).float()
    scores = evaluate_dense(_Head("segmentation", logits), [(None, None, target)], 3)
    # class 0: 1 / 2, class 1: 2 / 3, class 2 never occurs (not averaged); the ignored pixel is not counted
    assert scores["miou"] == pytest.approx(100 * (1 / 2 + 2 / 3) / 2)
    assert scores["pixel_acc"] == pytest.approx(75.0) and scores["iou"][2] is None
    depth = torch.tensor([[[2.0, 4.0, 0.0]]])  # 0: no depth there
    scores = evaluate_dense(_Head("depth", torch.full((1, 1, 3), 2.0)), [(None, None, depth)], 1)
    assert scores["rmse"] == pytest.approx(math.sqrt(2)) and scores["delta1"] == pytest.approx(50.0)
    assert scores["abs_rel"] == pytest.approx(0.25)


class _PooledColour(torch.nn.Module):
    """A model whose patch tokens are the mean colour of each 4x4 cell."""

    def forward(self, x):
        cells = F.avg_pool2d(x, 4)
        return Features(cells.mean((2, 3)), cells.flatten(2).transpose(1, 2), tuple(cells.shape[-2:]))


def test_the_dense_probe_through_the_one_entry_point():
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(160, 3, 16, 16, generator=gen)
    cells = F.avg_pool2d(images, 4)
    weights = torch.tensor([[4.0, -2.0, -2.0], [-2.0, 4.0, -2.0], [-2.0, -2.0, 4.0]])
    maps = _up(torch.einsum("cd,ndhw->nchw", weights, cells)).argmax(1)  # which channel dominates, per pixel
    split = lambda s: InMemorySplit((images[s] * 255).round().to(torch.uint8), {"seg": maps[s]})  # noqa: E731
    data = Data("cells", split(slice(0, 120)), split(slice(120, 160)), {"seg": ("red", "green", "blue")}, 16, "x",
                dense={"seg": "segmentation"})
    model = _PooledColour()
    encoder = wb.Encoder("pooled", lambda x: model(x).cls, model, features=model)
    rows = wb.probe([encoder, encoder.__class__("pooled_too", encoder.encode, model, features=model)], data, "cpu",
                    [wb.ProbeTask("seg", method="segmentation")], dense=DenseProtocol(steps=600, lr=0.05),
                    log=lambda *a: None)
    assert [(r["model"], r["protocol"], r["metric"]) for r in rows] == [
        ("pooled", "linear segmentation", "mIoU"), ("pooled_too", "linear segmentation", "mIoU")]
    assert rows[0]["top1"] == round(rows[0]["miou"], 2) > 90 and rows[0]["top1"] == rows[1]["top1"]  # deterministic
    # tokens too large to keep (memory_gb 0): every batch is encoded again, and the probe learns the same
    streamed = wb.probe([encoder], data, "cpu", [wb.ProbeTask("seg", method="segmentation")],
                        dense=DenseProtocol(steps=600, lr=0.05, memory_gb=0), log=lambda *a: None)
    assert streamed[0]["top1"] > 90 and streamed[0]["examples"].shape == (6, 16, 16)
    with pytest.raises(ValueError, match="wrong protocol"):
        wb.probe([encoder], data, "cpu", [wb.ProbeTask("seg")], log=lambda *a: None)
    with pytest.raises(ValueError, match="patch tokens"):
        wb.probe([wb.Encoder("pooled", encoder.encode, model)], data, "cpu",
                 [wb.ProbeTask("seg", method="segmentation")], log=lambda *a: None)


def test_the_worlds_dense_labels_come_from_its_own_masks():
    images, labels = world.render(world.WorldConfig(), 40, seed=5)
    again, _, coverage = world.render_with_coverage(world.WorldConfig(), 40, seed=5)
    assert torch.equal(images, again)  # the masks change no random draw: the images are the same
    data = tr.world_dataset("world", n_train=40, n_test=20)
    assert data.dense == {"shape_seg": "segmentation", "colour_seg": "segmentation"}
    assert data.tasks["shape_seg"][0] == "background" and len(data.tasks["colour_seg"]) == 7
    y = data.train.labels
    seg, cov = y["shape_seg"], world.make_split(world.WorldConfig(), 40, seed=20_000).coverage
    assert torch.equal(seg == 0, cov == 0) and torch.equal(seg == 255, (cov > 0) & (cov < 255))
    inside = cov == 255
    assert torch.equal(seg[inside].long(), (y["shape"][:, None, None] + 1).expand_as(seg)[inside])
    assert torch.equal(y["colour_seg"][inside].long(), (y["colour"][:, None, None] + 1).expand_as(seg)[inside])
    # object pixels are saturated (the object's colour), background ones are not
    rgb = data.train.images.float() / 255
    saturation = rgb.max(1).values - rgb.min(1).values
    assert saturation[inside].mean() > 2 * saturation[cov == 0].mean()


def test_the_dense_figure_shows_image_truth_and_every_models_map():
    data = tr.world_dataset("world", n_train=40, n_test=20)
    task = next(t for t in tr.WORLD_TASKS if t.name == "shape_seg")
    maps = data.test.labels["shape_seg"][:3]
    rows = [{"model": m, "task": "shape_seg", "top1": 50.0, "examples": maps} for m in ("a", "b")]
    fig = tr.figures.dense_maps_figure(task, rows, data)
    assert len(fig.axes) == 3 * 4  # three images: image, ground truth, a, b
    assert [ax.get_title() for ax in fig.axes[:4]] == ["image", "ground truth", "a\nmIoU 50.0", "b\nmIoU 50.0"]


def test_the_probe_leaves_the_global_generator_alone_and_initialises_as_conv2d_does():
    """Dense probes run side by side in threads: one that reseeded torch's global generator could hand another
    thread its draws, and two identical probes would then score differently."""
    (tr_x, tr_c) = _tokens(40, 0)
    train = DenseTokens(tr_x, tr_c, _segmentation(tr_x.float()))
    torch.manual_seed(123)
    before = torch.get_rng_state()
    head = fit_dense_probe(train, "segmentation", 4, DenseProtocol(steps=0))
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(DenseProtocol().seed)  # the layer as Conv2d initialises it from the same seed
    reference = torch.nn.Conv2d(D, 4, 1)
    assert torch.equal(head.linear.weight, reference.weight) and torch.equal(head.linear.bias, reference.bias)
