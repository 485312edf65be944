"""Renamed options and folders keep working: an out_dir, a run file and papermill parameters written with the
older names (``checkpoints``, ``tdrop_p``, ``steps``, ``batch_size``, ``tasks``; a finished student in
``checkpoint/``) still resume and load, each with a FutureWarning that names the new spelling.

The older out_dir is the one this code writes, turned back into the older layout the way the workbench before
the rename wrote it: the same files, the older keys and folder name."""
from __future__ import annotations

import json
import shutil
import warnings

import pytest
import torch
import yaml
from notebook_cells import run_validation_cell

import workbench as wb
from workbench.core.files import load_tensors
from workbench.distillation import DistillConfig, distill, load_run_config, save_run_config
from workbench.distillation.task import TaskDistillConfig
from workbench.distillation.task.checkpoint import StudentCheckpoint

OLDER_NAMES = {"teacher_weights": "checkpoints", "teacher_drop_prob": "tdrop_p"}  # DistillConfig's, now -> before


def older(config: dict, names: dict[str, str]) -> dict:
    return {names.get(k, k): v for k, v in config.items()}


def as_written_before_the_rename(out) -> None:
    """``out`` as the workbench wrote it before: ``checkpoint/`` for the student, the older keys everywhere."""
    (out / "student").rename(out / "checkpoint")
    record = json.loads((out / "run.json").read_text())
    record["config"] = older(record["config"], OLDER_NAMES)
    (out / "run.json").write_text(json.dumps(record))
    for meta in [out / "checkpoint" / "config.json", *(out / "checkpoints").glob("step_*/config.json")]:
        saved = json.loads(meta.read_text())
        saved["config"] = older(saved["config"], OLDER_NAMES)
        meta.write_text(json.dumps(saved))
    doc = yaml.safe_load((out / "run.yaml").read_text())
    (out / "run.yaml").write_text(yaml.safe_dump(older(doc, OLDER_NAMES), sort_keys=False))


@pytest.fixture(scope="module")
def older_run(tmp_path_factory):
    """A finished 03 run (tiny, random teachers), turned into the older layout; and its student's weights."""
    out = tmp_path_factory.mktemp("older") / "run"
    cfg = DistillConfig(student="wb_vit_tiny_patch8_32", epochs=1, batch_size=16, n_train=32, n_test=8,
                        teacher_drop_prob=0.25)
    data = wb.load_data("world", n_train=32, n_test=8)
    torch.manual_seed(0)
    teachers = wb.build_teachers(cfg.teachers, pretrained=False)
    cfg.claim_out_dir(out, log=lambda *_: None)
    distill(cfg, data, teachers, out_dir=out, log=lambda *_: None)
    weights = load_tensors(out / "student" / "student.safetensors")
    as_written_before_the_rename(out)
    return out, cfg, data, teachers, weights


def test_a_run_file_with_the_older_names_loads_with_warnings(older_run):
    out, cfg, *_ = older_run
    with pytest.warns(FutureWarning) as caught:
        loaded, out_dir, _ = load_run_config(out / "run.yaml")
    assert loaded == cfg and out_dir == str(out)
    said = " ".join(str(w.message) for w in caught)
    assert "'checkpoints' is now called 'teacher_weights'" in said
    assert "'tdrop_p' is now called 'teacher_drop_prob'" in said


def test_an_older_out_dir_resumes_and_its_student_loads_with_warnings(older_run, tmp_path):
    out, cfg, data, teachers, weights = older_run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    with pytest.warns(FutureWarning, match="recorded in this run's folder is now called 'teacher_drop_prob'"):
        cfg.claim_out_dir(copy, log=lambda *_: None)  # the same run: continued, not refused
    with pytest.warns(FutureWarning, match="checkpoint/, the older name of student/"):
        run = distill(cfg, data, teachers, out_dir=copy, log=lambda *_: None)
    assert run.resumed_from is not None and run.student_folder == copy / "checkpoint"
    assert not (copy / "student").exists()  # the older folder is read where it is, never copied or moved
    with pytest.warns(FutureWarning, match="older name of student/"):
        student = wb.load_student(copy)
    assert all(torch.equal(student.state_dict()[k], v) for k, v in weights.items())
    with pytest.warns(FutureWarning, match="older name of student/"):
        assert wb.transfer.parse_models([f"old={copy}"])[0][2] == str(copy / "checkpoint")


def test_the_run_file_written_now_uses_the_new_names(older_run, tmp_path):
    _, cfg, *_ = older_run
    doc = yaml.safe_load(save_run_config(tmp_path / "run.yaml", cfg).read_text())
    assert "teacher_weights" in doc and "teacher_drop_prob" in doc and not {"checkpoints", "tdrop_p"} & set(doc)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_run_config(tmp_path / "run.yaml")[0] == cfg


def test_papermill_parameters_with_an_older_name_are_read_with_a_warning(tmp_path):
    with pytest.warns(FutureWarning, match="'tdrop_p' is now called 'teacher_drop_prob'"):
        ns = run_validation_cell("03_distill.ipynb", {"out_dir": str(tmp_path / "run"), "tdrop_p": 0.25}, tmp_path)
    assert ns["cfg"].teacher_drop_prob == 0.25
    with pytest.warns(FutureWarning, match="'steps' is now called 'student_steps'"):
        ns = run_validation_cell("05_task_distill.ipynb", {"out_dir": str(tmp_path / "task"), "steps": 7}, tmp_path)
    assert ns["cfg"].student_steps == 7


def test_a_task_student_saved_before_the_rename_resumes(tmp_path):
    """05's per-student folders record the run key: one with ``steps`` and without the options added since
    (``teacher_weights``, ``preprocessing``, at their defaults) belongs to the same run."""
    cfg = TaskDistillConfig(student_steps=7)
    now = {"run": cfg.run_key(), "data": "abc"}
    before = {"run": older({k: v for k, v in cfg.run_key().items() if k not in ("teacher_weights", "preprocessing")},
                           {"student_steps": "steps"}), "data": "abc"}
    StudentCheckpoint.of(tmp_path, 0, "labels", before).save(None, None, 3, [{"step": 0}])
    with pytest.warns(FutureWarning, match="'steps'"):
        job = StudentCheckpoint.of(tmp_path, 0, "labels", now).job()
    assert job["step"] == 3
    other = {"run": {**cfg.run_key(), "student_steps": 8}, "data": "abc"}
    with pytest.raises(wb.core.runs.OutDirError, match="another run"):
        StudentCheckpoint.of(tmp_path, 0, "labels", other).job()
