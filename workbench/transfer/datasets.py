"""The images of the transfer tasks: the offline world's datasets (rendered here), datasets by name, ImageFolders."""
from __future__ import annotations

import torch

from ..core.files import config_hash
from ..data import Data, InMemorySplit, load_data, world
from ..data.cog import CogRules
from ..data.dense import IGNORE
from .tasks import WORLD_DATASETS, TransferTask


def object_maps(split: world.WorldSplit) -> dict[str, torch.Tensor]:
    """The world's dense labels, from the renderer's coverage: per pixel 0 for background, 1 + the object's shape
    (``shape_seg``) or colour (``colour_seg``) where the object covers the whole pixel, ``IGNORE`` on its
    anti-aliased edge (partly object, partly background: no single answer)."""
    full, empty = split.coverage == 255, split.coverage == 0
    maps = {}
    for factor in ("shape", "colour"):
        classes = (split.labels[factor] + 1).to(torch.uint8)[:, None, None].expand_as(split.coverage)
        edge = torch.full_like(split.coverage, IGNORE)
        maps[f"{factor}_seg"] = torch.where(full, classes, torch.where(empty, torch.zeros_like(edge), edge))
    return maps


def world_dataset(name: str, n_train: int = 6000, n_test: int = 2000, seed: int = 0,
                  level_shapes: list[list[str]] | None = None) -> Data:
    """One of the world's transfer datasets, all labels included.

    ``world`` is exactly the images 03 distills and probes on (same seeds as ``load_data("world")``);
    ``world_new_backgrounds`` draws fresh images on the held-out background styles;
    ``world_novel_shapes`` draws the novel shapes on training backgrounds, with a label per CoG level
    (-1 for images of other levels) when ``level_shapes`` is given.
    """
    if name == "world":
        cfg, shapes, seeds = world.WorldConfig(), world.SHAPES, (20_000, 30_000)
    elif name == "world_new_backgrounds":
        cfg, shapes, seeds = world.WorldConfig(backgrounds=world.HELD_OUT_BACKGROUNDS), world.SHAPES, (40_000, 50_000)
    elif name == "world_novel_shapes":
        cfg, shapes, seeds = world.WorldConfig(), world.NOVEL_SHAPES, (60_000, 70_000)
    else:
        raise ValueError(f"unknown world dataset {name!r}; known: {list(WORLD_DATASETS)}")
    splits = [world.make_split(cfg, n, seed=s + seed, shapes=shapes)
              for n, s in ((n_train, seeds[0]), (n_test, seeds[1]))]
    tasks = {"shape": tuple(shapes), "colour": world.COLOURS,
             "shape_x_colour": tuple(f"{c} {s}" for s in shapes for c in world.COLOURS)}
    dense = {}
    if name == "world":  # the in-domain images also carry the dense tasks
        tasks.update({"shape_seg": ("background", *shapes), "colour_seg": ("background", *world.COLOURS)})
        dense = {"shape_seg": "segmentation", "colour_seg": "segmentation"}
    for split in splits:
        split.labels["shape_x_colour"] = split.labels["shape"] * len(world.COLOURS) + split.labels["colour"]
        split.labels.pop("background")
        if dense:
            split.labels.update(object_maps(split))
    if level_shapes and name == "world_novel_shapes":
        for k, members in enumerate(level_shapes, 1):
            tasks[f"L{k}"] = tuple(members)
            lookup = torch.full((len(shapes),), -1, dtype=torch.long)
            for j, s in enumerate(members):
                lookup[shapes.index(s)] = j
            for split in splits:
                split.labels[f"L{k}"] = lookup[split.labels["shape"]]
    fingerprint = config_hash({"world": world.config_dict(cfg), "version": world.VERSION, "shapes": shapes,
                               "n": [n_train, n_test], "seeds": [s + seed for s in seeds], "labels": tasks})
    tr, te = splits
    return Data(name, InMemorySplit(tr.images, tr.labels), InMemorySplit(te.images, te.labels), tasks,
                cfg.image_size, fingerprint, dense=dense)


def load_task_data(tasks: list[TransferTask], n_train: int = 6000, n_test: int = 2000, image_size: int = 224,
                   level_shapes: list[list[str]] | None = None, cog_rules: CogRules | None = None,
                   log=print) -> dict[str, Data]:
    """Every dataset the tasks need, each loaded once (tasks on the same images share features): the world's,
    datasets by name (``cog_rules``: how CoG levels are drawn from ImageNet-21K, CoG's own by default) and
    ImageFolders."""
    out = {}
    for task in tasks:
        if task.dataset in out:
            continue
        if task.dataset in WORLD_DATASETS:
            out[task.dataset] = world_dataset(task.dataset, n_train, n_test, level_shapes=level_shapes)
        elif task.named is not None:
            out[task.dataset] = task.named.load(image_size, cog_rules, log=log)
        else:
            out[task.dataset] = load_data(task.dataset, image_size=image_size)
    return out
