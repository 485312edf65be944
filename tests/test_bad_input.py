"""Bad input, tried as a new user would: every case ends in one of the workbench's own exceptions, whose message names
the offending value or file, before anything is written: the out_dir, and every file the user put in it, is
byte-identical before and after (an out_dir that did not exist still does not).

Each notebook case runs the notebook's own first cells (parameters, papermill's injected cell, the config cell) in
this process, as a kernel runs them; the command-line cases run ``python -m workbench`` and read its last line.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml
from notebook_cells import ROOT, run_validation_cell
from PIL import Image

from workbench.core.errors import (
    DataError,
    DatasetNotFound,
    MissingFile,
    OutDirBusy,
    OutDirError,
    ParameterError,
    ResourceError,
    WeightsError,
    WorkbenchError,
)
from workbench.core.files import save_json, save_tensors
from workbench.models import create_teacher
from workbench.models.students import STUDENT_CONFIG, STUDENT_WEIGHTS, Student

HUGE = 1_000_000_000  # one zero too many, and then some


# ----------------------------------------------------------------------------- what the user has on disk

@pytest.fixture(scope="module")
def disk(tmp_path_factory) -> dict[str, Path]:
    """The files and folders the cases name: good ones (a teacher's weights, a student, the smallest image folder)
    and bad ones (cut short, of another model, a text file named .pth, folders too small or empty)."""
    root = tmp_path_factory.mktemp("disk")
    paths = {}

    def images(folder: Path, per_class: dict[str, int]) -> Path:
        for c, n in per_class.items():
            (folder / c).mkdir(parents=True)
            for i in range(n):
                colour = (40 * i % 256, 90 if c == "a" else 200, 30)
                Image.new("RGB", (40, 40), colour).save(folder / c / f"{i}.png")
        return folder

    paths["minimum"] = images(root / "minimum", {"a": 2, "b": 2})
    paths["one_class"] = images(root / "one_class", {"a": 3})
    paths["singles"] = images(root / "singles", {"a": 1, "b": 1})
    paths["empty"] = root / "empty"
    paths["empty"].mkdir()
    paths["no_images"] = root / "no_images"
    (paths["no_images"] / "a").mkdir(parents=True)
    (paths["no_images"] / "a" / "readme.txt").write_text("no pictures here")
    paths["a_file"] = root / "photo.png"
    Image.new("RGB", (8, 8)).save(paths["a_file"])
    paths["shape_weights"] = root / "shape.safetensors"
    save_tensors(create_teacher("world_shape", pretrained=False).state_dict(), paths["shape_weights"])
    paths["colour_weights"] = root / "colour.safetensors"  # world_colour's: another model's weights for world_shape
    save_tensors(create_teacher("world_colour", pretrained=False).state_dict(), paths["colour_weights"])
    paths["cut_weights"] = root / "cut.safetensors"
    paths["cut_weights"].write_bytes(paths["shape_weights"].read_bytes()[:3000])
    paths["text_pth"] = root / "notes.pth"
    paths["text_pth"].write_text("these are my notes, not a checkpoint\n")
    paths["student"] = root / "student"
    student = Student("wb_vitc_tiny_patch8_32")
    save_tensors(student.state_dict(), paths["student"] / STUDENT_WEIGHTS)
    save_json({"config": {"student": "wb_vitc_tiny_patch8_32", "image_size": 32}}, paths["student"] / STUDENT_CONFIG)
    paths["cut_student"] = root / "cut_student"
    paths["cut_student"].mkdir()
    (paths["cut_student"] / STUDENT_CONFIG).write_bytes((paths["student"] / STUDENT_CONFIG).read_bytes())
    (paths["cut_student"] / STUDENT_WEIGHTS).write_bytes((paths["student"] / STUDENT_WEIGHTS).read_bytes()[:5000])
    paths["under_a_file"] = paths["a_file"] / "run"
    return paths


def snapshot(folder: Path, locks: bool = True) -> dict[str, bytes] | None:
    """Every file under ``folder`` with its bytes (folders as None), or None where it does not exist; ``locks``
    False leaves out the lock file, which the live run holding it rewrites."""
    if not folder.exists():
        return None
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))
            if locks or not p.match(".workbench*.lock")}


# ----------------------------------------------------------------------------- the notebook cases

D03 = "03_distill.ipynb"
# (id, notebook, parameters (<name> is a path of `disk`), the exception, what its message must name)
CASES = [
    # 01: generation
    ("01-images_per_class", "01_synthetic_imagenet.ipynb", {"images_per_class": -1}, ParameterError, "-1"),
    ("01-guidance", "01_synthetic_imagenet.ipynb", {"guidance_scale": "strong"}, ParameterError, "strong"),
    ("01-classes", "01_synthetic_imagenet.ipynb", {"classes": "dog,cat"}, ParameterError, "dog"),
    ("01-classes-file", "01_synthetic_imagenet.ipynb", {"classes": "/no/such/classes.txt"}, MissingFile,
     "/no/such/classes.txt"),
    ("01-model", "01_synthetic_imagenet.ipynb", {"model": "/no/such/model"}, MissingFile, "/no/such/model"),
    ("01-model-folder", "01_synthetic_imagenet.ipynb", {"model": "<empty>"}, MissingFile, "<empty>"),
    ("01-prompt", "01_synthetic_imagenet.ipynb", {"prompt": "a photo of {colour}"}, ParameterError, "{colour}"),
    ("01-scheduler", "01_synthetic_imagenet.ipynb", {"scheduler": "fastest"}, ParameterError, "fastest"),
    ("01-format", "01_synthetic_imagenet.ipynb", {"image_format": "gif"}, ParameterError, "gif"),
    ("01-resolution", "01_synthetic_imagenet.ipynb", {"resolution": 30}, ParameterError, "30"),
    ("01-steps", "01_synthetic_imagenet.ipynb", {"steps": 0}, ParameterError, "steps"),
    ("01-out_dir-file", "01_synthetic_imagenet.ipynb", {"out_dir": "<a_file>"}, OutDirError, "<a_file>"),
    ("01-out_dir-under-file", "01_synthetic_imagenet.ipynb", {"out_dir": "<under_a_file>"}, OutDirError, "<a_file>"),
    # 02: probing
    ("02-teachers", "02_probe_teachers.ipynb", {"teachers": "dino_vitz16"}, ParameterError, "dino_vitz16"),
    ("02-probe", "02_probe_teachers.ipynb", {"probe": "svm"}, ParameterError, "svm"),
    ("02-feature", "02_probe_teachers.ipynb", {"feature": "pooled"}, ParameterError, "pooled"),
    ("02-shots", "02_probe_teachers.ipynb", {"shots": "1,0"}, ParameterError, "shots"),
    ("02-benchmark", "02_probe_teachers.ipynb", {"benchmarks": "flowers102x"}, ParameterError, "flowers102x"),
    ("02-benchmark-missing", "02_probe_teachers.ipynb", {"benchmarks": "flowers", "data_root": "<empty>"},
     DatasetNotFound, "<empty>"),
    ("02-data-missing", "02_probe_teachers.ipynb", {"data": "/no/such/photos"}, MissingFile, "/no/such/photos"),
    ("02-data-empty", "02_probe_teachers.ipynb", {"data": "<empty>"}, DataError, "<empty>"),
    ("02-data-no-images", "02_probe_teachers.ipynb", {"data": "<no_images>"}, DataError, "<no_images>"),
    ("02-n_train", "02_probe_teachers.ipynb", {"n_train": HUGE}, ResourceError, str(HUGE)),
    ("02-weights-missing", "02_probe_teachers.ipynb", {"teacher_weights": "world_shape=/no/such.pth"},
     ParameterError, "/no/such.pth"),
    ("02-weights-other-model", "02_probe_teachers.ipynb", {"teacher_weights": "world_shape=<colour_weights>"},
     WeightsError, "<colour_weights>"),
    ("02-weights-text", "02_probe_teachers.ipynb", {"teacher_weights": "world_shape=<text_pth>"}, WeightsError,
     "<text_pth>"),
    ("02-weights-unknown-teacher", "02_probe_teachers.ipynb", {"teacher_weights": "dino_vitb16=<shape_weights>"},
     ParameterError, "dino_vitb16"),
    ("02-preprocessing", "02_probe_teachers.ipynb", {"preprocessing": "world_shape=squash"}, ParameterError, "squash"),
    ("02-preprocessing-world", "02_probe_teachers.ipynb", {"preprocessing": "world_shape=dino"}, ParameterError,
     "world_shape"),
    ("02-dense_steps", "02_probe_teachers.ipynb", {"dense_steps": "many"}, ParameterError, "many"),
    ("02-unknown-parameter", "02_probe_teachers.ipynb", {"n_trian": 100}, ParameterError, "n_trian"),
    # 03: UNIC distillation
    ("03-teachers", D03, {"teachers": "world_shape,dinov9"}, ParameterError, "dinov9"),
    ("03-teachers-twice", D03, {"teachers": "world_shape,world_shape"}, ParameterError, "world_shape"),
    ("03-student", D03, {"student": "resnet50"}, ParameterError, "resnet50"),
    ("03-student-unknown", D03, {"student": "vit_gigantic_patch3"}, ParameterError, "vit_gigantic_patch3"),
    ("03-epochs", D03, {"epochs": 0}, ParameterError, "epochs"),
    ("03-batch_size", D03, {"batch_size": "big"}, ParameterError, "big"),
    ("03-batch-over-world", D03, {"n_train": 40, "batch_size": 64}, ParameterError, "batch_size 64"),
    ("03-batch-over-folder", D03, {"data": "<minimum>"}, ParameterError, "batch_size 64"),
    ("03-ladder", D03, {"ladder": "1,99"}, ParameterError, "99"),
    ("03-standardize", D03, {"standardize": "zscore"}, ParameterError, "zscore"),
    ("03-precision", D03, {"precision": "fp8"}, ParameterError, "fp8"),
    ("03-drop-prob", D03, {"teacher_drop_prob": 2}, ParameterError, "teacher_drop_prob"),
    ("03-betas", D03, {"betas": "0.9"}, ParameterError, "betas"),
    ("03-image_size", D03, {"image_size": 33}, ParameterError, "33"),
    ("03-image_size-huge", D03, {"image_size": 4096}, ResourceError, "image_size 4096"),
    ("03-augment", D03, {"augment": "heavy"}, ParameterError, "heavy"),
    ("03-data-missing", D03, {"data": "/no/such/imagenet"}, MissingFile, "/no/such/imagenet"),
    ("03-data-file", D03, {"data": "<a_file>"}, DataError, "<a_file>"),
    ("03-data-empty", D03, {"data": "<empty>"}, DataError, "<empty>"),
    ("03-data-singles", D03, {"data": "<singles>", "batch_size": 2}, DataError, "<singles>"),
    ("03-n_train", D03, {"n_train": HUGE}, ResourceError, str(HUGE)),
    ("03-weights-cut", D03, {"teacher_weights": "world_shape=<cut_weights>"}, WeightsError, "<cut_weights>"),
    ("03-weights-text", D03, {"teacher_weights": "world_shape=<text_pth>"}, WeightsError, "<text_pth>"),
    ("03-weights-other-model", D03, {"teacher_weights": "world_shape=<colour_weights>"}, WeightsError,
     "<colour_weights>"),
    ("03-weights-pairs", D03, {"teacher_weights": "world_shape"}, ParameterError, "world_shape"),
    ("03-student_init-cut", D03, {"student_init": "<cut_student>"}, WeightsError, "<cut_student>"),
    ("03-student_init-text", D03, {"student_init": "<text_pth>"}, WeightsError, "<text_pth>"),
    ("03-student_init-missing", D03, {"student_init": "/no/such/student"}, ParameterError, "/no/such/student"),
    ("03-device", D03, {"device": "tpu"}, ParameterError, "tpu"),
    ("03-unknown-parameter", D03, {"learning_rate": 0.1}, ParameterError, "learning_rate"),
    ("03-overwrite", D03, {"overwrite": "perhaps"}, ParameterError, "perhaps"),
    ("03-out_dir-file", D03, {"out_dir": "<a_file>"}, OutDirError, "<a_file>"),
    ("03-out_dir-under-file", D03, {"out_dir": "<under_a_file>"}, OutDirError, "<a_file>"),
    # 04: transfer
    ("04-models", "04_transfer.ipynb", {"models": "world_shape,not_a_model"}, ParameterError, "not_a_model"),
    ("04-models-twice", "04_transfer.ipynb", {"models": "world_shape,world_shape"}, ParameterError, "world_shape"),
    ("04-student-folder", "04_transfer.ipynb", {"models": "world_shape,<empty>"}, MissingFile, "<empty>"),
    ("04-student-cut", "04_transfer.ipynb", {"models": "world_shape,mine=<cut_student>"}, WeightsError,
     "<cut_student>"),
    ("04-tasks", "04_transfer.ipynb", {"tasks": "world,segmentation"}, ParameterError, "segmentation"),
    ("04-task-folder", "04_transfer.ipynb", {"tasks": "pets=/no/such/pets"}, DatasetNotFound, "/no/such/pets"),
    ("04-task-imagefolder", "04_transfer.ipynb", {"tasks": "mine=/no/such/photos"}, MissingFile, "/no/such/photos"),
    ("04-n_train", "04_transfer.ipynb", {"n_train": HUGE}, ResourceError, str(HUGE)),
    ("04-weights", "04_transfer.ipynb", {"teacher_weights": "world_shape=<text_pth>"}, WeightsError, "<text_pth>"),
    ("04-pca_images", "04_transfer.ipynb", {"pca_images": 0}, ParameterError, "pca_images"),
    # 05: task distillation
    ("05-students", "05_task_distill.ipynb", {"students": "labels,teacher"}, ParameterError, "teacher"),
    ("05-students-twice", "05_task_distill.ipynb", {"students": "labels,labels"}, ParameterError, "labels"),
    ("05-extra", "05_task_distill.ipynb", {"extra": "/no/such/unlabelled"}, ParameterError, "/no/such/unlabelled"),
    ("05-labels", "05_task_distill.ipynb", {"labels_per_class": 0}, ParameterError, "labels_per_class"),
    ("05-kd_weight", "05_task_distill.ipynb", {"kd_weight": 1.5}, ParameterError, "kd_weight"),
    ("05-data", "05_task_distill.ipynb", {"data": "/no/such/photos", "task": "classes"}, MissingFile,
     "/no/such/photos"),
    ("05-n_train", "05_task_distill.ipynb", {"n_train": HUGE}, ResourceError, str(HUGE)),
    ("05-student_init", "05_task_distill.ipynb", {"student_init": "<text_pth>"}, WeightsError, "<text_pth>"),
    ("05-weights", "05_task_distill.ipynb", {"teacher_weights": "world_colour=<shape_weights>"}, WeightsError,
     "<shape_weights>"),
    ("05-mix", "05_task_distill.ipynb", {"students": "probed_mix", "mix": 0}, ParameterError, "mix"),
    # 06: synthetic against real
    ("06-prompts", "06_synthetic_vs_real.ipynb", {"prompts": "name,poetic"}, ParameterError, "poetic"),
    ("06-guidance", "06_synthetic_vs_real.ipynb", {"guidance_scales": "2.0,high"}, ParameterError, "high"),
    ("06-n_test", "06_synthetic_vs_real.ipynb", {"n_test": 10}, ParameterError, "10"),
    ("06-n_test-huge", "06_synthetic_vs_real.ipynb", {"n_test": HUGE}, ResourceError, str(HUGE)),
    ("06-student_init", "06_synthetic_vs_real.ipynb", {"student_init": "<cut_student>"}, WeightsError,
     "<cut_student>"),
    ("06-repeats", "06_synthetic_vs_real.ipynb", {"repeats": 0}, ParameterError, "repeats"),
]


def fill(value, disk: dict[str, Path]):
    """``<name>`` in a case's value: the path of ``disk[name]``."""
    if not isinstance(value, str):
        return value
    return re.sub(r"<(\w+)>", lambda m: str(disk[m.group(1)]), value)


@pytest.mark.parametrize("notebook, params, error, named", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_ends_in_the_workbench_message_and_writes_nothing(notebook, params, error, named, disk, tmp_path):
    params = {"out_dir": str(tmp_path / "run"), **{k: fill(v, disk) for k, v in params.items()}}
    out = Path(params["out_dir"])
    before, disk_before = snapshot(out), snapshot(disk["minimum"].parent)
    with pytest.raises(WorkbenchError) as caught, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a warning before the error (one class...) is not what is tested here
        run_validation_cell(notebook, params, tmp_path)
    assert isinstance(caught.value, error), f"{type(caught.value).__name__}: {caught.value}"
    assert fill(named, disk) in str(caught.value)
    assert snapshot(out) == before and snapshot(disk["minimum"].parent) == disk_before


def test_a_failed_check_leaves_a_run_folder_as_it_was(disk, tmp_path):
    """The corrected command on the same out_dir needs no overwrite: the failed one wrote nothing there, even in a
    folder that holds a finished run of another configuration and the user's own files."""
    out = tmp_path / "run"
    run_validation_cell(D03, {"out_dir": str(out), "n_train": 64, "batch_size": 8}, tmp_path)
    (out / "notes.md").write_text("mine")
    before = snapshot(out)
    for bad in ({"teacher_weights": f"world_shape={disk['text_pth']}"}, {"data": str(disk["empty"])},
                {"n_train": HUGE}):
        with pytest.raises(WorkbenchError):
            run_validation_cell(D03, {"out_dir": str(out), "n_train": 64, "batch_size": 8, **bad}, tmp_path)
        assert snapshot(out) == before
    run_validation_cell(D03, {"out_dir": str(out), "n_train": 64, "batch_size": 8}, tmp_path)  # continues it


def test_another_run_busy_or_of_another_kind_is_refused_as_it_is(tmp_path):
    out = tmp_path / "run"
    run_validation_cell("02_probe_teachers.ipynb", {"out_dir": str(out)}, tmp_path)
    (out / "analysis").mkdir()
    before = snapshot(out, locks=False)
    with pytest.raises(OutDirError, match="holds a '02_probe_teachers' run, not '03_distill'"):
        run_validation_cell(D03, {"out_dir": str(out)}, tmp_path)
    with pytest.raises(OutDirError, match="another configuration.*n_train: folder 6000, this run 100"):
        run_validation_cell("02_probe_teachers.ipynb", {"out_dir": str(out), "n_train": 100}, tmp_path)
    holder = subprocess.Popen(  # another live run, in another process, writing in that out_dir
        [sys.executable, "-c", "import sys, time; from workbench.core.lock import hold_lock\n"
                               "with hold_lock(sys.argv[1], what='02_probe_teachers'):\n"
                               "    print('holding', flush=True); time.sleep(60)", str(out)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(OutDirBusy, match=str(holder.pid)):
            run_validation_cell("02_probe_teachers.ipynb", {"out_dir": str(out)}, tmp_path)
    finally:
        holder.kill()
        holder.wait()
    assert snapshot(out, locks=False) == before
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("years of work")
    with pytest.raises(OutDirError, match="no workbench run wrote|no run.json"):
        run_validation_cell(D03, {"out_dir": str(tmp_path / "mine"), "overwrite": True}, tmp_path)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "years of work"


def test_an_out_dir_this_user_cannot_write_is_refused_before_anything(tmp_path, monkeypatch):
    """As a user without write permission sees it (root may write anywhere, so the permission is what is faked)."""
    (tmp_path / "shared").mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != tmp_path / "shared" and real_access(p, mode))
    with pytest.raises(OutDirError, match=r"cannot be made in .*shared.*permission denied"):
        run_validation_cell(D03, {"out_dir": str(tmp_path / "shared" / "run")}, tmp_path)
    assert list((tmp_path / "shared").iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in a read-only folder")
def test_a_read_only_out_dir_is_refused_before_anything(tmp_path):
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked").chmod(0o555)
    try:
        with pytest.raises(OutDirError, match="permission denied"):
            run_validation_cell(D03, {"out_dir": str(tmp_path / "locked" / "run")}, tmp_path)
    finally:
        (tmp_path / "locked").chmod(0o755)


# ----------------------------------------------------------------------------- warnings: runs that mean little

def test_a_one_class_folder_warns(disk, tmp_path):
    with pytest.warns(UserWarning, match="holds one class.*accuracies say nothing"):
        run_validation_cell(D03, {"data": str(disk["one_class"]), "batch_size": 2, "out_dir": str(tmp_path / "r")},
                            tmp_path)


def test_fewer_test_images_than_classes_warns(tmp_path):
    for c in "abc":
        (tmp_path / "few" / c).mkdir(parents=True)
    for c in "ab":
        for i in range(2):
            Image.new("RGB", (8, 8)).save(tmp_path / "few" / c / f"{i}.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "few" / "c" / "0.png")  # a single image: training only
    with pytest.warns(UserWarning, match="2 test images for 3 classes"):
        run_validation_cell("02_probe_teachers.ipynb", {"data": str(tmp_path / "few"), "out_dir": str(tmp_path / "r")},
                            tmp_path)


def test_more_labels_than_images_warns(tmp_path):
    with pytest.warns(UserWarning, match="labels_per_class 50 is more than the training images of the smallest class"):
        run_validation_cell("05_task_distill.ipynb", {"labels_per_class": 50, "n_train": 120,
                                                      "out_dir": str(tmp_path / "r")}, tmp_path)


# ----------------------------------------------------------------------------- the command line

def workbench_command(*args, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "workbench", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


COMMANDS = [
    ("missing-run-file", ["distill", "--config", "/no/such/run.yaml"], "MissingFile", "/no/such/run.yaml"),
    ("run-file-typo", ["distill", "--config", "{run_file_typo}"], "ParameterError", "did you mean 'epochs'"),
    ("run-file-yaml", ["distill", "--config", "{run_file_broken}"], "ParameterError", "{run_file_broken}"),
    ("log-every", ["distill", "--config", "{run_file_good}", "--log-every", "0"], "ParameterError", "--log-every"),
    ("run-file-weights", ["distill", "--config", "{run_file_weights}"], "WeightsError", "notes.pth"),
    ("generate-classes", ["generate", "--classes", "dog,cat", "--out", "{out}"], "ParameterError", "red_circle"),
    ("generate-count", ["generate", "--images-per-class", "many", "--out", "{out}"], "ParameterError", "many"),
]


@pytest.mark.parametrize("args, error, named", [c[1:] for c in COMMANDS], ids=[c[0] for c in COMMANDS])
def test_the_command_line_ends_in_one_line_of_its_own(args, error, named, disk, tmp_path):
    files = {"run_file_typo": "epoch: 3\n", "run_file_broken": "teachers: [world_shape\n",
             "run_file_good": "n_train: 64\nbatch_size: 8\n",
             "run_file_weights": f"n_train: 64\nbatch_size: 8\nteacher_weights: {{world_shape: {disk['text_pth']}}}\n"}
    names = {**{k: str(v) for k, v in disk.items()}, "out": str(tmp_path / "out")}
    for name, text in files.items():
        (tmp_path / f"{name}.yaml").write_text(text + f"out_dir: {tmp_path / 'out'}\n")
        names[name] = str(tmp_path / f"{name}.yaml")
    proc = workbench_command(*[a.format(**names) for a in args], cwd=tmp_path)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2, proc.stderr
    assert last.startswith(f"{error}: ") and named.format(**names) in last, proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_run_file_runs_its_run_from_any_folder(disk, tmp_path):
    """The run file a notebook writes (relative out_dir and data, as typed) names its out_dir absolutely and the
    folder its relative paths start in: run from elsewhere, it continues that very run, not a new one there."""
    shutil.copytree(disk["minimum"], tmp_path / "photos")
    out = tmp_path / "runs" / "03"
    run_validation_cell(D03, {"out_dir": "runs/03", "data": "photos", "batch_size": 2, "epochs": 1}, tmp_path)
    doc = yaml.safe_load((out / "run.yaml").read_text())
    assert doc["out_dir"] == str(out.resolve()) and doc["paths_relative_to"] == str(tmp_path.resolve())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = workbench_command("distill", "--config", str(out / "run.yaml"), "--random-teachers", cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    assert (out / "student" / STUDENT_WEIGHTS).is_file() and list(elsewhere.iterdir()) == []


# ----------------------------------------------------------------------------- overwrite, and the smallest folder

@pytest.mark.slow
def test_overwrite_replaces_the_runs_files_and_keeps_the_users(tmp_path):
    """A finished run (the command line, random teachers: no training of the offline ones) with the user's notes and
    analysis folder added, rerun with another configuration and --overwrite: the run's own files are new, the
    user's are untouched, and the message names them."""
    out = tmp_path / "run"
    base = "n_train: 64\nn_test: 32\nbatch_size: 16\nstudent: wb_vitc_tiny_patch8_32\n"
    (tmp_path / "a.yaml").write_text(base + f"epochs: 1\nout_dir: {out}\n")
    (tmp_path / "b.yaml").write_text(base + f"epochs: 2\nout_dir: {out}\n")
    first = workbench_command("distill", "--config", str(tmp_path / "a.yaml"), "--random-teachers", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    student = (out / "student" / STUDENT_WEIGHTS).read_bytes()
    (out / "notes.md").write_text("what I saw")
    (out / "analysis").mkdir()
    (out / "analysis" / "plot.png").write_bytes(b"my figure")
    users = {p: snapshot(out)[p] for p in ("notes.md", "analysis", "analysis/plot.png")}
    refused = workbench_command("distill", "--config", str(tmp_path / "b.yaml"), "--random-teachers", cwd=tmp_path)
    assert refused.returncode == 2 and "another configuration (epochs: folder 1, this run 2)" in refused.stderr
    again = workbench_command("distill", "--config", str(tmp_path / "b.yaml"), "--random-teachers", "--overwrite",
                              cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "kept what it did not write: analysis/, notes.md" in again.stdout + again.stderr
    assert {p: snapshot(out)[p] for p in users} == users
    assert (out / "student" / STUDENT_WEIGHTS).read_bytes() != student  # the run's own: replaced
    assert '"epochs": 2' in (out / "run.json").read_text()


@pytest.mark.slow
def test_03_runs_on_the_smallest_folder_it_accepts(disk, tmp_path):
    """The minimum the checks state (2 images a class) runs to its summary through papermill, as a user runs it;
    the teachers are weight files (random ones of the offline teachers' architectures), so nothing is trained first."""
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    weights = f"world_shape={disk['shape_weights']},world_colour={disk['colour_weights']}"
    proc = subprocess.run([sys.executable, "-m", "papermill", "--no-progress-bar", str(ROOT / "notebooks" / D03),
                           str(tmp_path / "out.ipynb"), "-p", "data", str(disk["minimum"]), "-p", "batch_size", "2",
                           "-p", "epochs", "1", "-p", "teacher_weights", weights, "-p", "out_dir", str(out)],
                          env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["probe"]) == {"world_colour", "world_shape", "student"}


PAPERMILL_CASES = [  # one per notebook, through papermill as a user runs it: the process's exit and last line
    ("01_synthetic_imagenet.ipynb", ["-p", "images_per_class", "-1"], "ParameterError", "-1"),
    ("02_probe_teachers.ipynb", ["-p", "data", "/no/such/photos"], "MissingFile", "/no/such/photos"),
    ("03_distill.ipynb", ["-p", "teacher_weights", "world_shape=<text_pth>"], "WeightsError", "<text_pth>"),
    ("04_transfer.ipynb", ["-p", "n_train", str(HUGE)], "ResourceError", str(HUGE)),
    ("05_task_distill.ipynb", ["-p", "students", "labels,teacher"], "ParameterError", "teacher"),
    ("06_synthetic_vs_real.ipynb", ["-p", "student_init", "<cut_student>"], "WeightsError", "<cut_student>"),
]


@pytest.mark.slow
@pytest.mark.parametrize("notebook, args, error, named", PAPERMILL_CASES, ids=[c[0][:2] for c in PAPERMILL_CASES])
def test_papermill_exits_with_the_workbench_message_as_its_last_line(notebook, args, error, named, disk, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "papermill", "--no-progress-bar", str(ROOT / "notebooks" / notebook),
                           str(tmp_path / "out.ipynb"), *[fill(a, disk) for a in args], "-p", "out_dir", str(out)],
                          env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode != 0
    assert last.startswith(f"{error}: ") and fill(named, disk) in last, proc.stderr[-2000:]
    assert not out.exists()
