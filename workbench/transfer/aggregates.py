"""Aggregates of a transfer suite, as in UNIC and t-ReX.

Relative gain of a model over the best teacher of each task (UNIC's radar chart): 100 (top1 - best) /
best, in %, 0 for the best teacher itself. Mean top-1 over tasks. Mean log-odds (t-ReX, after
Kornblith et al. 2019): log(p / (1 - p)) for top-1 p in [0, 1], averaged over tasks; it weighs a gain
from 98% to 99% like one from 50% to 67%, so saturated tasks are not drowned out. p is clipped to
[1e-4, 1 - 1e-4] (a perfect score would be infinite).
"""
from __future__ import annotations

import math

LOG_ODDS_EPS = 1e-4


def best_teacher(table: dict[str, dict[str, float]], teachers: list[str]) -> dict[str, tuple[str, float]]:
    """Per task: (name, top1) of the best teacher."""
    missing = [t for t in teachers if t not in table]
    if not teachers or missing:
        raise ValueError(f"relative gains need teacher results; missing {missing or 'all teachers'}")
    tasks = list(table[teachers[0]])
    return {task: max(((t, table[t][task]) for t in teachers), key=lambda p: p[1]) for task in tasks}


def relative_gains(table: dict[str, dict[str, float]], teachers: list[str]) -> dict[str, dict[str, float]]:
    """{model: {task: 100 (top1 - best teacher) / best teacher}} in % (the UNIC radar chart)."""
    best = best_teacher(table, teachers)
    out = {}
    for model, row in table.items():
        out[model] = {}
        for task, acc in row.items():
            ref = best[task][1]
            out[model][task] = round(100.0 * (acc - ref) / ref, 2) if ref > 0 else float("nan")
    return out


def log_odds(top1: float, eps: float = LOG_ODDS_EPS) -> float:
    """log(p / (1 - p)) of a top-1 given in %, with p clipped to [eps, 1 - eps]."""
    p = min(max(top1 / 100.0, eps), 1.0 - eps)
    return math.log(p / (1.0 - p))


def mean_top1(table: dict[str, dict[str, float]]) -> dict[str, float]:
    return {m: round(sum(row.values()) / len(row), 2) for m, row in table.items()}


def mean_log_odds(table: dict[str, dict[str, float]]) -> dict[str, float]:
    """t-ReX's summary of a transfer suite: the mean over tasks of the log-odds of top-1."""
    return {m: round(sum(log_odds(v) for v in row.values()) / len(row), 4) for m, row in table.items()}


def aggregate_table(table: dict[str, dict[str, float]], teachers: list[str]) -> str:
    """Markdown: each model's relative gain per task (when there are teachers), mean top-1 and mean log-odds;
    the best teacher of each task in the last row."""
    tasks = list(next(iter(table.values())))
    gains = relative_gains(table, teachers) if teachers else {}
    mean1, odds = mean_top1(table), mean_log_odds(table)
    rows = ["| model | " + " | ".join(tasks) + " | mean top-1 | mean log-odds |", "|---|" + "---:|" * (len(tasks) + 2)]
    for m in table:
        cells = [f"{gains[m][t]:+.1f}%" if gains else "" for t in tasks]
        rows.append(f"| {m} | " + " | ".join(cells) + f" | {mean1[m]:.1f} | {odds[m]:.2f} |")
    if teachers:
        best = best_teacher(table, teachers)
        rows.append("| *best teacher* | " + " | ".join(f"{best[t][0]} ({best[t][1]:.1f})" for t in tasks) + " | | |")
    return "\n".join(rows)


DENSE_SCORES = {"segmentation": ("miou", "pixel_acc"), "depth": ("delta1", "rmse", "abs_rel")}


def dense_summary(rows: list[dict]) -> dict[str, dict[str, dict[str, float]]]:
    """{task: {model: scores}} of the dense rows: mIoU and pixel accuracy (%), or delta < 1.25 (%), RMSE (m) and
    absolute relative error."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for r in rows:
        kind = r["protocol"].removeprefix("linear ")
        if kind in DENSE_SCORES:
            out.setdefault(r["task"], {})[r["model"]] = {k: r[k] for k in DENSE_SCORES[kind]}
    return out


def dense_table(summary: dict[str, dict[str, dict[str, float]]], teachers: list[str]) -> str:
    """Markdown: per dense task and model its scores; with teachers, the gap of each other model to the best teacher
    in points of the task's score (mIoU, or delta < 1.25)."""
    rows = ["| task | model | scores | vs best teacher |", "|---|---|---|---:|"]
    for task, by_model in summary.items():
        main = next(iter(next(iter(by_model.values()))))  # miou or delta1: the score the task is ranked by
        best = max((by_model[t][main] for t in teachers if t in by_model), default=None)
        for model, scores in by_model.items():
            text = ", ".join(f"{k} {v:.3f}" if k in ("rmse", "abs_rel") else f"{k} {v:.1f}" for k, v in scores.items())
            gap = "" if best is None or model in teachers else f"{scores[main] - best:+.1f}"
            rows.append(f"| {task} | {model} | {text} | {gap} |")
    return "\n".join(rows)
