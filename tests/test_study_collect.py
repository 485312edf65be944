"""A sweep read back from hand-made folders: collect's table, progress's states, summarize's intervals and paired
comparisons (checked against values computed here by hand, with the t quantiles written out), and the figure."""
from __future__ import annotations

import json
import math
import os
import socket
import subprocess

import numpy as np
import pytest

from workbench.core.errors import DataError, MissingFile, ParameterError
from workbench.study import collect, interval_figure, progress, summarize

GRID = {"ladder": ["last", "all"], "teacher_drop_prob": ["0", "0.5"]}
SEEDS = [0, 1, 2]
T975 = {1: 12.706204736174707, 2: 4.302652729911275}  # t_{0.975, df}
T95_2 = 2.919985580355516  # t_{0.95, 2}

# probe.shape.student of each (ladder, teacher_drop_prob) over seeds 0, 1, 2
STUDENT = {("last", "0"): [96.2, 95.1, 96.9], ("last", "0.5"): [97.0, 96.4, 97.8],
           ("all", "0"): [95.0, 94.2, 95.3], ("all", "0.5"): [96.1, 95.9, 96.6]}


def point_name(ladder, drop, seed):
    return f"ladder={ladder},teacher_drop_prob={drop},seed={seed}"


def summary_of(ladder, drop, seed):
    student = STUDENT[(ladder, drop)][seed]
    return {"runtime_s": 100.0 + seed, "seed": 999, "probe": {"shape": {"student": student, "world_shape": 95.8},
                                                               "classes": ["a", "b"]},
            "gain_over_best_teacher": {"shape": student - 96.0, "colour": -0.35}, "resumed": False,
            "student": "vit_tiny", "config": {"ladder": ladder, "teacher_drop_prob": float(drop), "epochs": 2},
            "teachers": ["dino", "clip"]}


def write_json(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def make_sweep(out, done=None, summaries=summary_of):
    """A 2 x 2 grid over 3 seeds; ``done``: the points with a status "done" and a summary (default all)."""
    points = [{"name": point_name(ladder, drop, seed), "settings": {"ladder": ladder, "teacher_drop_prob": drop},
               "seed": seed} for ladder in GRID["ladder"] for drop in GRID["teacher_drop_prob"] for seed in SEEDS]
    write_json(out / "sweep.json", {"target": "distill", "base": {"epochs": 2}, "grid": GRID, "seeds": SEEDS,
                                    "points": points, "launcher": "local"})
    for p in points:
        key = (p["settings"]["ladder"], p["settings"]["teacher_drop_prob"], p["seed"])
        if done is None or key in done:
            write_status(out, p["name"], "done", exit_code=0)
            write_json(out / p["name"] / "summary.json", summaries(*key))
    return points


def write_status(out, name, state, host=None, pid=1234, exit_code=None):
    write_json(out / "status" / f"{name}.json",
               {"state": state, "exit_code": exit_code, "host": host or socket.gethostname(), "pid": pid,
                "started": 1.0, "ended": None if state == "running" else 2.0, "attempt": 1})


def dead_pid():
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


# ----------------------------------------------------------------------------- collect

def test_collect_one_row_per_point_with_settings_seed_state_and_flat_summary(tmp_path):
    points = make_sweep(tmp_path, done={("last", "0", 0), ("all", "0.5", 2)})
    runs = collect(tmp_path)
    assert list(runs["point"]) == [p["name"] for p in points]
    assert list(runs.columns[:5]) == ["point", "ladder", "teacher_drop_prob", "seed", "state"]
    assert set(runs.columns[5:]) == {"runtime_s", "probe.shape.student", "probe.shape.world_shape",
                                     "gain_over_best_teacher.shape", "gain_over_best_teacher.colour", "resumed",
                                     "student"}  # no config.*, no lists, the sweep's seed kept
    assert list(runs["ladder"]) == ["last"] * 6 + ["all"] * 6
    assert list(runs["teacher_drop_prob"]) == [0, 0, 0, 0.5, 0.5, 0.5] * 2
    assert isinstance(runs["teacher_drop_prob"].iloc[3], float) and runs["teacher_drop_prob"].iloc[0] == 0
    assert list(runs["seed"]) == SEEDS * 4
    first = runs.iloc[0]
    assert first["state"] == "done" and first["probe.shape.student"] == 96.2 and first["student"] == "vit_tiny"
    assert first["gain_over_best_teacher.shape"] == pytest.approx(0.2) and first["resumed"] == False  # noqa: E712
    assert runs.iloc[11]["probe.shape.student"] == 96.6
    unfinished = runs[runs["state"] != "done"]
    assert len(unfinished) == 10 and set(unfinished["state"]) == {"pending"}
    assert unfinished["probe.shape.student"].isna().all() and unfinished["runtime_s"].isna().all()
    assert runs.attrs["settings"] == ["ladder", "teacher_drop_prob"]
    assert runs.attrs["grid"] == {"ladder": ["last", "all"], "teacher_drop_prob": [0, 0.5]}


def test_collect_converts_what_parses_as_a_number(tmp_path):
    write_json(tmp_path / "sweep.json", {"target": "notebooks/03_distill.ipynb", "grid": {"x": ["3", "1e-3", "1,3"]},
                                         "seeds": [0], "points": [{"name": f"x{i}", "settings": {"x": v}, "seed": 0}
                                                                  for i, v in enumerate(["3", "1e-3", "1,3"])]})
    runs = collect(tmp_path)
    assert list(runs["x"]) == [3, 0.001, "1,3"] and list(runs["state"]) == ["pending"] * 3
    assert list(runs.columns) == ["point", "x", "seed", "state"]


def test_collect_of_a_folder_that_is_not_a_sweep(tmp_path):
    with pytest.raises(MissingFile, match=r"not a sweep folder.*python -m workbench sweep"):
        collect(tmp_path)
    with pytest.raises(MissingFile, match="does not exist"):
        progress(tmp_path / "nowhere")
    (tmp_path / "sweep.json").write_text('{"points": [')
    with pytest.raises(DataError, match="unreadable"):
        collect(tmp_path)


# ----------------------------------------------------------------------------- progress

def test_progress_states_dead_jobs_and_done_without_summary(tmp_path):
    make_sweep(tmp_path, done={("last", "0", 0), ("last", "0", 1), ("last", "0", 2), ("last", "0.5", 0)})
    write_status(tmp_path, point_name("last", "0.5", 1), "running", pid=os.getpid())  # alive: running
    write_status(tmp_path, point_name("last", "0.5", 2), "running", pid=dead_pid())  # gone from here: failed
    write_status(tmp_path, point_name("all", "0", 0), "running", host="elsewhere", pid=dead_pid())  # cannot tell
    write_status(tmp_path, point_name("all", "0", 1), "done", exit_code=0)  # no summary.json: failed
    write_status(tmp_path, point_name("all", "0", 2), "failed", exit_code=1)
    write_status(tmp_path, point_name("all", "0.5", 0), "preempted")
    state = progress(tmp_path)
    assert {s: state[s] for s in ("done", "running", "failed", "preempted", "pending")} == \
        {"done": 4, "running": 2, "failed": 3, "preempted": 1, "pending": 2}
    assert state["total"] == 12
    assert state["points"]["failed"] == [point_name("last", "0.5", 2), point_name("all", "0", 1),
                                         point_name("all", "0", 2)]
    assert state["points"]["pending"] == [point_name("all", "0.5", 1), point_name("all", "0.5", 2)]
    assert state["points"]["running"] == [point_name("last", "0.5", 1), point_name("all", "0", 0)]
    assert "gone" in state["why"][point_name("last", "0.5", 2)]
    assert "summary.json" in state["why"][point_name("all", "0", 1)]
    assert state["why"][point_name("all", "0", 2)] == "exit code 1"
    assert state["describe"] == ("12 points: 4 done, 2 running, 3 failed (ladder=last,teacher_drop_prob=0.5 seed 2; "
                                 "ladder=all,teacher_drop_prob=0 seed 1; ladder=all,teacher_drop_prob=0 seed 2), "
                                 "1 preempted, 2 pending")
    runs = collect(tmp_path)
    assert list(runs["state"]) == [s for p in runs["point"] for s in STATES_BY_NAME(state, p)]


def STATES_BY_NAME(state, name):  # noqa: N802  (reads as the table it builds)
    return [s for s, names in state["points"].items() if name in names]


def test_progress_lists_the_first_failures_and_counts_the_rest(tmp_path):
    make_sweep(tmp_path, done=set())
    for seed in SEEDS:
        for drop in GRID["teacher_drop_prob"]:
            write_status(tmp_path, point_name("all", drop, seed), "failed", exit_code=2)
    assert progress(tmp_path)["describe"] == (
        "12 points: 6 failed (ladder=all,teacher_drop_prob=0 seed 0; ladder=all,teacher_drop_prob=0 seed 1; "
        "ladder=all,teacher_drop_prob=0 seed 2; 3 more), 6 pending")


# ----------------------------------------------------------------------------- summarize

def by_hand(values, t):
    values = np.asarray(values, dtype=float)
    mean, std = values.mean(), values.std(ddof=1)
    half = t * std / math.sqrt(len(values))
    return mean, std, mean - half, mean + half


def p_two_sided_df2(diffs):
    """Paired t-test with 3 pairs: the t distribution of 2 degrees of freedom has F(t) = 1/2 + t / (2 sqrt(2 + t²))."""
    diffs = np.asarray(diffs, dtype=float)
    t = diffs.mean() / (diffs.std(ddof=1) / math.sqrt(len(diffs)))
    return 1 - abs(t) / math.sqrt(2 + t * t)


def row_of(table, ladder, drop, metric):
    rows = table[(table["ladder"] == ladder) & (table["teacher_drop_prob"] == drop) & (table["metric"] == metric)]
    assert len(rows) == 1
    return rows.iloc[0]


def test_summarize_means_stds_and_t_intervals_over_seeds(tmp_path):
    make_sweep(tmp_path)
    runs = collect(tmp_path)
    table = summarize(runs)
    assert list(table.columns) == ["ladder", "teacher_drop_prob", "metric", "n", "mean", "std", "ci_low", "ci_high"]
    assert set(table["metric"]) == {"runtime_s", "probe.shape.student", "probe.shape.world_shape",
                                    "gain_over_best_teacher.shape", "gain_over_best_teacher.colour"}
    assert list(dict.fromkeys(zip(table["ladder"], table["teacher_drop_prob"]))) == [
        ("last", 0), ("last", 0.5), ("all", 0), ("all", 0.5)]  # the sweep's order
    for (ladder, drop), values in STUDENT.items():
        row = row_of(table, ladder, float(drop), "probe.shape.student")
        mean, std, low, high = by_hand(values, T975[2])
        assert row["n"] == 3
        assert (row["mean"], row["std"], row["ci_low"], row["ci_high"]) == pytest.approx((mean, std, low, high))
    row = row_of(summarize(runs, metrics=["probe.shape.student"], confidence=0.9), "all", 0, "probe.shape.student")
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(by_hand(STUDENT[("all", "0")], T95_2)[2:])
    constant = row_of(table, "all", 0, "gain_over_best_teacher.colour")
    assert (constant["mean"], constant["std"], constant["ci_low"], constant["ci_high"]) == pytest.approx(
        (-0.35, 0, -0.35, -0.35))


def test_summarize_counts_only_finished_runs_and_each_metric_s_own_seeds(tmp_path):
    done = {(ladder, drop, seed) for ladder, drop in STUDENT for seed in SEEDS} - {("last", "0", 2), ("all", "0", 1),
                                                                                   ("all", "0", 2)}

    def summaries(ladder, drop, seed):
        summary = summary_of(ladder, drop, seed)
        if (ladder, drop, seed) == ("last", "0.5", 1):
            del summary["probe"]["shape"]["student"]
        return summary

    make_sweep(tmp_path, done=done, summaries=summaries)
    write_status(tmp_path, point_name("all", "0", 1), "failed", exit_code=1)
    table = summarize(collect(tmp_path), metrics="probe.shape.student")
    two = row_of(table, "last", 0, "probe.shape.student")
    assert two["n"] == 2
    assert (two["mean"], two["std"], two["ci_low"], two["ci_high"]) == pytest.approx(
        by_hand(STUDENT[("last", "0")][:2], T975[1]))
    gap = row_of(table, "last", 0.5, "probe.shape.student")
    assert gap["n"] == 2 and gap["mean"] == pytest.approx(np.mean([97.0, 97.8]))
    one = row_of(table, "all", 0, "probe.shape.student")
    assert one["n"] == 1 and one["mean"] == 95.0
    assert math.isnan(one["std"]) and math.isnan(one["ci_low"]) and math.isnan(one["ci_high"])


def test_summarize_pairs_each_setting_with_the_baseline_by_seed(tmp_path):
    make_sweep(tmp_path)
    runs = collect(tmp_path)
    table = summarize(runs, metrics=["probe.shape.student"], baseline={"teacher_drop_prob": "0.5", "ladder": "all"})
    assert list(table.columns[-5:]) == ["diff_n", "diff_mean", "diff_ci_low", "diff_ci_high", "p_value"]
    base = np.array(STUDENT[("all", "0.5")])
    for (ladder, drop), values in STUDENT.items():
        row = row_of(table, ladder, float(drop), "probe.shape.student")
        if (ladder, drop) == ("all", "0.5"):
            assert row["diff_n"] == 3 and row["diff_mean"] == 0
            assert math.isnan(row["diff_ci_low"]) and math.isnan(row["diff_ci_high"]) and math.isnan(row["p_value"])
            continue
        diffs = np.array(values) - base
        mean, _, low, high = by_hand(diffs, T975[2])
        assert row["diff_n"] == 3
        assert (row["diff_mean"], row["diff_ci_low"], row["diff_ci_high"]) == pytest.approx((mean, low, high))
        assert row["p_value"] == pytest.approx(p_two_sided_df2(diffs))
    assert table.attrs["baseline"] == {"ladder": "all", "teacher_drop_prob": 0.5}

    # a seed the baseline lacks is left out of the pairs; with one pair there is a difference but no test
    runs.loc[(runs["ladder"] == "all") & (runs["teacher_drop_prob"] == 0.5) & (runs["seed"] > 0), "state"] = "failed"
    row = row_of(summarize(runs, metrics=["probe.shape.student"], baseline={"teacher_drop_prob": 0.5, "ladder": "all"}),
                 "last", 0, "probe.shape.student")
    assert row["diff_n"] == 1 and row["diff_mean"] == pytest.approx(96.2 - 96.1)
    assert math.isnan(row["diff_ci_low"]) and math.isnan(row["p_value"])


def test_summarize_refuses_unknown_metrics_and_incomplete_baselines(tmp_path):
    make_sweep(tmp_path)
    runs = collect(tmp_path)
    with pytest.raises(ParameterError, match=r"probe\.shape\.studnet.*did you mean 'probe\.shape\.student'"):
        summarize(runs, metrics=["probe.shape.studnet"])
    with pytest.raises(ParameterError, match="not numeric"):
        summarize(runs, metrics=["student"])
    with pytest.raises(ParameterError, match=r"lacks \['teacher_drop_prob'\].*ladder in \['last', 'all'\]; "
                                             r"teacher_drop_prob in \[0, 0\.5\]"):
        summarize(runs, baseline={"ladder": "all"})
    with pytest.raises(ParameterError, match="did you mean 'ladder'"):
        summarize(runs, baseline={"ladders": "all", "teacher_drop_prob": 0})
    with pytest.raises(ParameterError, match=r"teacher_drop_prob='0.7' is not a value of the grid"):
        summarize(runs, baseline={"ladder": "all", "teacher_drop_prob": "0.7"})
    with pytest.raises(ParameterError, match="confidence"):
        summarize(runs, confidence=95)


# ----------------------------------------------------------------------------- the figure

def inside(box, frame, slack=0.5):
    return (box.x0 >= frame.x0 - slack and box.x1 <= frame.x1 + slack and box.y0 >= frame.y0 - slack
            and box.y1 <= frame.y1 + slack)


@pytest.mark.parametrize("by", [None, "ladder"])
def test_interval_figure_draws_each_setting_with_its_interval_and_the_baseline(tmp_path, by):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    make_sweep(tmp_path)
    table = summarize(collect(tmp_path), baseline={"ladder": "all", "teacher_drop_prob": "0.5"})
    fig = interval_figure(table, "probe.shape.student", by=by)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    (ax,) = fig.axes
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert "ladder=last, teacher_drop_prob=0" in labels and "ladder=all, teacher_drop_prob=0.5 (baseline)" in labels
    frame = ax.get_window_extent(renderer)
    texts = ax.texts
    assert len(texts) == 4
    for text in texts:
        assert inside(text.get_window_extent(renderer), frame), text.get_text()
    base_mean = np.mean(STUDENT[("all", "0.5")])
    half = T975[2] * np.std(STUDENT[("all", "0.5")], ddof=1) / math.sqrt(3)
    # half-widths of 0.9 to 2.3: one decimal gives them two significant digits
    assert f"{base_mean:.1f} ± {half:.1f}  (n=3)  baseline" in [t.get_text() for t in texts]
    dashed = [line for line in ax.lines if line.get_linestyle() == "--"]
    assert len(dashed) == 1 and np.allclose(dashed[0].get_xdata(), base_mean)
    left, right = ax.get_xlim()
    student = table[table["metric"] == "probe.shape.student"]
    assert left < student["ci_low"].min() and student["ci_high"].max() < right
    with pytest.raises(ParameterError, match="did you mean 'probe.shape.student'"):
        interval_figure(table, "probe.shape.studen")


def test_interval_figure_without_baseline_or_second_seed(tmp_path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    make_sweep(tmp_path, done={("last", "0", 0), ("last", "0.5", 0), ("all", "0", 0), ("all", "0", 1)})
    table = summarize(collect(tmp_path), metrics=["runtime_s"])
    fig = interval_figure(table, "runtime_s", title="runtime")
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    (ax,) = fig.axes
    frame = ax.get_window_extent(canvas.get_renderer())
    assert len(ax.texts) == 3 and not [line for line in ax.lines if line.get_linestyle() == "--"]
    for text in ax.texts:
        assert inside(text.get_window_extent(canvas.get_renderer()), frame), text.get_text()
