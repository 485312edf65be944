import pytest
import torch
from PIL import Image

import workbench as wb
from workbench.data import world


def test_world_is_deterministic_and_labelled():
    a, la = world.render(world.WorldConfig(), 50, seed=3)
    b, lb = world.render(world.WorldConfig(), 50, seed=3)
    assert torch.equal(a, b) and all(torch.equal(la[k], lb[k]) for k in la)
    assert a.shape == (50, 3, 32, 32) and a.dtype == torch.uint8
    assert la["shape"].max() < len(world.SHAPES) and la["colour"].max() < len(world.COLOURS)
    c, _ = world.render(world.WorldConfig(), 50, seed=4)
    assert not torch.equal(a, c)


def test_world_factors_are_independent():
    _, labels = world.render(world.WorldConfig(), 6000, seed=0)
    joint = torch.zeros(len(world.SHAPES), len(world.COLOURS))
    joint.index_put_((labels["shape"], labels["colour"]), torch.ones(6000), accumulate=True)
    expected = 6000 / joint.numel()
    assert (joint - expected).abs().max() < 0.4 * expected  # every combination, evenly


def test_world_colour_is_visible_in_object_pixels():
    images, labels = world.render(world.WorldConfig(pixel_noise=0.0, backgrounds=("flat",)), 600, seed=1)
    x = images.float() / 255
    sat = x.max(1).values - x.min(1).values  # saturation-like: the object is the saturated part
    red = labels["colour"] == world.COLOURS.index("red")
    mask = (sat > 0.4).unsqueeze(1)
    red_share = ((x[:, 0:1] * mask).sum((1, 2, 3)) / (x * mask).sum((1, 2, 3)).clamp_min(1e-6))
    assert red_share[red].mean() > red_share[~red].mean() + 0.2


def test_world_rejects_unknown_background():
    with pytest.raises(ValueError, match="known"):
        world.WorldConfig(backgrounds=("lava",))


def test_load_world_data():
    ds = wb.load_data("world", n_train=40, n_test=20)
    assert set(ds.tasks) == {"shape", "colour"}
    images, labels, skipped = next(iter(ds.loader("train", 16)))
    assert skipped == []
    assert images.shape == (16, 3, 32, 32) and 0 <= images.min() and images.max() <= 1
    assert set(labels) == {"shape", "colour"}


def test_missing_data_path_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*world"):
        wb.load_data(str(tmp_path / "nowhere"))


def test_empty_dataset_says_so(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no class folders"):
        wb.load_data(str(tmp_path / "empty"))
    (tmp_path / "some" / "cat").mkdir(parents=True)
    (tmp_path / "some" / "dog").mkdir(parents=True)
    with pytest.raises(ValueError, match="no image files in any class folder"):
        wb.load_data(str(tmp_path / "some"))
    for i in range(3):
        Image.new("RGB", (8, 8)).save(tmp_path / "some" / "cat" / f"{i}.png")
    (tmp_path / "some" / "dog" / "notes.txt").write_text("not an image")
    with pytest.warns(UserWarning, match="1 class folder.* with no images: dog"):
        ds = wb.load_data(str(tmp_path / "some"))  # an empty class is reported, not fatal
    assert ds.tasks == {"classes": ("cat", "dog")} and ds.empty_classes == {"train": ["dog"], "test": ["dog"]}
    assert "without train images: dog" in ds.describe()


def test_image_folder_with_an_unreadable_file(tmp_path):
    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(5):
            Image.new("RGB", (20, 12), (i * 40, 10, 10)).save(tmp_path / c / f"{i}.png")
    (tmp_path / "dog" / "broken.jpg").write_bytes(b"not an image")
    ds = wb.load_data(str(tmp_path), image_size=16)
    assert ds.tasks == {"classes": ("cat", "dog")}
    seen, skipped = 0, []
    for split in ("train", "test"):
        for images, labels, bad in ds.loader(split, 4):
            assert images.shape[1:] == (3, 16, 16) and len(labels["classes"]) == len(images)
            seen += len(images)
            skipped += bad
    assert seen == 10 and len(skipped) == 1 and "broken.jpg" in skipped[0]
