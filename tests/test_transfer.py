"""Transfer suite: aggregates on tables with known answers, tasks, world datasets, models, figures."""
import json
import math
import time

import numpy as np
import pytest
import torch
from notebook_cells import run_validation_cell

from workbench import transfer as tr
from workbench.core.files import cache_dir, config_hash
from workbench.data import world
from workbench.distillation import UNIC, DistillConfig, default_key, default_student, save_checkpoint
from workbench.models import Features, Student, Teacher, register_teacher
from workbench.probing import FEW_SHOT_SEEDS, ROW_FIELDS, FeatureSet, ProbeTask, probe_table, probe_task, write_rows
from workbench.transfer import figures as tf

# Two teachers, one student. Best teacher: t1 -> B (60), t2 -> A (80).
TABLE = {"A": {"t1": 50.0, "t2": 80.0}, "B": {"t1": 60.0, "t2": 40.0}, "S": {"t1": 66.0, "t2": 88.0}}


def test_relative_gains_over_the_best_teacher_by_hand():
    assert tr.best_teacher(TABLE, ["A", "B"]) == {"t1": ("B", 60.0), "t2": ("A", 80.0)}
    gains = tr.relative_gains(TABLE, ["A", "B"])
    assert gains["S"] == {"t1": 10.0, "t2": 10.0}  # 100 * 6 / 60, 100 * 8 / 80
    assert gains["A"] == {"t1": -16.67, "t2": 0.0}  # 100 * -10 / 60
    assert gains["B"] == {"t1": 0.0, "t2": -50.0}
    with pytest.raises(ValueError, match="teacher"):
        tr.relative_gains(TABLE, [])


def test_mean_top1_and_mean_log_odds_by_hand():
    assert tr.mean_top1(TABLE) == {"A": 65.0, "B": 50.0, "S": 77.0}
    odds = tr.mean_log_odds(TABLE)
    assert odds["A"] == pytest.approx((0.0 + math.log(4)) / 2, abs=1e-4)  # logit(.5) = 0, logit(.8) = ln 4
    assert odds["B"] == pytest.approx(0.0, abs=1e-4)  # ln 1.5 and ln(2/3) cancel
    assert odds["S"] == pytest.approx((math.log(0.66 / 0.34) + math.log(0.88 / 0.12)) / 2, abs=1e-4)
    assert odds["S"] == pytest.approx(1.3279, abs=1e-4)
    assert tr.log_odds(100.0) == pytest.approx(math.log(9999))  # clipped at 1 - 1e-4, never infinite
    assert tr.log_odds(0.0) == pytest.approx(-math.log(9999))


def test_probe_table_averages_seeds():
    rows = [{"model": "m", "task": "few", "top1": v, "protocol": "linear 5-shot", "seed": s}
            for s, v in enumerate((40.0, 50.0, 60.0))] + [{"model": "m", "task": "all", "top1": 90.0,
                                                           "protocol": "linear", "seed": 0}]
    assert probe_table(rows) == {"m": {"few": 50.0, "all": 90.0}}
    assert probe_table(rows, "linear") == {"m": {"all": 90.0}}


def _clusters(n, classes=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    centres = torch.randn(classes, 8, generator=torch.Generator().manual_seed(7)) * 4
    return centres[y] + torch.randn(n, 8, generator=gen), y


def test_probe_task_rows_and_out_of_task_images():
    xtr, ytr = _clusters(90)
    xte, yte = _clusters(45, seed=1)
    ytr_part, yte_part = ytr.clone(), yte.clone()
    ytr_part[ytr == 2], yte_part[yte == 2] = -1, -1  # images outside the task
    task = tr.TransferTask("two", "x", "l").probe_task
    train, test = FeatureSet(xtr, {"l": ytr_part}), FeatureSet(xte, {"l": yte_part})
    (row,) = probe_task("m", task, train, test)
    assert {k: row[k] for k in ROW_FIELDS} == {"model": "m", "task": "two", "top1": 100.0, "protocol": "linear",
                                               "seed": 0, "metric": "top-1"}
    whole = FeatureSet(xtr, {"l": ytr}), FeatureSet(xte, {"l": yte})
    few = probe_task("m", tr.TransferTask("few", "x", "l", shots=2).probe_task, *whole)
    assert [r["seed"] for r in few] == list(FEW_SHOT_SEEDS) and all(r["protocol"] == "linear 2-shot" for r in few)
    assert all(r["top1"] > 90 for r in few)
    knn = probe_task("m", ProbeTask("two", "l", method="knn"), train, test)
    assert [r["protocol"] for r in knn] == ["10-NN", "20-NN", "100-NN", "200-NN"] and knn[0]["top1"] == 100.0
    with pytest.raises(ValueError, match="no labelled image"):
        probe_task("m", task, FeatureSet(xtr, {"l": torch.full_like(ytr, -1)}), test)


def test_parse_tasks():
    assert [t.name for t in tr.parse_tasks("world")] == [t.name for t in tr.WORLD_TASKS]
    assert [t.name for t in tr.parse_tasks(["shape", "colour_new_bg"])] == ["shape", "colour_new_bg"]
    with pytest.raises(ValueError, match="unknown task"):
        tr.parse_tasks("shape,tigers")
    with pytest.raises(FileNotFoundError, match="not a folder"):
        tr.parse_tasks("myflowers=/no/such/folder")
    named = tr.parse_tasks("flowers=/no/such/folder,cog_l2_8shot", data_root="/data")  # datasets by name
    assert [(t.dataset, t.shots, str(t.named.root)) for t in named] == [("flowers", None, "/no/such/folder"),
                                                                         ("cog_l2", 8, "/data/imagenet21k")]
    with pytest.raises(FileNotFoundError, match="flowers.*nothing to read at /no/such/folder"):
        tr.check_roots(named)
    with pytest.raises(ValueError, match="distinct"):
        tr.parse_tasks("shape,shape")


def test_world_levels_run_the_cog_builder_on_the_novel_shapes():
    levels, shapes = tr.world_levels()
    assert [len(lv) for lv in shapes] == [3] * 5 and sorted(sum(shapes, [])) == sorted(world.NOVEL_SHAPES)
    means = levels.mean_similarity
    assert all(a > b for a, b in zip(means, means[1:]))
    assert set(shapes[0]) <= {"trapezoid", "pentagon", "hexagon", "star"}  # polygons, like square and triangle
    assert set(shapes[-1]) == {"house", "fish", "hourglass"}  # objects: nothing but the root in common


def test_world_datasets_labels():
    _, shapes = tr.world_levels()
    ds = tr.world_dataset("world_novel_shapes", n_train=150, n_test=60, level_shapes=shapes)
    y = ds.train.labels
    assert torch.equal(y["shape_x_colour"], y["shape"] * len(world.COLOURS) + y["colour"])
    for k, members in enumerate(shapes, 1):
        inside = torch.tensor([world.NOVEL_SHAPES[int(s)] in members for s in y["shape"]])
        assert torch.equal(y[f"L{k}"] >= 0, inside)
        names = [members[int(v)] for v in y[f"L{k}"][inside]]
        assert names == [world.NOVEL_SHAPES[int(s)] for s in y["shape"][inside]]
    plain = tr.world_dataset("world_novel_shapes", n_train=150, n_test=60)
    assert plain.fingerprint != ds.fingerprint  # labels are part of the feature-cache key
    heldout = tr.world_dataset("world_new_backgrounds", n_train=40, n_test=20)
    assert set(heldout.tasks) == {"shape", "colour", "shape_x_colour"} and heldout.fingerprint != plain.fingerprint
    # the in-domain dataset is exactly the images 03 distills on
    from workbench.data import load_data

    in_domain = tr.world_dataset("world", 50, 20).train.images
    assert torch.equal(in_domain, load_data("world", 50, 20, image_size=32).train.images)


def test_novel_shapes_are_distinct_from_each_other_and_from_the_seen_ones():
    sub = (np.arange(128) + 0.5) / 64 - 1  # a fine grid over the unit box
    v, u = np.meshgrid(sub, sub, indexing="ij")
    masks = {s: world._shape_mask(s, u * 1.05, v * 1.05) for s in world.SHAPES + world.NOVEL_SHAPES}
    for s in world.NOVEL_SHAPES:
        assert 0.15 < masks[s].mean() < 0.75, s
    names = list(masks)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            iou = (masks[a] & masks[b]).sum() / (masks[a] | masks[b]).sum()
            assert iou < 0.9, (a, b, iou)  # pentagon vs hexagon is the closest pair: 0.88
    with pytest.raises(ValueError, match="unknown shape"):
        world.render(world.WorldConfig(), 4, seed=0, shapes=("circle", "blob"))


# ----------------------------------------------------------------------------- models


class PixelTeacher(Teacher):
    """Mean colour of 8x8 cells: sees colour, not shape."""

    embed_dim = 3

    def encode(self, x):
        cells = torch.nn.functional.avg_pool2d(x, 8)
        return Features(cells.mean((2, 3)), cells.flatten(2).transpose(1, 2), tuple(cells.shape[-2:]))


register_teacher("test_pixels", "test-only teacher: mean colour per cell")(
    lambda pretrained=True, checkpoint=None: PixelTeacher())


def _checkpoint(folder, cfg=None, epoch=None):
    cfg = cfg or DistillConfig()
    torch.manual_seed(0)
    model = UNIC(Student(cfg.student), {"world_colour": 48, "world_shape": 64},
                 {"world_colour": (8, 8), "world_shape": (8, 8)})
    return save_checkpoint(model, cfg, folder, extra={"epoch": epoch or cfg.epochs, "step": 1})


def test_evaluate_teachers_and_a_student_checkpoint(tmp_path):
    _checkpoint(tmp_path / "run" / "student")
    models = tr.load_models(f"test_pixels,{tmp_path / 'run'},mine={tmp_path / 'run' / 'student'}", "cpu")
    assert [(m.name, m.role) for m in models] == [("test_pixels", "teacher"), ("run", "student"), ("mine", "student")]
    tasks = tr.parse_tasks("colour,shape_new_bg_5shot")
    data = tr.load_task_data(tasks, n_train=120, n_test=60)
    rows = tr.evaluate(models, tasks, data, "cpu", log=lambda *a: None)
    assert len(rows) == 3 * (1 + len(FEW_SHOT_SEEDS))
    assert set(ROW_FIELDS) <= set(rows[0])
    table = probe_table(rows)
    assert table["test_pixels"]["colour"] > 60  # the colour teacher sees colour (chance: 16.7)
    assert table["run"] == table["mine"]  # same checkpoint, same numbers
    one_thread = tr.evaluate(models[:1], tasks, data, "cpu", workers=1, log=lambda *a: None)
    assert one_thread == [r for r in rows if r["model"] == "test_pixels"]  # threads do not change results
    write_rows(rows, tmp_path / "probes.csv")
    assert (tmp_path / "probes.csv").read_text().splitlines()[0] == "model,task,top1,protocol,seed,metric"
    pictures = tf.patch_pictures(models[:2], data["world"].test.images[:3].float() / 255, "cpu")
    assert pictures["test_pixels"].shape == (3, 4, 4, 3) and pictures["run"].shape == (3, 4, 4, 3)
    with pytest.raises(FileNotFoundError, match="no distilled student"):
        tr.load_models(str(tmp_path), "cpu")
    _checkpoint(tmp_path / "live" / "checkpoints" / "step_00000300")  # a run still training
    assert tr.parse_models(str(tmp_path / "live"))[0][0] == "live@step_00000300"
    with pytest.raises(ValueError, match="unknown teacher"):
        tr.load_models("no_such_teacher_anywhere", "cpu")
    with pytest.raises(ValueError, match=r"teacher_weights names \[.dino_vitb16.\], which are not among the teachers"):
        tr.load_models("test_pixels", "cpu", teacher_weights={"dino_vitb16": "x.pth"})
    with pytest.raises(ValueError, match="no default_student was given"):
        tr.load_models("student", "cpu")
    assert [m.source for m in tr.load_models("student", "cpu", default_student=lambda: tmp_path / "run")] == [
        str(tmp_path / "run")]


def test_default_student_reuses_03s_finished_default_run_then_the_cache(tmp_path):
    from workbench.core.runs import prepare_out_dir

    run = tmp_path / "runs" / "03_distill"
    default = DistillConfig().run_key()  # what 03 records
    prepare_out_dir(run, default, kind="03_distill", log=lambda *a: None)
    _checkpoint(run / "student")
    assert default_student(search=run) == run / "student"
    # an unfinished run, or one with other settings, is not 03's default student
    _checkpoint(run / "student", epoch=3)
    key = {**default_key(6000, 2000), "world": world.VERSION}
    cached = cache_dir("students") / f"unic-default-{config_hash(key)}"
    _checkpoint(cached / "student")
    assert default_student(search=run) == cached / "student"
    _checkpoint(run / "student")
    other = tmp_path / "other"
    prepare_out_dir(other, {**default, "n_train": 500}, kind="03_distill", log=lambda *a: None)
    _checkpoint(other / "student")
    assert default_student(search=other) == cached / "student"
    (run / "run.json").unlink()  # a folder without its record is not trusted
    assert default_student(search=run) == cached / "student"


# ----------------------------------------------------------------------------- figures


def test_the_static_and_the_interactive_radar_are_one_chart(monkeypatch):
    gains = tr.relative_gains(TABLE, ["A", "B"])
    roles = {"A": "teacher", "B": "teacher", "S": "student"}
    static = tf.radar_figure(gains, roles)
    interactive = tf.radar_plotly(gains, roles)
    ax = static.axes[0]
    layout = interactive.layout
    # the same start (first task at the top) and direction (clockwise)
    assert ax.get_theta_offset() == pytest.approx(np.pi / 2) and ax.get_theta_direction() == -1
    assert layout.polar.angularaxis.rotation == 90 and layout.polar.angularaxis.direction == "clockwise"
    # the same axes, radial range and ticks, legend entries and title
    assert [t.get_text() for t in ax.get_xticklabels()] == list(interactive.data[1].theta[:-1]) == ["t1", "t2"]
    assert ax.get_ylim() == pytest.approx(tuple(layout.polar.radialaxis.range))
    assert [t.get_text() for t in ax.get_yticklabels()] == list(layout.polar.radialaxis.ticktext)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [t.name for t in interactive.data]
    assert ax.get_title() == layout.title.text
    # the same value labels: the student's gains, printed on both
    printed = [a.get_text() for a in ax.texts]
    assert printed == ["+10.0%", "+10.0%"] == list(interactive.data[3].text[:-1])
    assert all(t.text is None or not t.text for t in interactive.data[:3])  # teachers and the ring carry none
    # one output: plotly JSON and an SVG of the static chart, and no PNG, so that JupyterLab's renderer draws the
    # chart at once instead of swapping a picture for it when the mouse enters (and saving whichever was shown)
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj, raw=False: shown.append((obj, raw)))
    tf.show_interactive(interactive, static)
    (bundle, raw), = shown
    assert raw and set(bundle) == {"application/vnd.plotly.v1+json", "image/svg+xml", "text/plain"}
    assert bundle["image/svg+xml"].lstrip().startswith("<?xml") and "<svg" in bundle["image/svg+xml"]
    traces = bundle["application/vnd.plotly.v1+json"]["data"]
    assert [t["name"] for t in traces] == ["best teacher (0%)", "A", "B", "S"]
    assert traces[3]["customdata"][:2] == [10.0, 10.0]  # hover shows the true gains
    assert tf.signed_log(0) == 0 and tf.signed_log(-9) == -1 and tf.signed_log(99) == pytest.approx(2)
    tf.task_bars_figure(TABLE, roles)
    tf.levels_figure(TABLE, roles, [0.8, 0.2], ["a, b", "c, d"], chance=50)


def test_patch_pca_rgb_separates_feature_clusters():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(16, generator=gen) * 5, torch.randn(16, generator=gen) * 5
    tokens = torch.stack([a if (i // 4) < 2 else b for i in range(16)]) + 0.01 * torch.randn(16, 16, generator=gen)
    rgb = tf.patch_pca_rgb(tokens[None], (4, 4))
    assert rgb.shape == (1, 4, 4, 3) and rgb.min() >= 0 and rgb.max() <= 1
    # the first component (red) tells the clusters apart; the other two are stretched noise
    top, bottom = rgb[0, :2, :, 0].flatten(), rgb[0, 2:, :, 0].flatten()
    assert abs(top.mean() - bottom.mean()) > 0.9
    assert np.ptp(top) < 0.1 and np.ptp(bottom) < 0.1
    with pytest.raises(ValueError, match="grid"):
        tf.patch_pca_rgb(tokens[None], (3, 3))


def test_default_student_is_distilled_once_then_reused(monkeypatch):
    import dataclasses
    import importlib

    default_run = importlib.import_module("workbench.distillation.default_run")

    @dataclasses.dataclass
    class TinyConfig(DistillConfig):  # 03's recipe, one short epoch, pixel teachers
        epochs: int = 1
        batch_size: int = 32

    monkeypatch.setattr(default_run, "DistillConfig", TinyConfig)
    monkeypatch.setattr(default_run, "build_teachers", lambda names, *_, **__: {t: PixelTeacher() for t in names})
    logs = []
    first = default_student(n_train=64, n_test=16, search=None, log=logs.append)
    assert (first / "student.safetensors").is_file() and json.loads((first / "config.json").read_text())["epoch"] == 1
    assert any("distilling one" in m for m in logs)
    assert not [p for p in first.parent.parent.iterdir() if ".tmp-" in p.name]  # no leftovers
    assert not (first.parent / "checkpoints").exists()  # only the student is kept, not the training states
    monkeypatch.setattr(default_run, "distill", lambda *a, **k: pytest.fail("must reuse the cached student"))
    assert default_student(n_train=64, n_test=16, search=None) == first


@pytest.mark.parametrize("params, error, message", [
    ({"model": "world_shape"}, ValueError, r"did you mean 'models'"),
    ({"models": "world_shape,dino_vitb16x"}, ValueError, r"unknown teacher\(s\) \['dino_vitb16x'\]"),
    ({"models": "runs/no_such_run"}, FileNotFoundError, r"no distilled student in runs/no_such_run"),
    ({"models": "world_shape,world_shape"}, ValueError, r"model names must be distinct"),
    ({"tasks": "shape,texture"}, ValueError, r"unknown task\(s\) \['texture'\]"),
    ({"tasks": "mycars=/no/such/folder"}, FileNotFoundError, r"task 'mycars': '/no/such/folder' is not a folder"),
    ({"tasks": "cars=/no/such/folder"}, FileNotFoundError, r"cars \(Stanford Cars\): nothing to read at /no/such"),
    ({"tasks": "world,dtd", "data_root": "/no/root"}, FileNotFoundError, r"(?s)dtd .*/no/root/dtd .*Expected layout"),
    ({"levels": "sometimes"}, ValueError, r"levels must be True or False"),
    ({"teacher_weights": "student=/x.pth"}, ValueError, r"teacher_weights names \['student'\]"),
    ({"n_train": "lots"}, ValueError, r"n_train must be an integer"),
])
def test_04_checks_its_parameters_before_writing_anything(tmp_path, params, error, message):
    with pytest.raises(error, match=message):
        run_validation_cell("04_transfer.ipynb", {**params, "out_dir": str(tmp_path / "out")}, tmp_path)
    assert not (tmp_path / "out").exists()


def test_04_keeps_one_configuration_per_out_dir(tmp_path):
    from workbench.core.runs import OutDirError

    base = {"models": "world_colour,world_shape", "out_dir": str(tmp_path / "out")}
    ns = run_validation_cell("04_transfer.ipynb", base, tmp_path)
    assert ns["out"] == tmp_path / "out" and (tmp_path / "out" / "run.json").is_file()
    run_validation_cell("04_transfer.ipynb", base, tmp_path)  # the same configuration continues
    with pytest.raises(OutDirError, match="another configuration"):
        run_validation_cell("04_transfer.ipynb", {**base, "tasks": "shape,colour,shape_x_colour"}, tmp_path)
    run_validation_cell("04_transfer.ipynb", {**base, "tasks": "shape,colour,shape_x_colour", "overwrite": True},
                        tmp_path)


def test_a_progress_bar_prints_a_few_lines_when_its_output_is_not_a_terminal(capsys):
    from workbench.core.progress import progress

    for _ in progress(range(400), desc="many small steps"):
        time.sleep(0.002)  # 0.8 s or more: a terminal's bar would redraw every 0.1 s
    err = capsys.readouterr().err  # captured: not a terminal, as in a headless log
    assert "many small steps" in err and "400/400" in err
    assert err.count("\r") + err.count("\n") <= 4  # the bar drawn at its start and its end, not once per step
