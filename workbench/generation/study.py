"""Do we still need real images? ImageNet-SD's experiment on the offline world (notebook 06).

    cfg = CloneStudyConfig.from_params(repeats=2)
    clones = generate_clones(cfg, out / "clones", pipe)           # one clone per prompt strategy and guidance
    sets = {"real": real_world_set(cfg.images_per_class, cfg.seed)}
    sets.update({name: read_world_folder(folder) for name, folder in clones.items()})
    rows = train_students(cfg, sets, real_test_sets(cfg), train, device)   # train(pixels, labels, seed) -> model

ImageNet-SD (Sariyildiz et al., CVPR 2023) trains a classifier on a synthetic clone of ImageNet and measures it
on real ImageNet images, for each prompt strategy and guidance scale. Here the clone is the world model's
(``world-offline``): ``images_per_class`` images for each of the 36 colour-shape classes, for every prompt
strategy and every guidance scale; the real set holds as many real world images (the same number per class).
Each set trains the same student with the same recipe and seeds; it is measured on real test images (the
training backgrounds) and on real images with the held-out backgrounds (stripes, checker), which no model of the
world, the world model included, has seen: 36-way top-1, and its shape and colour parts.

The training function comes from the caller: the notebook trains a student classifier
(``workbench.models.make_classifier``) by cross-entropy on the set with the loop every student classifier shares,
``workbench.models.train_classifier`` (05's label-only student, with the study's steps, batch size and lr).
"""
from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from matplotlib.figure import Figure

from ..core.config import Config, param
from ..core.params import ParameterError, as_float, as_list
from ..core.stats import seed_stats
from ..data import world
from ..data.factory import check_data
from ..models import check_student_source
from ..options import DEVICE, LR, N_TEST, PRECISION, REPEATS, SEED, STUDENT, STUDENT_INIT, STUDENT_STEPS
from .config import IMAGES_PER_CALL, IMAGES_PER_CLASS, MODEL, STEPS, GenerateConfig
from .fidelity import FIDELITY_ALIGN, FIDELITY_COLUMNS, SWEEP_GUIDANCE, ImageSet, class_index, fidelity_cells, percent
from .prompts import STRATEGIES, WORLD_CLASSES, prompt_strategy
from .writer import generate

TESTS = {"real": "real test images (training backgrounds)", "new_bg": "real images, held-out backgrounds"}


def _floats(value, name: str) -> list[float]:
    values = [as_float(v, name) for v in as_list(value, name)]
    if any(v < 0 for v in values) or len(set(values)) != len(values):
        raise ParameterError(f"{name} must be distinct numbers >= 0, got {values}")
    return values


def _prompts(values: list[str]) -> None:
    for v in values:
        prompt_strategy(v)


@dataclass
class CloneStudyConfig(Config):
    """The clones (prompt strategies x guidance scales), the student and its recipe, the seeds."""

    kind: ClassVar[str] = "06_synthetic_vs_real"
    what: ClassVar[str] = "study"

    prompts: list[str] = param(default_factory=lambda: list(STRATEGIES), check=_prompts,
                               help="prompt strategies (or templates): one clone each, per guidance scale")
    guidance_scales: list[float] = param(default_factory=lambda: list(SWEEP_GUIDANCE), parse=_floats,
                                         help="classifier-free guidance of the clones: low and high")
    images_per_class: int = IMAGES_PER_CLASS()
    steps: int = STEPS(10)
    model: str = MODEL()
    student: str = STUDENT()
    student_init: str = STUDENT_INIT("student")
    student_steps: int = STUDENT_STEPS(100)
    student_batch: int = param(32, ge=2, help="real or generated images per student step")
    lr: float = LR(1e-3)
    seed: int = SEED()
    repeats: int = REPEATS(2)
    n_test: int = N_TEST(1000)
    images_per_call: int | None = IMAGES_PER_CALL()
    device: str = DEVICE()
    precision: str = PRECISION()  # of the students' training

    def check(self) -> None:
        if self.n_test < len(WORLD_CLASSES):
            raise ParameterError(f"n_test must be at least the world's {len(WORLD_CLASSES)} classes (each test set "
                                 f"holds every class), got {self.n_test}")

    def check_inputs(self) -> None:
        """The student to start from, loaded as the run will load it, and the offline world's memory."""
        check_data("world", self.n_test, self.n_test)
        check_student_source(self.student_init)

    @property
    def seeds(self) -> list[int]:
        return [self.seed + i for i in range(self.repeats)]

    def clones(self) -> dict[str, tuple[str, float]]:
        """Every clone: its name (``<prompt>-g<guidance>``) -> (prompt, guidance)."""
        return {clone_name(p, g): (p, g) for p in self.prompts for g in self.guidance_scales}

    def clone_config(self, prompt: str, guidance: float) -> GenerateConfig:
        return GenerateConfig.from_params(classes="world", prompt=prompt, guidance_scale=guidance, steps=self.steps,
                                          model=self.model, images_per_class=self.images_per_class, seed=self.seed,
                                          images_per_call=self.images_per_call, device=self.device)


def clone_name(prompt: str, guidance: float) -> str:
    """``<strategy>-g<guidance>``; a template is named by a digest of its text (two templates, two folders)."""
    if prompt not in STRATEGIES:
        prompt = "template-" + hashlib.sha1(prompt.encode()).hexdigest()[:8]
    return f"{prompt}-g{guidance:g}"


# ----------------------------------------------------------------------------- the training and test sets

def generate_clones(cfg: CloneStudyConfig, folder, pipe, log=print) -> dict[str, Path]:
    """Every clone of the study, each a resumable generated folder ``<folder>/<clone name>``."""
    out = {}
    for name, (prompt, guidance) in cfg.clones().items():
        t0 = time.time()
        result = generate(cfg.clone_config(prompt, guidance), Path(folder) / name, pipe=pipe, log=None)
        log(f"clone {name}: {result.generated} images generated, {result.skipped} already there "
            f"({time.time() - t0:.0f}s)")
        out[name] = Path(folder) / name
    return out


def real_test_sets(cfg: CloneStudyConfig) -> dict[str, ImageSet]:
    """Real test images: on the training backgrounds, and on the held-out ones."""
    out = {}
    for name, backgrounds, seed in (("real", world.TRAIN_BACKGROUNDS, 42_000),
                                    ("new_bg", world.HELD_OUT_BACKGROUNDS, 43_000)):
        split = world.make_split(world.WorldConfig(backgrounds=backgrounds), cfg.n_test, seed=[seed, cfg.seed])
        out[name] = ImageSet(split.images, class_index(split.labels["shape"], split.labels["colour"]))
    return out


# ----------------------------------------------------------------------------- the students

@torch.no_grad()
def accuracy(classify: Callable[[torch.Tensor], torch.Tensor], images: ImageSet, device,
             batch_size: int = 250) -> dict[str, float]:
    """36-way top-1 (%) of ``classify`` (float images in [0, 1] -> logits), and its shape and colour parts."""
    preds = []
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            x = images.pixels[i : i + batch_size].float().div(255).to(device)
            preds.append(classify(x).argmax(1).cpu())
    pred, y, n = torch.cat(preds), images.labels, len(world.COLOURS)
    return {"top1": percent(pred == y), "shape": percent(pred // n == y // n), "colour": percent(pred % n == y % n)}


def train_students(cfg: CloneStudyConfig, sets: dict[str, ImageSet], tests: dict[str, ImageSet],
                   train: Callable[[torch.Tensor, torch.Tensor, int], torch.nn.Module], device,
                   log=print, on_row: Callable[[dict], None] | None = None) -> list[dict]:
    """One student per training set and seed, each measured on every test set: one row per (set, seed, test)."""
    rows, t0 = [], time.time()
    for name, images in sets.items():
        for seed in cfg.seeds:
            model = train(images.pixels, images.labels, seed).eval()
            for test, test_images in tests.items():
                row = {"set": name, "seed": seed, "test": test, "images": len(images),
                       **accuracy(model, test_images, device)}
                rows.append(row)
                if on_row is not None:
                    on_row(row)
            log(f"  {name:<34} seed {seed}: real top-1 {rows[-2]['top1']:5.1f}%, held-out backgrounds "
                f"{rows[-1]['top1']:5.1f}%  ({time.time() - t0:.0f}s)")
    return rows


def summarise(rows: list[dict]) -> dict[str, dict[str, dict]]:
    """set -> test -> metric -> seed statistics (mean, std, per seed)."""
    out: dict[str, dict[str, dict]] = {}
    for r in rows:
        out.setdefault(r["set"], {}).setdefault(r["test"], {}).setdefault("rows", []).append(r)
    return {s: {t: {m: seed_stats([r[m] for r in v["rows"]]) for m in ("top1", "shape", "colour")}
                for t, v in tests.items()} for s, tests in out.items()}


def gaps(summary: dict) -> dict[str, dict[str, float]]:
    """Mean real-image top-1 of each clone's students minus that of the real set's (points), per test set."""
    real = summary["real"]
    return {name: {t: round(v["top1"]["mean"] - real[t]["top1"]["mean"], 2) for t, v in tests.items()}
            for name, tests in summary.items() if name != "real"}


def student_init(spec: str, default_student: Callable[[], Path]) -> str:
    """``"student"``: 03's default student (``default_student()``, which may distill it first); else as given."""
    return str(default_student()) if spec == "student" else spec


def fidelity_table(fidelity: dict[str, dict]) -> str:
    """Markdown: per image set, the judged fidelity and the spreads of what the prompt does not fix."""
    rows = [f"| set {FIDELITY_COLUMNS}", f"|---|{FIDELITY_ALIGN}"]
    for name, f in fidelity.items():
        rows.append(f"| {name} {fidelity_cells(f, f)}")
    return "\n".join(rows)


def results_figure(summary: dict):
    """Bars: real-image top-1 of each set's students (mean, +- std, a dot per seed), on both test sets."""
    names = list(summary)
    fig = Figure(figsize=(10, 0.35 * len(names) + 1.5), dpi=100)
    axes = fig.subplots(1, len(TESTS), sharey=True, squeeze=False)[0]
    for ax, (test, title) in zip(axes, TESTS.items()):
        for i, name in enumerate(names):
            s = summary[name][test]["top1"]
            ax.barh(i, s["mean"], xerr=s["std"], color="C1" if name == "real" else "C0", alpha=0.8)
            ax.plot(s["per_seed"], [i] * len(s["per_seed"]), "k.", ms=4)
        ax.set_title(f"{title}: 36-way top-1 (%)", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(names)), names, fontsize=8)
    axes[0].invert_yaxis()
    fig.tight_layout()
    return fig


def study_table(summary: dict, fidelity: dict | None = None) -> str:
    """Markdown: one row per training set; fidelity of the set (judged), then the students' real-image top-1."""
    fidelity = fidelity or {}
    rows = ["| training set | prompt | guidance | fidelity shape / colour (%) | real: top-1 (%) | real: shape | "
            "held-out bg: top-1 (%) | held-out bg: shape | seeds (real top-1) |",
            "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for name, tests in summary.items():
        prompt, _, guidance = name.rpartition("-g") if name != "real" else ("(real images)", "", "")
        f = fidelity.get(name)
        fid = f"{f['shape']:.0f} / {f['colour']:.0f}" if f else ""
        real, new = tests["real"], tests["new_bg"]
        rows.append(f"| {name} | {prompt} | {guidance} | {fid} | {_pm(real['top1'])} | {_pm(real['shape'])} | "
                    f"{_pm(new['top1'])} | {_pm(new['shape'])} | "
                    f"{', '.join(f'{v:.1f}' for v in real['top1']['per_seed'])} |")
    return "\n".join(rows)


def _pm(s: dict) -> str:
    return f"{s['mean']:.1f} ± {s['std']:.1f}"
