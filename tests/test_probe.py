import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import workbench as wb
from workbench.probing import (
    cached_features,
    extract_features,
    few_shot_indices,
    few_shot_probe,
    fit_linear_probe,
    knn_probe,
    linear_probe,
    model_fingerprint,
)
from workbench.probing.linear import WEIGHT_DECAYS, reference_fit_linear_probe


def mixture(n, classes=5, dim=16, seed=0, spread=1.0):
    gen = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, dim, generator=torch.Generator().manual_seed(99)) * 3
    y = torch.randint(0, classes, (n,), generator=gen)
    return centers[y] + spread * torch.randn(n, dim, generator=gen), y


def test_linear_probe_separable_vs_random_labels():
    xtr, ytr = mixture(500)
    xte, yte = mixture(200, seed=1)
    assert linear_probe(xtr, ytr, xte, yte)["top1"] > 95
    shuffled = linear_probe(xtr, ytr[torch.randperm(500)], xte, yte)
    assert shuffled["top1"] < 40


def test_linear_probe_reaches_the_same_optimum_as_scikit_learn():
    sklearn = pytest.importorskip("sklearn.linear_model")
    xtr, ytr = mixture(600, classes=4, dim=8, spread=4.0)
    xte, yte = mixture(300, classes=4, dim=8, seed=1, spread=4.0)
    wd = 1e-2
    ours = linear_probe(xtr, ytr, xte, yte, weight_decay=wd)
    xn = F.normalize(xtr, dim=1).numpy()
    C = 1.0 / (wd * len(xtr))  # sklearn: 0.5||W||^2 + C * sum CE  <=>  mean CE + wd/2 ||W||^2
    ref = sklearn.LogisticRegression(C=C, tol=1e-8, max_iter=10_000).fit(xn, ytr.numpy())
    ref_top1 = 100 * ref.score(F.normalize(xte, dim=1).numpy(), yte.numpy())
    assert abs(ours["top1"] - ref_top1) <= 1 / 3  # at most one test image of 300 on a decision boundary


def test_few_shot_probe_reaches_the_optimum_of_scikit_learn():
    # fewer images than dimensions (a few-shot probe): the covariance is singular, the optimum is still reached
    sklearn = pytest.importorskip("sklearn.linear_model")
    gen = torch.Generator().manual_seed(0)
    centers = torch.randn(6, 96, generator=gen) * 0.3 + torch.rand(96, generator=gen)
    y = torch.arange(6).repeat(5)
    x = centers[y] + torch.randn(len(y), 96, generator=gen)
    wd = 1e-3
    probe, _ = fit_linear_probe(x, y, 6, weight_decay=wd)
    xn = F.normalize(x, dim=1)
    ref = sklearn.LogisticRegression(C=1.0 / (wd * len(y)), tol=1e-10, max_iter=10_000).fit(xn.numpy(), y.numpy())
    ref_w, ref_b = torch.tensor(ref.coef_).float(), torch.tensor(ref.intercept_).float()

    def objective(w, b):
        return F.cross_entropy(xn @ w.t() + b, y).item() + 0.5 * wd * w.pow(2).sum().item()

    assert objective(probe.weight, probe.bias) == pytest.approx(objective(ref_w, ref_b), abs=1e-6)


def test_fitted_probe_applies_to_raw_features_and_log_loss_selection_calibrates_it():
    xtr, ytr = mixture(200, spread=0.3)  # separable: every decay is 100% accurate on the held-out part
    xte, yte = mixture(200, seed=1, spread=0.3)
    decays = (1.0, 1e-1, 1e-2, 1e-4, 1e-6)
    by_top1, a = fit_linear_probe(xtr, ytr, weight_decays=decays, select="top1")
    by_log_loss, b = fit_linear_probe(xtr, ytr, weight_decays=decays, select="log_loss")
    assert a["val_top1"] == b["val_top1"] == 100 and b["weight_decay"] < a["weight_decay"]  # ties: stronger decay
    assert by_top1.accuracy(xte, yte) > 95 and by_log_loss.accuracy(xte, yte) > 95
    # the same predictions, but only the log-loss choice gives them confident probabilities
    assert F.cross_entropy(by_log_loss(xte), yte) < 0.1 < 0.5 < F.cross_entropy(by_top1(xte), yte)
    assert torch.equal(by_top1(xte * 3.0).argmax(1), by_top1(xte).argmax(1))  # features are L2-normalised
    with pytest.raises(ValueError, match="select must be"):
        fit_linear_probe(xtr, ytr, select="accuracy")
    with pytest.warns(UserWarning, match="too few to hold any out.*the middle of the grid"):  # a tiny folder
        tiny, info = fit_linear_probe(xtr[:4], torch.tensor([0, 1, 2, 3]))
    assert info["val_top1"] is None and info["weight_decay"] == sorted(WEIGHT_DECAYS)[len(WEIGHT_DECAYS) // 2]
    assert tiny(xtr[:4]).shape == (4, 4)


def noisy_mixture(seed=0, n_train=1200, n_test=600, classes=8, dim=32):
    """Overlapping classes and 10% of the training labels resampled: the best decay is inside the path."""
    xtr, ytr = mixture(n_train, classes, dim, seed=seed, spread=4.0)
    xte, yte = mixture(n_test, classes, dim, seed=seed + 100, spread=4.0)
    gen = torch.Generator().manual_seed(seed)
    noisy = torch.rand(n_train, generator=gen) < 0.1
    return xtr, torch.where(noisy, torch.randint(0, classes, (n_train,), generator=gen), ytr), xte, yte


@pytest.mark.parametrize("select", ["top1", "log_loss"])
def test_fast_probe_agrees_with_the_plain_reference(select):
    # the fast path (preconditioned basis, warm starts, capped path fits, early stop) against the readable
    # reference (each decay from zero to convergence, the whole path): the same decay, top-1 within 0.5
    xtr, ytr, xte, yte = noisy_mixture()
    ref, info = reference_fit_linear_probe(xtr, ytr, select=select)
    assert 1e-8 < info["weight_decay"] < 1  # not an end of the path: the search matters
    for options in ({}, {"path_iter": None, "patience": None}):
        fast, fast_info = fit_linear_probe(xtr, ytr, select=select, **options)
        assert fast_info["weight_decay"] == pytest.approx(info["weight_decay"])
        assert abs(fast_info["val_top1"] - info["val_top1"]) <= 0.5
        assert abs(fast.accuracy(xte, yte) - ref.accuracy(xte, yte)) <= 0.5


def test_knn_probe_by_hand():
    train_x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.0, 1.0]])
    train_y = torch.tensor([0, 0, 1, 1, 1])
    test_x = torch.tensor([[1.0, 0.05], [0.05, 1.0]])
    test_y = torch.tensor([0, 1])
    assert knn_probe(train_x, train_y, test_x, test_y, ks=(1, 2)) == {1: 100.0, 2: 100.0}
    # k = 5 votes with every training point: the near ones carry exp(sim / T), so class 0 still wins for the first
    assert knn_probe(train_x, train_y, test_x, test_y, ks=(5,))[5] == 100.0
    assert knn_probe(train_x, train_y, test_x, test_y, ks=(5,), temperature=100.0)[5] == 50.0  # ~ majority vote


def test_few_shot_draws_n_per_class():
    y = torch.tensor([0] * 10 + [1] * 10 + [2] * 3)
    idx = few_shot_indices(y, 5, seed=0)
    assert torch.equal(torch.bincount(y[idx]), torch.tensor([5, 5, 3]))
    assert not torch.equal(idx, few_shot_indices(y, 5, seed=1))
    xtr, ytr = mixture(300)
    xte, yte = mixture(100, seed=1)
    result = few_shot_probe(xtr, ytr, xte, yte, shots=(1, 10), seeds=(0, 1))
    assert set(result) == {1, 10} and result[10]["mean"] >= result[1]["mean"] - 5


def test_feature_cache_reuses_and_rebuilds_on_mismatch(monkeypatch):
    data = wb.load_data("world", n_train=40, n_test=20)
    calls = []

    def encode(x):
        calls.append(len(x))
        return x.mean((2, 3))

    first = cached_features("toy", "fp1", encode, data, "train", "cpu")
    n_calls = len(calls)
    again = cached_features("toy", "fp1", encode, data, "train", "cpu")
    assert len(calls) == n_calls and torch.equal(first.x, again.x)
    assert torch.equal(again.labels["shape"], first.labels["shape"])
    cached_features("toy", "fp2", encode, data, "train", "cpu")  # other weights: other entry
    assert len(calls) > n_calls
    # a corrupt cache file is detected and rebuilt
    from workbench.core.files import cache_dir

    for path in cache_dir("features").glob("toy-train-*.safetensors"):
        path.write_bytes(b"garbage")
    messages = []
    rebuilt = cached_features("toy", "fp1", encode, data, "train", "cpu", log=messages.append)
    assert torch.equal(rebuilt.x, first.x) and any("rebuilding" in m for m in messages)


def test_unreadable_images_are_skipped_and_counted(tmp_path):
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(4):
            Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(tmp_path / c / f"{i}.png")
    (tmp_path / "a" / "truncated.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    data = wb.load_data(str(tmp_path), image_size=8)
    fs_train = extract_features(lambda x: x.mean((2, 3)), data, "train", "cpu")
    fs_test = extract_features(lambda x: x.mean((2, 3)), data, "test", "cpu")
    assert len(fs_train.x) + len(fs_test.x) == 8
    assert len(fs_train.skipped) + len(fs_test.skipped) == 1


def test_model_fingerprint_tracks_weights():
    m = torch.nn.Linear(3, 2)
    fp = model_fingerprint(m)
    assert fp == model_fingerprint(m)
    with torch.no_grad():
        m.weight[0, 0] += 1
    assert fp != model_fingerprint(m)
