"""The concept-generalization levels of a transfer run (CoG: Sariyildiz et al., ICCV 2021).

    concepts = concept_levels(tasks)          # CoG on ImageNet, the world's levels, and the level tasks
    concepts.tasks                            # the world's novel shapes per level, and cog_l1 ... (or L1 ...) tasks
    concepts.figure(table, roles, datasets)   # top-1 per level, one line per model

**On ImageNet**, the CoG builder (``workbench.data.cog``) ranks the ImageNet-21K concepts by their Lin
similarity to ImageNet-1K and cuts them into five levels; the suite's ``cog_l1`` ... ``cog_l5`` tasks are the real
benchmark, drawn from an ImageNet-21K copy (``workbench.data.cog.cog_selection``; ImageFolders named ``L1`` ...
``L5`` count as levels too). **In the offline world**, the same builder ranks
the 15 novel shapes against the six seen ones: five 3-way tasks on freshly rendered images.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.figure import Figure

from ..core.files import save_json
from ..data import Data
from ..data.cog import CogLevels, CogRules, cog_selection, imagenet_levels, level_table
from .figures import levels_figure
from .tasks import WORLD_DATASETS, TransferTask, level_tasks, world_levels

LEVEL_TASK = re.compile(r"L\d+|cog_l\d")  # ImageNet-CoG level tasks: by name (cog_l3), or ImageFolders named L3


@dataclass
class ConceptLevels:
    imagenet: CogLevels | None = None
    world: CogLevels | None = None
    world_shapes: list[list[str]] | None = None  # the world's novel shapes, per level
    cog: dict | None = None  # the ImageNet-CoG selection of the suite's cog_l* tasks (levels, similarity, counts)
    tasks: list[TransferTask] = field(default_factory=list)  # one per level

    def tables(self) -> list[str]:
        """Markdown: per level, its size, similarity range and example concepts."""
        return ([level_table(self.imagenet)] if self.imagenet else []) + (
            [level_table(self.world, examples=3)] if self.world else [])

    def save(self, out_dir) -> None:
        """``cog_levels_imagenet.json``: the wnid lists of the five ImageNet levels (the builder on timm's list of
        ImageNet-21K synsets); ``cog_selection.json``: the levels the suite's cog_l* tasks use (concepts, images)."""
        if self.imagenet is not None:
            save_json({"levels": self.imagenet.levels, "mean_similarity": self.imagenet.mean_similarity},
                      Path(out_dir) / "cog_levels_imagenet.json")
        if self.cog is not None:
            save_json(self.cog, Path(out_dir) / "cog_selection.json")

    def summary(self) -> dict:
        out = {}
        if self.imagenet is not None:
            out["imagenet"] = {"sizes": [len(level) for level in self.imagenet.levels],
                               "mean_similarity": self.imagenet.mean_similarity}
        if self.world is not None:
            out["world"] = {"levels": self.world_shapes, "mean_similarity": self.world.mean_similarity}
        if self.cog is not None:
            out["cog"] = {"root": self.cog["root"], "mean_similarity": self.cog["mean_similarity"],
                          "concepts": [len(level) for level in self.cog["levels"]], "dropped": self.cog["dropped"]}
        return out

    def per_level(self, table: dict[str, dict[str, float]], tasks: list | None = None) -> dict[str, dict[str, float]]:
        """{model: {level: top1}} of a probe table, over ``tasks`` (default: every level task)."""
        return {m: {t.name: row[t.name] for t in (self.tasks if tasks is None else tasks)} for m, row in table.items()}

    def figure(self, table: dict[str, dict[str, float]], roles: dict[str, str],
               datasets: dict[str, Data]) -> Figure | None:
        """Top-1 per level, one line per model (None without level tasks): the real CoG levels of the suite when it
        has some, else the world's."""
        if not self.tasks:
            return None
        real = [t for t in self.tasks if LEVEL_TASK.fullmatch(t.name)]
        tasks = real or self.tasks
        if real:
            similarity = (self.cog or {}).get("mean_similarity") or self.imagenet.mean_similarity
            names, title = None, "Top-1 per ImageNet-CoG level"
        else:
            similarity = self.world.mean_similarity
            names = [", ".join(shapes) for shapes in self.world_shapes]
            title = "Top-1 per level (offline world: novel shapes by WordNet similarity to the seen ones)"
        chance = 100 / len(datasets[tasks[0].dataset].tasks[tasks[0].label])
        return levels_figure(self.per_level(table, tasks), roles, similarity[: len(tasks)], names, chance=chance,
                             title=title)


def concept_levels(tasks: list[TransferTask], enabled: bool = True, cog_rules: CogRules | None = None,
                   log=print) -> ConceptLevels:
    """The levels: CoG's on ImageNet; the world's, with their tasks, when the suite has world data; and the
    suite's own level tasks: ImageNet-CoG levels by name (``cog_l1`` ..., their selection from ImageNet-21K) or
    ImageFolders named L1, L2, ... Nothing when not ``enabled``."""
    if not enabled:
        return ConceptLevels()
    concepts = ConceptLevels(imagenet=imagenet_levels())
    log(f"ImageNet-1K seen vs ImageNet-21K candidates: {sum(len(lv) for lv in concepts.imagenet.levels)} concepts in "
        f"5 levels of {len(concepts.imagenet.levels[0])}; dropped: "
        + ", ".join(f"{k} {len(v)}" for k, v in concepts.imagenet.dropped.items()))
    if any(t.dataset in WORLD_DATASETS for t in tasks):
        concepts.world, concepts.world_shapes = world_levels()
        concepts.tasks = level_tasks(concepts.world_shapes)
    real = [t for t in tasks if LEVEL_TASK.fullmatch(t.name)]
    cog = next((t.named for t in real if t.named is not None), None)
    if cog is not None:
        selection = cog_selection(cog.root, cog_rules or CogRules(), log=log)
        concepts.cog = {"root": selection["root"], "rules": selection["rules"],
                        "levels": selection["levels"], "mean_similarity": selection["mean_similarity"],
                        "images": {w: {s: len(c[s]) for s in ("train", "test")}
                                   for w, c in selection["concepts"].items()},
                        "dropped": {k: len(v) for k, v in selection["dropped"].items()}}
        log(f"ImageNet-CoG from {cog.root}: {len(selection['levels'])} levels of {len(selection['levels'][0])} "
            "concepts, mean Lin similarity " + ", ".join(f"{s:.2f}" for s in selection["mean_similarity"]))
    concepts.tasks += real
    return concepts
