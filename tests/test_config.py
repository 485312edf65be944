"""Configs declared once: the generic reading of a field by its type and metadata, roles, and one rule for
"same run or not" in every stage."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch

import workbench as wb
from workbench.core.config import Config, param
from workbench.core.params import ParameterError
from workbench.core.runs import OutDirError, prepare_out_dir
from workbench.core.training import configure_optimizer
from workbench.distillation import DistillConfig, distill
from workbench.distillation.checkpoint import resume
from workbench.distillation.unic import UNIC
from workbench.models import Student


@dataclass
class Toy(Config):
    kind: ClassVar[str] = "toy"
    what: ClassVar[str] = "toy"

    epochs: int = param(8, ge=1, help="passes")
    lr: float = param(0.1, gt=0)
    frac: float = param(0.5, ge=0, le=1)
    names: list[str] = param(default_factory=lambda: ["a", "b"])
    shots: list[int] = param(default_factory=list, allow_empty=True)
    files: dict[str, str] = param(default_factory=dict)
    size: int | None = param(None, ge=8)
    mode: str = param("fast", choices=("fast", "slow"))
    flag: bool = param(False)
    device: str = param("auto", execution=True)
    count: int = param(1, ge=1, extent=True)

    def check(self) -> None:
        if self.mode == "slow" and self.epochs < 2:
            raise ParameterError("mode 'slow' needs epochs >= 2")


def test_values_are_read_by_the_field_type_as_papermill_and_yaml_give_them():
    cfg = Toy.from_params(epochs="4", lr="0.5", names="x, y", shots="1,5", files="a=/p,b=/q", size="auto", flag="true")
    assert (cfg.epochs, cfg.lr, cfg.names, cfg.shots, cfg.files, cfg.size, cfg.flag) == (
        4, 0.5, ["x", "y"], [1, 5], {"a": "/p", "b": "/q"}, None, True)
    yaml_like = Toy.from_params(names=["x", "y"], shots=[1, 5], size=16)
    assert (yaml_like.names, yaml_like.shots, yaml_like.size) == (["x", "y"], [1, 5], 16)
    assert Toy.from_params(shots="").shots == [] and Toy.from_params(size=0).size is None
    assert Toy.from_params() == Toy()  # defaults are read (and checked) the same way


@pytest.mark.parametrize("params, message", [
    ({"epochs": "abc"}, r"epochs must be an integer, got 'abc' \(e.g. -p epochs 4\)"),
    ({"epochs": 0}, r"epochs must be >= 1, got 0"),
    ({"lr": 0}, r"lr must be > 0, got 0"),
    ({"frac": 1.5}, r"frac must be in \[0, 1\], got 1.5"),
    ({"size": 4}, r"size must be >= 8, got 4"),
    ({"mode": "medium"}, r"mode must be one of \['fast', 'slow'\], got 'medium'"),
    ({"flag": "maybe"}, r"flag must be True or False, got 'maybe'"),
    ({"names": ""}, r"names is empty"),
    ({"files": "a"}, r"files takes name=value pairs"),
    ({"colour": 1}, r"unknown toy parameter\(s\) \['colour'\]; known: \["),
    ({"mode": "slow", "epochs": 1}, r"mode 'slow' needs epochs >= 2"),
])
def test_each_bad_value_is_refused_with_what_to_type(params, message):
    with pytest.raises(ParameterError, match=message):
        Toy.from_params(**params)


def test_roles_and_the_run_key():
    assert Toy.fields_with_role("execution") == ["device"] and Toy.fields_with_role("extent") == ["count"]
    key = Toy().run_key()
    assert "device" not in key and "count" not in key and key["epochs"] == 8
    assert Toy(device="cuda", count=3).run_key() == key  # where and how much: the same run
    assert Toy(epochs=9).run_key() != key
    assert "**" in Toy(epochs=9)._repr_markdown_() and "| epochs | 9 |" not in Toy()._repr_markdown_()


def test_a_record_from_before_a_parameter_existed_is_the_same_run_at_its_default(tmp_path):
    old = {k: v for k, v in Toy().run_key().items() if k != "frac"}  # written before Toy had frac
    prepare_out_dir(tmp_path / "run", old, kind="toy", log=lambda *_: None)
    Toy().claim_out_dir(tmp_path / "run", log=lambda *_: None)  # frac at its default: the same run
    with pytest.raises(OutDirError, match=r"frac: folder 0.5, this run 0.25"):
        Toy(frac=0.25).claim_out_dir(tmp_path / "run", log=lambda *_: None)


def test_every_stage_marks_how_it_runs_as_execution_only():
    assert set(DistillConfig.fields_with_role("execution")) == {"device", "torch_compile", "nproc", "ckpt_every",
                                                                "keep_checkpoints", "logger"}
    assert set(wb.TaskDistillConfig.fields_with_role("execution")) == {"device", "workers", "logger"}
    assert set(wb.GenerateConfig.fields_with_role("execution")) == {"images_per_call", "device", "dtype"}
    assert set(wb.GenerateConfig.fields_with_role("extent")) == {"classes", "images_per_class"}
    assert set(wb.GenerateConfig().settings()) == {"prompt", "negative_prompt", "guidance_scale", "steps", "model",
                                                   "scheduler", "resolution", "seed", "image_format"}


def test_one_rule_for_the_out_dir_and_for_resuming(tmp_path):
    """An execution field flipped (torch_compile, how often to checkpoint) is the same run for the out_dir record
    and for the checkpoint it resumes from; a result field (base_lr) is another run for both."""
    data = wb.load_data("world", n_train=32, n_test=8)
    cfg = DistillConfig(student="wb_vit_tiny_patch8_32", epochs=1, batch_size=16, n_train=32, n_test=8)
    torch.manual_seed(0)
    teachers = {n: wb.create_teacher(n, pretrained=False) for n in cfg.teachers}
    out = cfg.claim_out_dir(tmp_path / "run", log=lambda *_: None)
    run = distill(cfg, data, teachers, out_dir=out, log=lambda *_: None)
    compiled = dataclasses.replace(cfg, torch_compile=True, keep_checkpoints=1)
    compiled.claim_out_dir(out, log=lambda *_: None)  # the record: the same run
    model = UNIC(Student(cfg.student), {t: m.embed_dim for t, m in teachers.items()},
                 json.loads((run.student_folder / "config.json").read_text())["teacher_grids"])
    opt = configure_optimizer(model, cfg.peak_lr, cfg.weight_decay, cfg.betas)
    ckpts = wb.core.checkpoint.Checkpoints(out / "checkpoints")
    state = resume(ckpts, model, opt, {"teacher_drop": torch.Generator()}, compiled, data.fingerprint, False,
                   log=lambda *_: None)
    assert state is not None and state.epoch == 1  # resumed: the same run for the checkpoint too
    other = dataclasses.replace(cfg, base_lr=1e-3)
    with pytest.raises(OutDirError, match=r"base_lr: folder 0.008, this run 0.001"):
        other.claim_out_dir(out, log=lambda *_: None)
    with pytest.raises(OutDirError, match=r"another run \(base_lr: checkpoint 0.008, this run 0.001\)"):
        resume(ckpts, model, opt, {"teacher_drop": torch.Generator()}, other, data.fingerprint, False)
    prepare_out_dir(tmp_path / "fresh", compiled.run_key(), kind=cfg.kind, log=lambda *_: None)
    assert json.loads((tmp_path / "fresh" / "run.json").read_text())["config"] == json.loads(
        (out / "run.json").read_text())["config"]
