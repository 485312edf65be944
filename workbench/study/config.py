"""The parameters of a study (the 07 notebook), and the default study: UNIC's ablations, as named variants.

UNIC (Sariyildiz et al., ECCV 2024) ablates its recipe one piece at a time from the full one: teacher dropping,
the ladder of projectors on every block, the standardization of the teachers' features, and the augmentation.
Each variant here is the default recipe (03's) with one of them changed; the study runs each over seeds and
reports each task's gain over the best teacher, with its interval and its paired difference to the default.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..core.config import Config, param
from ..core.params import ParameterError, as_list, did_you_mean
from .sweep import parse_seeds

UNIC_ABLATIONS = {
    "default": {},  # the full recipe: teacher dropping 0.5, ladder on all blocks, running standardization
    "no-teacher-dropping": {"teacher_drop_prob": 0.0},
    "ladder-last-block": {"ladder": "last"},  # one projector on the last block (the plain baseline)
    "no-standardization": {"standardize": "none"},
    "augment-unic": {"augment": "unic"},  # the official pipeline instead of the world's default, none
}


def as_variants(value, name: str = "variants") -> list[str]:
    """``all``, or variant names as a list or a comma-separated string; ``default`` among them."""
    names = as_list(value, name)
    if names == ["all"]:
        return list(UNIC_ABLATIONS)
    unknown = [n for n in names if n not in UNIC_ABLATIONS]
    if unknown:
        raise ParameterError(f"variants: no variant {unknown[0]!r}{did_you_mean(unknown[0], UNIC_ABLATIONS)}; "
                             f"known: all, {', '.join(UNIC_ABLATIONS)}")
    if "default" not in names:
        raise ParameterError("variants must include default: every variant is compared with it, seed by seed "
                             f"(e.g. -p variants default,{names[0]})")
    return names


@dataclass
class StudyConfig(Config):
    kind: ClassVar[str] = "07_studies"
    what: ClassVar[str] = "study"

    target: str = param("03_distill", help="what each run is: a notebook (03_distill, 05_task_distill, ...) or "
                                           "distill (the command line's stage)")
    # the defaults are CI-sized (the notebook's); the README's study: variants all, seeds 0,1,2, base empty
    variants: list[str] = param(default_factory=lambda: ["default", "no-teacher-dropping"], parse=as_variants,
                                help="UNIC's ablations to run, default first: all, or some of "
                                     + ", ".join(UNIC_ABLATIONS))
    seeds: list[int] = param(default_factory=lambda: [0, 1], check=parse_seeds,
                             help="every variant runs once per seed; intervals are over them")
    base: dict[str, str] = param(default_factory=lambda: {"n_train": "512", "n_test": "512", "epochs": "2"},
                                 help="parameters of every run, a mapping or name=value,... (empty: the target's "
                                      "defaults)")
    metrics: list[str] = param(default_factory=list, allow_empty=True, help="the summary values to compare, e.g. "
                                                          "gain_over_best_teacher.shape; empty: the target's "
                                                          "gains over the best teacher")
    launcher: str = param("local", choices=("local", "slurm"), execution=True,
                          help="local: this machine; slurm: one array job (python -m workbench sweep for its options)")
    max_parallel: int = param(1, ge=1, execution=True, help="runs at a time")

    @property
    def variant_params(self) -> dict[str, dict]:
        """Each chosen variant's parameters."""
        return {name: UNIC_ABLATIONS[name] for name in self.variants}
