import json

import numpy as np
import pytest
import torch
from PIL import Image

import workbench as wb
from workbench.core.files import load_tensors
from workbench.distillation import DistillConfig, distill
from workbench.distillation.task import (
    PROBE_WEIGHT_DECAYS,
    STUDENTS,
    TaskDistillConfig,
    TaskLivePlot,
    augment,
    extra_images,
    labelled_subset,
    make_student,
    probe_teacher,
    results_figure,
    student_colour,
    task_distill,
    task_table,
)
from workbench.models import load_student
from workbench.probing import fit_linear_probe


@pytest.fixture(scope="module")
def tiny_world():
    return wb.load_data("world", n_train=120, n_test=40)


def random_teachers():
    return {n: wb.create_teacher(n, pretrained=False) for n in ("world_colour", "world_shape")}


def tiny_config(**overrides):
    params = dict(student="wb_vit_tiny_patch8_32", labels_per_class=3, student_steps=3, batch_size=16, finetune_steps=2,
                  repeats=2, students=list(STUDENTS), workers=1)
    return TaskDistillConfig(**{**params, **overrides})


def test_every_student_and_seed_is_reported_and_saved(tiny_world, tmp_path):
    cfg = tiny_config()
    records = []
    run = task_distill(cfg, tiny_world, random_teachers(), out_dir=tmp_path, callback=records.append,
                       log=lambda *_: None)
    summary = run.summary()
    assert list(summary["students"]) == list(STUDENTS)
    for stats in summary["students"].values():
        assert len(stats["per_seed"]) == 2 and 0 <= stats["mean"] <= 100 and stats["std"] >= 0
    assert {"probed world_colour", "probed world_shape", "fine-tuned"} == set(summary["teachers"])
    assert set(summary["gain_over_labels"]) == {"finetuned", "probed", "probed_mix"}
    assert summary["seeds"] == [0, 1] and len(summary["teacher_per_seed"]) == 2
    # live records: every student and seed, test top-1 at the last step
    assert {(r["student"], r["seed"]) for r in records} == {(s, k) for s in STUDENTS for k in (0, 1)}
    assert all("top1" in r for r in records if r["step"] == cfg.student_steps - 1)
    assert len((tmp_path / "history.jsonl").read_text().splitlines()) == len(records)
    # the students of the first seed are saved; load_student reads the encoder back
    saved = tmp_path / "students" / "probed"
    assert json.loads((saved / "config.json").read_text())["variant"] == "probed"
    x = torch.rand(3, 3, 32, 32)
    assert torch.allclose(load_student(saved).embed(x), run.models["probed"].student.embed(x), atol=1e-6)
    head = load_tensors(saved / "head.safetensors")
    assert head["weight"].shape == (6, run.models["probed"].student.embed_dim)
    assert "| KD from the probed teacher | " in task_table(summary)
    results_figure(summary)


def test_students_of_a_seed_share_batches_and_initialisation(tiny_world):
    """Same seed, same labelled batches, same start: with a = 0 the distilled student is the label-only one."""
    cfg = tiny_config(students=["labels", "probed"], kd_weight=0.0, repeats=1, extra="none")
    run = task_distill(cfg, tiny_world, {"world_shape": wb.create_teacher("world_shape", pretrained=False)},
                       log=lambda *_: None)
    a, b = run.models["labels"], run.models["probed"]
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.slow
def test_students_trained_in_worker_processes_are_those_trained_here(tiny_world, tmp_path, monkeypatch):
    """Two processes at once (single-threaded each) or one after the other here: the same students, records and
    files."""
    import workbench.core.parallel

    monkeypatch.setattr(workbench.core.parallel, "cpu_cores", lambda: 2)  # two workers: one thread each, on any machine
    runs, threads, teachers = {}, torch.get_num_threads(), random_teachers()
    for workers in (1, 2):
        records = []
        torch.set_num_threads(1)  # as each of the two workers
        try:
            runs[workers] = task_distill(tiny_config(workers=workers), tiny_world, teachers,
                                         out_dir=tmp_path / str(workers), callback=records.append, log=lambda *_: None)
        finally:
            torch.set_num_threads(threads)
        runs[workers].records = sorted((r["student"], r["seed"], r["step"], round(r["loss"], 4)) for r in records)
    assert runs[1].students == runs[2].students and runs[1].teachers == runs[2].teachers
    assert runs[1].records == runs[2].records
    for name in STUDENTS:
        for p, q in zip(runs[1].models[name].state_dict().values(), runs[2].models[name].state_dict().values()):
            assert torch.allclose(p, q, atol=1e-5)
    assert sorted(p.name for p in (tmp_path / "2" / "students").iterdir()) == sorted(STUDENTS)


@pytest.mark.slow
def test_a_student_failing_in_a_worker_process_fails_the_run_clearly(tiny_world, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image .* under the extra folder"):
        task_distill(tiny_config(workers=2, extra=str(tmp_path / "empty"), repeats=1), tiny_world, random_teachers(),
                     log=lambda *_: None)


def test_a_student_has_one_colour_in_both_plots_whatever_the_order_its_records_arrive_in():
    from matplotlib.colors import to_hex

    live = TaskLivePlot()
    for step in (10, 0):  # students trained at once: interleaved records, not even in step order
        for name in ("probed", "labels"):
            live.records.append({"student": name, "seed": 0, "step": step, "loss": 1.0, "top1": 20.0})
    lines = {line.get_label(): line for line in live.figure().axes[1].get_lines()}
    assert {name: to_hex(line.get_color()) for name, line in lines.items()} == \
        {name: to_hex(student_colour(name)) for name in ("labels", "probed")}
    assert list(lines["probed"].get_xdata()) == [0, 10]
    stats = {"mean": 50.0, "std": 1.0, "min": 49.0, "max": 51.0, "per_seed": [49.0, 51.0]}
    bars = results_figure({"task": "shape", "seeds": [0, 1], "students": {"probed": stats, "labels": stats},
                           "teachers": {"fine-tuned": stats}}).axes[0].patches
    assert [to_hex(b.get_facecolor()[:3]) for b in bars] == [to_hex(student_colour("probed")),
                                                            to_hex(student_colour("labels")), to_hex("0.7")]


def test_student_starts_from_a_03_checkpoint(tiny_world, tmp_path):
    distill(DistillConfig(epochs=1, batch_size=32, student="wb_vit_tiny_patch8_32"), tiny_world, random_teachers(),
            out_dir=tmp_path, log=lambda *_: None)
    ckpt = tmp_path / "student"
    cfg = TaskDistillConfig.from_params(student="wb_vit_tiny_patch8_32", student_init=str(ckpt))
    student = make_student(cfg, n_classes=6)
    reference = load_student(ckpt)
    assert all(torch.equal(p, q) for p, q in zip(student.student.state_dict().values(),
                                                 reference.state_dict().values()))
    with pytest.raises(ValueError, match="holds a 'wb_vit_tiny_patch8_32' student but student="):
        make_student(TaskDistillConfig(student="wb_vitc_tiny_patch8_32", student_init=str(ckpt)), 6)


def test_labelled_subset_and_unlabelled_images(tiny_world):
    labelled = labelled_subset(tiny_world, "shape", 4, seed=0)
    assert torch.equal(torch.bincount(labelled.labels, minlength=6), torch.full((6,), 4))
    assert torch.equal(labelled.images[0], tiny_world.train[int(labelled.indices[0])][0])
    stream = extra_images("unlabelled", tiny_world, labelled, 16, seed=0)
    batch = next(stream)
    assert batch.shape == (16, 3, 32, 32)
    flat_labelled = labelled.images.flatten(1)
    assert not any((flat_labelled == img.flatten()).all(1).any() for img in batch)  # no labelled image among them


def test_world_images_are_fresh_every_batch(tiny_world):
    labelled = labelled_subset(tiny_world, "shape", 2, seed=0)
    stream = extra_images("world", tiny_world, labelled, 8, seed=0)
    first, second = next(stream), next(stream)
    assert first.shape == (8, 3, 32, 32) and not torch.equal(first, second)
    assert torch.equal(first, next(extra_images("world", tiny_world, labelled, 8, seed=0)))  # reproducible
    assert extra_images("none", tiny_world, labelled, 8, seed=0) is None


def test_extra_images_from_a_folder(tiny_world, tmp_path):
    for i, cls in enumerate(["n01", "n02"]):  # the layout of 01's synthetic clone, at another resolution
        (tmp_path / cls).mkdir()
        for j in range(3):
            Image.fromarray(np.full((64, 48, 3), 40 * (i + j), dtype=np.uint8)).save(tmp_path / cls / f"{j}.png")
    (tmp_path / "manifest.jsonl").write_text("{}\n")
    labelled = labelled_subset(tiny_world, "shape", 2, seed=0)
    batch = next(extra_images(str(tmp_path), tiny_world, labelled, 4, seed=0))
    assert batch.shape == (4, 3, 32, 32)
    with pytest.raises(ValueError, match="no image"):
        extra_images(str(tmp_path / "n01" / "missing"), tiny_world, labelled, 4, seed=0)


def test_world_extra_images_need_world_data(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for j in range(3):
            Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / cls / f"{j}.png")
    folder = wb.load_data(str(tmp_path), image_size=8)
    labelled = labelled_subset(folder, "classes", 1, seed=0)
    with pytest.raises(ValueError, match="extra='world' renders offline-world images"):
        extra_images("world", folder, labelled, 4, seed=0)


def test_probed_teacher_is_the_linear_probe_on_frozen_features(tiny_world):
    teacher = wb.create_teacher("world_colour", pretrained=False)
    labelled = labelled_subset(tiny_world, "colour", 5, seed=0)
    probed, info = probe_teacher(teacher, labelled, 6, "cpu", seed=0)
    with torch.no_grad():
        feats = teacher(labelled.images).cls
        reference, _ = fit_linear_probe(feats, labelled.labels, 6, seed=0, select="log_loss",
                                        weight_decays=PROBE_WEIGHT_DECAYS)
        assert torch.allclose(probed(labelled.images), reference(feats), atol=1e-5)
    assert not any(p.requires_grad for p in probed.parameters())


def test_augment_flips_and_shifts_within_the_image():
    gen = torch.Generator().manual_seed(0)
    flat = torch.full((4, 3, 32, 32), 0.3)
    assert torch.allclose(augment(flat, gen), flat)
    images = torch.rand(64, 3, 32, 32)
    out = augment(images, gen)
    assert out.shape == images.shape and not torch.equal(out, images)


@pytest.mark.parametrize("params,message", [
    ({"student_steps": "abc"}, "student_steps must be an integer"),
    ({"students": "labels,teacherless"}, r"unknown student\(s\) \[.teacherless.\]"),
    ({"students": "labels,labels"}, "students must be distinct"),
    ({"extra": "/no/such/folder"}, "extra must be one of"),
    ({"kd_weight": 1.5}, "kd_weight must be in"),
    ({"temperature": 0}, "temperature must be > 0"),
    ({"mix": 0, "students": "labels,probed_mix"}, "probed_mix student needs mix > 0"),
    ({"finetune_steps": 0}, "finetuned student needs finetune_steps"),
    ({"student_init": "/no/such/checkpoint"}, "student_init '/no/such/checkpoint' is not 'random'"),
    ({"teachers": "world_shape,nope_teacher"}, "Registered teachers"),
    ({"epochs": 3}, "unknown task-distillation parameter"),
    ({"workers": -1}, "workers must be"),
])
def test_config_rejects_bad_input_clearly(params, message):
    with pytest.raises(ValueError, match=message):
        TaskDistillConfig.from_params(**params)


def test_config_accepts_papermill_forms():
    a = TaskDistillConfig.from_params(students="labels,probed", student_steps="10", kd_weight="0.5", repeats="2",
                                      seed="3")
    b = TaskDistillConfig.from_params(students=["labels", "probed"], student_steps=10, kd_weight=0.5, repeats=2,
                                      seed=3)
    assert a == b and a.seeds == [3, 4]
    assert TaskDistillConfig.from_params(students="labels,probed", mix=0).mix == 0  # no mixing student: no mix needed
    with pytest.raises(ValueError, match="batch_size must be >= 2"):
        TaskDistillConfig.from_params(batch_size=1)


def test_two_labels_per_class_probe_one_teacher_but_cannot_compare_two(tiny_world):
    cfg = tiny_config(labels_per_class=2, students=["probed"], repeats=1)
    run = task_distill(cfg, tiny_world, {"world_shape": wb.create_teacher("world_shape", pretrained=False)},
                       log=lambda *_: None)
    assert run.chosen == ["world_shape"]
    with pytest.raises(ValueError, match="labels_per_class=2 leaves no labelled image to compare"):
        task_distill(cfg, tiny_world, random_teachers(), log=lambda *_: None)


def test_unknown_task_is_named(tiny_world):
    with pytest.raises(ValueError, match="task 'texture' is not a task of 'world'; its tasks: shape, colour"):
        task_distill(tiny_config(task="texture"), tiny_world, random_teachers(), log=lambda *_: None)


@pytest.mark.slow
def test_the_task_distillation_notebook_runs_end_to_end(tmp_path):
    """05, end to end in a real kernel (tiny): the table, both figures and summary.json with every student; the
    student of the first seed is saved."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    out_dir = tmp_path / "task"
    params = {"teachers": "world_shape", "student": "wb_vit_tiny_patch8_32", "n_train": 90,
              "n_test": 30, "labels_per_class": 3, "steps": 3, "batch_size": 8, "finetune_steps": 2,
              "repeats": 2, "out_dir": str(out_dir)}
    cmd = [sys.executable, "-m", "papermill", "--no-progress-bar", "--cwd", str(tmp_path),
           str(root / "notebooks" / "05_task_distill.ipynb"), str(tmp_path / "out.ipynb")]
    for k, v in params.items():
        cmd += ["-p", k, str(v)]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["task"] == "shape" and summary["seeds"] == [0, 1]
    assert set(summary["students"]) == {"labels", "finetuned", "probed"}
    assert all(len(s["per_seed"]) == 2 for s in summary["students"].values())
    assert {"probed world_shape", "fine-tuned"} == set(summary["teachers"])
    assert (out_dir / "training.png").stat().st_size > 0 and (out_dir / "task.png").stat().st_size > 0
    assert json.loads((out_dir / "run.json").read_text())["kind"] == "05_task_distill"
    assert load_student(out_dir / "students" / "probed").name == "wb_vit_tiny_patch8_32"
    assert not (out_dir / "checkpoints").exists()  # nothing of UNIC distillation ran
