"""The field's benchmarks by name: a tiny copy of each, in its published layout, read back through its name."""
import numpy as np
import pytest
import torch
from benchmark_copies import GREEN_TEST, GREEN_TRAIN, RED, write

import workbench as wb
from workbench import transfer as tr
from workbench.data import BENCHMARKS, DatasetNotFound, load_benchmark, named_dataset

CLASSIFICATION = [n for n, b in BENCHMARKS.items() if b.kind == "classification"]
DENSE = [n for n, b in BENCHMARKS.items() if b.kind != "classification"]


def test_every_dataset_the_issue_names_is_known():
    assert set(CLASSIFICATION) == {"aircraft", "cars", "dtd", "eurosat", "flowers", "food101", "pets", "sun397",
                                   "inat2018", "inat2019", "cifar10", "cifar100", "in1k"}
    assert set(DENSE) == {"ade20k", "voc2012", "nyud"}


def _decoded(split):
    """(red, green) of every readable image of a split, and its label."""
    out = []
    for i in range(len(split)):
        x, y = split[i]
        assert x is not None, y
        out.append((round(float(x[0].mean()) * 255), round(float(x[1].mean()) * 255), int(y["classes"])))
    return out


@pytest.mark.parametrize("name", CLASSIFICATION)
def test_a_tiny_copy_in_the_published_layout_reads_back_through_its_name(tmp_path, name):
    classes = write(name, tmp_path / name)
    data = named_dataset(name, data_root=tmp_path).load(image_size=8)
    assert data.tasks["classes"][: len(classes)] == tuple(classes)
    n_classes = len(classes)
    for split, green in ((data.train, GREEN_TRAIN), (data.test, GREEN_TEST)):
        seen = _decoded(split)
        # every image's class is the one its file says, and every image is in the split it belongs to
        assert all(red == RED[label] for red, _, label in seen), (name, seen)
        if name != "eurosat":  # EuroSAT has no official split: the reader draws it
            assert all(g == green for _, g, _ in seen), (name, seen)
        assert {label for *_, label in seen} == set(range(n_classes))
    if name == "eurosat":
        assert [len(data.train), len(data.test)] == [3 * 3, 3 * 2]  # 30 % of each class's 5 images held out
    elif name == "dtd":
        assert [len(data.train), len(data.test)] == [6, 3]  # partition 1: train + val / test
    elif name in ("flowers",):
        assert [len(data.train), len(data.test)] == [6, 6]  # train + val / test
    elif name.startswith("cifar"):
        assert [len(data.train), len(data.test)] == [2 * n_classes, n_classes] and data.image_size == 32
    else:
        assert [len(data.train), len(data.test)] == [2 * n_classes, n_classes]
    assert "partial copy" in data.describe()  # the official split is far larger


def test_the_reader_is_deterministic_and_the_root_may_be_the_inner_folder(tmp_path):
    write("flowers", tmp_path / "flowers")
    a = load_benchmark("flowers", tmp_path / "flowers", 8)
    b = named_dataset("flowers=" + str(tmp_path / "flowers" / "flowers-102")).load(8)  # the folder torchvision names
    assert a.fingerprint == b.fingerprint and [s for s, _ in a.test.samples] == [s for s, _ in b.test.samples]
    write("eurosat", tmp_path / "eurosat")
    first, second = (load_benchmark("eurosat", tmp_path / "eurosat", 8) for _ in range(2))
    assert first.test.samples == second.test.samples  # the seeded draw of EuroSAT's test images


@pytest.mark.parametrize("name", DENSE)
def test_dense_copies_read_back_with_their_maps(tmp_path, name):
    maps = write(name, tmp_path / name)
    data = named_dataset(name, data_root=tmp_path).load(image_size=12)
    label = BENCHMARKS[name].label
    assert data.dense == {label: BENCHMARKS[name].kind}
    for split, part in ((data.train, "train"), (data.test, "test")):
        assert len(split) == 3
        for i in range(3):
            x, y = split[i]
            expected = maps[(part, i)][:, 2:14]  # 16x12 frame: the shorter side is already 12, the centre crop
            assert x.shape == (3, 12, 12) and y[label].shape == (12, 12)
            np.testing.assert_allclose(y[label].numpy(), expected, atol=1e-6)
    if name == "ade20k":
        assert data.tasks[label][:2] == ("wall", "building") and len(data.tasks[label]) == 150
    if name == "voc2012":
        assert data.tasks[label][0] == "background" and len(data.tasks[label]) == 21


@pytest.mark.parametrize("name", CLASSIFICATION + DENSE)
def test_a_missing_root_fails_at_once_with_the_layout_and_how_to_get_it(tmp_path, name):
    with pytest.raises(DatasetNotFound) as err:
        named_dataset(name, data_root=tmp_path).check()
    text = str(err.value)
    assert text.startswith(f"{name} (") and str(tmp_path / name) in text and "no such folder" in text
    assert "Expected layout" in text and "How to get it" in text and "data_root" in text
    with pytest.raises(FileNotFoundError):  # a FileNotFoundError, as a missing ImageFolder is
        tr.check_roots(tr.parse_tasks(name, data_root=tmp_path))


@pytest.mark.parametrize("name, remove", [("flowers", "flowers-102/setid.mat"), ("food101", "food-101/meta/test.json"),
                                          ("sun397", "Testing_01.txt"), ("inat2019", "val2019.json"),
                                          ("cifar10", "cifar-10-batches-py/data_batch_3"),
                                          ("voc2012", "VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt")])
def test_an_incomplete_root_names_what_is_missing(tmp_path, name, remove):
    write(name, tmp_path / name)
    (tmp_path / name / remove).unlink()
    with pytest.raises(DatasetNotFound, match=f"missing {remove}"):
        named_dataset(name, data_root=tmp_path).load(8)


def test_an_index_naming_absent_images_is_incomplete(tmp_path):
    write("inat2018", tmp_path / "inat2018")
    victim = next((tmp_path / "inat2018" / "2018" / "Plantae" / "1").iterdir())
    victim.unlink()
    with pytest.raises(DatasetNotFound, match="inat2018: 1 images of .* are not under"):
        named_dataset("inat2018", data_root=tmp_path).load(8)


def test_named_tasks_in_04_and_02(tmp_path):
    for name in ("dtd", "cifar10"):
        write(name, tmp_path / name)
    write("pets", tmp_path / "elsewhere")
    tasks = tr.parse_tasks(f"dtd,cifar10,pets={tmp_path / 'elsewhere'}", data_root=tmp_path)
    tr.check_roots(tasks)
    data = tr.load_task_data(tasks, image_size=8)
    assert {t.name: (data[t.dataset].name, len(data[t.dataset].train)) for t in tasks} == {
        "dtd": ("dtd", 6), "cifar10": ("cifar10", 20), "pets": ("pets", 6)}
    cfg = wb.TransferConfig.from_params(tasks=f"dtd,pets={tmp_path / 'elsewhere'}", data_root=str(tmp_path))
    assert [t.named.root for t in cfg.task_list()] == [tmp_path / "dtd", tmp_path / "elsewhere"]
    # 02: the same names, probed beside its own data
    probe_cfg = wb.ProbeConfig.from_params(benchmarks="dtd", data_root=str(tmp_path), probe="knn", shots="2")
    (ref,) = probe_cfg.named_datasets()
    named_data = ref.load(8)
    # red says the class (green the split, which a probe must not see): red against a constant
    encoder = wb.Encoder("red", lambda x: torch.stack([x[:, 0].mean((1, 2)), torch.full((len(x),), 0.2)], 1),
                         torch.nn.Identity())
    rows = wb.probe([encoder], named_data, "cpu", probe_cfg.named_probe_tasks(ref, named_data.dense), cache=False,
                    log=lambda *a: None)
    assert {(r["task"], r["protocol"]) for r in rows} == {("dtd", "10-NN"), ("dtd", "20-NN"), ("dtd", "100-NN"),
                                                          ("dtd", "200-NN"), ("dtd", "linear 2-shot")}
    assert all(r["top1"] == 100.0 for r in rows if r["protocol"] == "linear 2-shot")
    with pytest.raises(DatasetNotFound, match="flowers"):
        wb.ProbeConfig.from_params(benchmarks="flowers", data_root=str(tmp_path))
