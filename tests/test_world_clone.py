"""World classes as prompts, the clone's contact sheet and judges' inputs, and the synthetic-vs-real study (06)."""
import numpy as np
import pytest
import torch
from PIL import Image

from workbench.core.params import ParameterError
from workbench.data import world
from workbench.generation import CloneStudyConfig, GenerateConfig, contact_sheet
from workbench.generation.fidelity import (
    ImageSet,
    class_index,
    clone_report,
    diversity,
    object_statistics,
    read_world_folder,
    real_world_set,
    report_tables,
)
from workbench.generation.prompts import (
    STRATEGIES,
    WORLD_CLASSES,
    class_table,
    prompt_class,
    prompt_strategy,
    resolve_classes,
    world_factors,
)
from workbench.generation.study import accuracy, gaps, real_test_sets, study_table, summarise, train_students


def test_world_classes_are_colour_shape_pairs_named_by_wordnet():
    assert len(WORLD_CLASSES) == 36 and WORLD_CLASSES[:2] == ("red_circle", "yellow_circle")
    assert world_factors("magenta_ring") == ("ring", "magenta")
    diamond = prompt_class("cyan_diamond")
    assert diamond.name == "cyan diamond" and "cyan rhombus" in diamond.names and diamond.hypernym == "parallelogram"
    assert diamond.definition == "a parallelogram with four equal sides; an oblique-angled equilateral parallelogram"
    assert prompt_class("red_plus").hypernym == "sign" and prompt_class("red_ring").hypernym == "toroid"


def test_every_strategy_means_something_in_the_world():
    prompts = {s: prompt_strategy(s)("red_circle", 0, 0) for s in STRATEGIES}
    assert prompts["name"] == "red circle"
    assert prompts["name_hypernym"] == "red circle, ellipse"
    assert prompts["name_definition"].startswith("red circle, ellipse in which the two axes are of equal length")
    backgrounds = {prompt_strategy("name_hypernym_background")("red_circle", k, 0).split(" inside ")[1]
                   for k in range(40)}
    assert backgrounds == {"flat grey", "grey gradient", "grey noise", "grey blobs"}  # training backgrounds only


def test_world_classes_resolve_and_imagenet_prompts_stay_as_they_were():
    assert resolve_classes("world") == list(WORLD_CLASSES)
    assert resolve_classes("red_circle, blue_ring") == ["red_circle", "blue_ring"]
    assert resolve_classes("n01440764,n02869837") == ["n01440764", "n02869837"]
    with pytest.raises(ValueError, match="not world classes"):
        resolve_classes("red_circle,n01440764")
    with pytest.raises(ValueError, match="more than once"):
        resolve_classes("red_circle,red_circle")
    assert prompt_strategy("name_hypernym_background")("n01440764", 0, 0) == "tench, cyprinid inside " + \
        prompt_strategy("{background}")("n01440764", 0, 0)
    assert "| circle | n13873502 |" in class_table(resolve_classes("world"))
    assert "tench" in class_table(["n01440764"])
    assert GenerateConfig.from_params(classes="world", model="tiny-offline").classes == list(WORLD_CLASSES)


def _write_clone(folder, classes, per_class, seed=0):
    """A folder laid out like a generated world clone, filled with real world images of each class."""
    images = real_world_set(per_class, seed)
    for image, label in zip(images.pixels, images.labels.tolist()):
        class_id = WORLD_CLASSES[label]
        if class_id in classes:
            (folder / class_id).mkdir(parents=True, exist_ok=True)
            n = len(list((folder / class_id).iterdir()))
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / class_id / f"{n:05d}.png")
    return images


def test_real_world_sets_are_balanced_and_folders_read_back(tmp_path):
    images = real_world_set(3, seed=0)
    assert len(images) == 108 and torch.equal(torch.bincount(images.labels), torch.full((36,), 3))
    split = world.make_split(world.WorldConfig(), 1, seed=0)
    assert images.pixels.dtype == torch.uint8 and images.pixels.shape[1:] == split.images.shape[1:]
    _write_clone(tmp_path / "clone", ["red_circle", "blue_ring"], 2)
    back = read_world_folder(tmp_path / "clone")
    assert back.labels.tolist() == [WORLD_CLASSES.index("blue_ring")] * 2 + [WORLD_CLASSES.index("red_circle")] * 2
    with pytest.raises(ValueError, match="no image of a world class"):
        read_world_folder(tmp_path)


def test_diversity_sees_objects_and_backgrounds():
    images = real_world_set(4, seed=0)
    stats = object_statistics(images.pixels)
    area = stats["area"]
    assert 100 < area.mean() < 500  # radius 6-12 px objects: roughly 110 to 450 pixels
    assert (stats["bg_texture"] >= 0).all()
    spread = diversity(images.pixels)
    assert spread["area"] > 30 and spread["x"] > 3 and spread["bg_level"] > 0.05
    collapsed = diversity(images.pixels[:1].repeat(20, 1, 1, 1))
    assert collapsed["area"] == 0 and collapsed["x"] == 0


def test_the_contact_sheet_of_a_world_clone_has_a_row_per_shape(tmp_path):
    _write_clone(tmp_path, [c for c in WORLD_CLASSES if "circle" in c or "ring" in c], 2)
    fig = contact_sheet(tmp_path, list(WORLD_CLASSES), per_class=8)
    labels = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert labels == ["circle", "ring"]
    assert len([ax for ax in fig.axes if ax.images]) == 2 * 12  # two images of each of six colours


def test_imagenet_clones_have_no_world_report():
    cfg = GenerateConfig.from_params(classes="n01440764", model="tiny-offline")
    assert clone_report(cfg, "unused", pipe=None, judges=lambda **_: pytest.fail("judges loaded")) is None
    assert "clones of the offline world" in report_tables(None)


def test_the_study_parameters():
    cfg = CloneStudyConfig.from_params(guidance_scales="2,7.5", prompts="name,name_hypernym_background", repeats=3,
                                       student_init="random")
    assert cfg.guidance_scales == [2.0, 7.5] and cfg.seeds == [0, 1, 2]
    assert list(cfg.clones()) == ["name-g2", "name-g7.5", "name_hypernym_background-g2",
                                  "name_hypernym_background-g7.5"]
    templates = CloneStudyConfig.from_params(prompts="a photo of a {name},a drawing of a {name}", guidance_scales=2)
    assert len(set(templates.clones())) == 2  # each template its own clone folder
    clone = cfg.clone_config("name", 7.5)
    assert clone.classes == list(WORLD_CLASSES) and clone.guidance_scale == 7.5 and clone.model == "world-offline"
    with pytest.raises(ParameterError, match="distinct numbers"):
        CloneStudyConfig.from_params(guidance_scales="2,2")
    with pytest.raises(ValueError, match="prompt"):
        CloneStudyConfig.from_params(prompts="photo")
    with pytest.raises(ParameterError, match="student_init"):
        CloneStudyConfig.from_params(student_init="/no/such/student")


def test_students_are_measured_on_real_images_and_held_out_backgrounds():
    """The study's bookkeeping with classifiers whose answers are known: one that reads the true class from a
    lookup of the test images, one that always says class 0."""
    cfg = CloneStudyConfig.from_params(n_test=72, repeats=2, student_init="random")
    tests = real_test_sets(cfg)
    assert set(tests) == {"real", "new_bg"} and len(tests["real"]) == 72
    assert not torch.equal(tests["real"].pixels, tests["new_bg"].pixels)
    truth = {t.pixels[i].numpy().tobytes(): int(t.labels[i]) for t in tests.values() for i in range(len(t))}

    def oracle(x):
        keys = [(xi * 255).round().to(torch.uint8).numpy().tobytes() for xi in x]
        return torch.nn.functional.one_hot(torch.tensor([truth[k] for k in keys]), 36).float()

    class Constant(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.one_hot(torch.zeros(len(x), dtype=torch.long), 36).float()

    class Oracle(torch.nn.Module):
        def forward(self, x):
            return oracle(x)

    assert accuracy(oracle, tests["real"], "cpu") == {"top1": 100.0, "shape": 100.0, "colour": 100.0}
    sets = {"real": ImageSet(tests["real"].pixels, tests["real"].labels),
            "name-g2": ImageSet(tests["new_bg"].pixels, tests["new_bg"].labels)}
    seen = []
    rows = train_students(cfg, sets, tests, lambda pixels, labels, seed: Oracle() if len(seen) < 2 and
                          not seen.append(seed) else Constant(), "cpu", log=lambda _: None)
    assert len(rows) == 2 * 2 * 2 and {r["test"] for r in rows} == {"real", "new_bg"}
    summary = summarise(rows)
    assert summary["real"]["real"]["top1"]["mean"] == 100.0
    chance = 100.0 * float((tests["real"].labels == 0).float().mean())
    assert summary["name-g2"]["real"]["top1"]["per_seed"] == [round(chance, 2)] * 2
    assert gaps(summary)["name-g2"]["real"] == round(chance - 100.0, 2)
    table = study_table(summary, {"name-g2": {"shape": 90.0, "colour": 100.0}})
    assert "| name-g2 | name | 2 | 90 / 100 |" in table and "| real | (real images) |" in table


def test_class_index_is_shape_major():
    assert WORLD_CLASSES[int(class_index(torch.tensor(4), torch.tensor(2)))] == "green_plus"
    assert np.array_equal(class_index(torch.tensor([0, 5]), torch.tensor([0, 5])).numpy(), [0, 35])
