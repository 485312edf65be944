"""The concept-generalization levels of a transfer run (CoG: Sariyildiz et al., ICCV 2021).

    concepts = concept_levels(tasks)          # CoG on ImageNet, the world's levels, and the level tasks
    concepts.tasks                            # L1 ... L5: the world's novel shapes, or ImageFolders named L1 ...
    concepts.figure(table, roles, datasets)   # top-1 per level, one line per model

**On ImageNet**, the CoG builder (``workbench.data.cog``) ranks the ImageNet-21K concepts by their Lin
similarity to ImageNet-1K and cuts them into five levels: the wnid lists a real CoG evaluation uses
(given as ImageFolder tasks named ``L1`` ... ``L5``). **In the offline world**, the same builder ranks
the 15 novel shapes against the six seen ones: five 3-way tasks on freshly rendered images.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.figure import Figure

from ..core.files import save_json
from ..data import Data
from ..data.cog import CogLevels, imagenet_levels, level_table
from .figures import levels_figure
from .tasks import WORLD_DATASETS, TransferTask, level_tasks, world_levels

LEVEL_TASK = re.compile(r"L\d+")  # an ImageFolder task named L1, L2, ...: a real CoG level


@dataclass
class ConceptLevels:
    imagenet: CogLevels | None = None
    world: CogLevels | None = None
    world_shapes: list[list[str]] | None = None  # the world's novel shapes, per level
    tasks: list[TransferTask] = field(default_factory=list)  # one per level

    def tables(self) -> list[str]:
        """Markdown: per level, its size, similarity range and example concepts."""
        return ([level_table(self.imagenet)] if self.imagenet else []) + (
            [level_table(self.world, examples=3)] if self.world else [])

    def save(self, out_dir) -> None:
        """``cog_levels_imagenet.json``: the wnid lists of the five ImageNet levels, for a real CoG evaluation."""
        if self.imagenet is not None:
            save_json({"levels": self.imagenet.levels, "mean_similarity": self.imagenet.mean_similarity},
                      Path(out_dir) / "cog_levels_imagenet.json")

    def summary(self) -> dict:
        out = {}
        if self.imagenet is not None:
            out["imagenet"] = {"sizes": [len(level) for level in self.imagenet.levels],
                               "mean_similarity": self.imagenet.mean_similarity}
        if self.world is not None:
            out["world"] = {"levels": self.world_shapes, "mean_similarity": self.world.mean_similarity}
        return out

    def per_level(self, table: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        """{model: {level: top1}} of a probe table."""
        return {m: {t.name: row[t.name] for t in self.tasks} for m, row in table.items()}

    def figure(self, table: dict[str, dict[str, float]], roles: dict[str, str],
               datasets: dict[str, Data]) -> Figure | None:
        """Top-1 per level, one line per model (None without level tasks)."""
        if not self.tasks:
            return None
        levels = self.world or self.imagenet
        names = [", ".join(shapes) for shapes in self.world_shapes] if self.world is not None else None
        first = self.tasks[0]
        chance = 100 / len(datasets[first.dataset].tasks[first.label])
        title = ("Top-1 per level (offline world: novel shapes by WordNet similarity to the seen ones)"
                 if self.world is not None else "Top-1 per CoG level")
        return levels_figure(self.per_level(table), roles, levels.mean_similarity[: len(self.tasks)], names,
                             chance=chance, title=title)


def concept_levels(tasks: list[TransferTask], enabled: bool = True, log=print) -> ConceptLevels:
    """The levels: CoG's on ImageNet; the world's, with their tasks, when the suite has world data; and the
    suite's own tasks named L1, L2, ... (ImageFolders of real CoG levels). Nothing when not ``enabled``."""
    if not enabled:
        return ConceptLevels()
    concepts = ConceptLevels(imagenet=imagenet_levels())
    log(f"ImageNet-1K seen vs ImageNet-21K candidates: {sum(len(lv) for lv in concepts.imagenet.levels)} concepts in "
        f"5 levels of {len(concepts.imagenet.levels[0])}; dropped: "
        + ", ".join(f"{k} {len(v)}" for k, v in concepts.imagenet.dropped.items()))
    if any(t.dataset in WORLD_DATASETS for t in tasks):
        concepts.world, concepts.world_shapes = world_levels()
        concepts.tasks = level_tasks(concepts.world_shapes)
    concepts.tasks += [t for t in tasks if LEVEL_TASK.fullmatch(t.name)]
    return concepts
