"""A sweep read back: one row per run, where the sweep stands, and each setting's mean and interval over seeds.

    runs = collect("studies/unic-ablation")       # point, the settings, seed, state, every scalar of summary.json
    progress("studies/unic-ablation")["describe"]  # "6 points: 4 done, 1 running, 1 pending"
    table = summarize(runs, baseline={"teacher_drop_prob": "0.5", "ladder": "all"})

Only files are read: ``sweep.json`` (the grid and its points, written by the launcher), each point's
``<name>/summary.json`` (written by its run as it ends) and ``status/<name>.json`` (the launcher's record of the
job). Nothing here starts, stops or waits for a run, so a sweep can be read while it is still running, from any
machine that sees its folder.
"""
from __future__ import annotations

import json
import math
import os
import socket
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from workbench.core.errors import DataError, MissingFile, ParameterError
from workbench.core.params import did_you_mean

STATES = ("done", "running", "failed", "preempted", "pending")
SWEEP_FILE = "sweep.json"
SUMMARY_FILE = "summary.json"
STATUS_FOLDER = "status"
RESERVED = ("point", "seed", "state")  # collect's own columns, besides the settings


# ----------------------------------------------------------------------------- reading the folder

def _read_json(path: Path, what: str) -> dict:
    """A JSON object the sweep wrote; one that does not parse is named, with what to do about it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path} is unreadable ({type(err).__name__}: {err}); it should hold {what}. Delete it and "
                        "run that point again") from None
    if not isinstance(data, dict):
        raise DataError(f"{path} holds a {type(data).__name__}, not a JSON object; it should hold {what}")
    return data


def read_sweep(out) -> dict:
    """``<out>/sweep.json``, checked to name its points: each with a name, its settings and a seed."""
    out = Path(out)
    path = out / SWEEP_FILE
    if not path.is_file():
        where = "does not exist" if not out.exists() else f"has no {SWEEP_FILE}"
        raise MissingFile(f"{out} {where}: it is not a sweep folder. A sweep folder is made by the launcher: "
                          "python -m workbench sweep <stage> ... (python -m workbench sweep --help says how), or "
                          "workbench.study.sweep(...) in Python; give the out of one")
    sweep = _read_json(path, "the sweep's grid and points")
    points = sweep.get("points")
    if not isinstance(points, list) or not all(
            isinstance(p, dict) and isinstance(p.get("name"), str) and isinstance(p.get("settings", {}), dict)
            and "seed" in p for p in points):
        raise DataError(f"{path} does not list its points as [{{\"name\": ..., \"settings\": {{...}}, \"seed\": ...}}, "
                        "...]: it was not written by the sweep launcher. Make the sweep again with "
                        "python -m workbench sweep ...")
    return sweep


def _alive(pid) -> bool:
    """Whether process ``pid`` of this machine exists; True when it cannot be told (no pid, another user's)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:  # os.kill(0 or -n) would signal a group
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, under another user
        return True
    return True


def point_state(out, name: str) -> tuple[str, str]:
    """(state, why) of one point, from its status file and its summary.

    A status file can claim more than happened: a job killed hard (SIGKILL, out of memory, a machine lost) never
    writes its end, so "running" whose process is gone from this machine is "failed"; and "done" counts only with
    the summary that the run writes as it ends, the file every table is made of.
    """
    out = Path(out)
    path = out / STATUS_FOLDER / f"{name}.json"
    if not path.is_file():
        return "pending", "not started"
    status = _read_json(path, "the status of one job of the sweep")
    state = status.get("state")
    if state not in STATES[:-1]:
        raise DataError(f"{path} has state {state!r}, not one of {list(STATES[:-1])}: it was not written by the "
                        "sweep launcher. Delete it to run that point again")
    has_summary = (out / name / SUMMARY_FILE).is_file()
    if state == "running" and status.get("host") == socket.gethostname() and not _alive(status.get("pid")):
        return "failed", f"process {status.get('pid')} on {status.get('host')} is gone without recording its end"
    if state == "done" and not has_summary:
        return "failed", f"its job ended but wrote no {name}/{SUMMARY_FILE}"
    if state == "failed":
        code = status.get("exit_code")
        return "failed", f"exit code {code}" if code is not None else "failed"
    return state, state


def as_value(text):
    """A grid value as the tables compare it: ``"0.5"`` -> 0.5, ``"3"`` -> 3, ``"last"`` stays ``"last"``."""
    if not isinstance(text, str):
        return text
    for kind in (int, float):
        try:
            return kind(text.strip())
        except ValueError:
            pass
    return text


def flatten(summary: dict, prefix: str = "") -> dict:
    """The scalars (numbers, booleans, strings) of a summary, keys joined with "."; lists and ``config`` left out:
    a list is not one value, and ``config`` repeats the sweep's base and settings, which are columns already."""
    flat = {}
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            if not (prefix == "" and key == "config"):
                flat.update(flatten(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
    return flat


def _settings_names(sweep: dict) -> list[str]:
    names = list(sweep.get("grid") or {})
    for point in sweep["points"]:
        names += [k for k in point.get("settings", {}) if k not in names]
    return names


def _describe_point(point: dict) -> str:
    settings = ",".join(f"{k}={v}" for k, v in point.get("settings", {}).items())
    return f"{settings} seed {point['seed']}" if settings else f"seed {point['seed']}"


# ----------------------------------------------------------------------------- the public functions

def collect(out) -> pd.DataFrame:
    """One row per point of the sweep in ``out``, in the order of its ``sweep.json``.

    Columns: ``point``, one per grid setting (a value that reads as a number is one: "0.5" -> 0.5), ``seed``,
    ``state`` (as ``progress`` tells it), then every scalar of the point's ``summary.json``, flattened
    (``probe.shape.student``), its ``config`` left out. A point with no summary yet has NaN there; a summary key
    named like one of the columns before it is left out (the sweep's value stands). ``attrs`` keeps the sweep's
    ``out``, ``target``, ``settings`` (the setting columns), ``grid`` (their values) and ``seeds``.
    """
    out = Path(out)
    sweep = read_sweep(out)
    names = _settings_names(sweep)
    reserved = set(RESERVED) | set(names)
    rows, columns = [], ["point", *names, "seed", "state"]
    for point in sweep["points"]:
        name = point["name"]
        settings = point.get("settings", {})
        row = {"point": name, **{k: as_value(settings[k]) if k in settings else np.nan for k in names},
               "seed": as_value(point["seed"]), "state": point_state(out, name)[0]}
        summary_path = out / name / SUMMARY_FILE
        if summary_path.is_file():
            flat = flatten(_read_json(summary_path, "the summary its run wrote as it ended"))
            row.update({k: v for k, v in flat.items() if k not in reserved})
            columns += [k for k in flat if k not in reserved and k not in columns]
        rows.append(row)
    runs = pd.DataFrame(rows, columns=columns)
    grid = {k: [as_value(v) for v in values] for k, values in (sweep.get("grid") or {}).items()}
    for k in names:
        grid.setdefault(k, list(dict.fromkeys(runs[k].dropna())))
    runs.attrs.update({"out": str(out), "target": sweep.get("target"), "settings": names, "grid": grid,
                       "seeds": [as_value(s) for s in sweep.get("seeds", [])]})
    return runs


def progress(out, listed: int = 3) -> dict:
    """Where the sweep in ``out`` stands: for each state (done, running, failed, preempted, pending) its count
    and, under ``points``, its point names; ``why`` names the cause of each failure (an exit code, a job gone
    without recording its end, no summary); ``describe`` says it in one line, naming the failed points (the first
    ``listed``) by their settings and seed, which is what one reruns:

        "8 points: 5 done, 1 running, 1 failed (a=1,b=2 seed 0), 1 pending"
    """
    out = Path(out)
    sweep = read_sweep(out)
    points = {state: [] for state in STATES}
    why, failed = {}, []
    for point in sweep["points"]:
        state, reason = point_state(out, point["name"])
        points[state].append(point["name"])
        if state == "failed":
            why[point["name"]] = reason
            failed.append(_describe_point(point))
    parts = []
    for state in STATES:
        if points[state]:
            part = f"{len(points[state])} {state}"
            if state == "failed":
                more = f"; {len(failed) - listed} more" if len(failed) > listed else ""
                part += f" ({'; '.join(failed[:listed])}{more})"
            parts.append(part)
    total = len(sweep["points"])
    describe = f"{total} point{'s' if total != 1 else ''}" + (f": {', '.join(parts)}" if parts else "")
    return {**{state: len(points[state]) for state in STATES}, "total": total, "points": points, "why": why,
            "describe": describe}


def _setting_columns(runs: pd.DataFrame) -> list[str]:
    """The setting columns of a collect frame: its ``attrs``, or the columns between ``point`` and ``seed``."""
    if not all(c in runs.columns for c in RESERVED):
        raise DataError(f"runs has no column(s) {[c for c in RESERVED if c not in runs.columns]}: give the frame "
                        "workbench.study.collect(out) returns (rows may be filtered, its columns kept)")
    names = runs.attrs.get("settings")
    if names is not None and all(n in runs.columns for n in names):
        return list(names)
    columns = list(runs.columns)
    return columns[columns.index("point") + 1:columns.index("seed")]


def _metric_columns(runs: pd.DataFrame, settings: list[str], metrics) -> list[str]:
    first = list(runs.columns).index("state") + 1
    summary_columns = [c for c in runs.columns[first:] if c not in settings]
    numeric = [c for c in summary_columns if pd.api.types.is_numeric_dtype(runs[c])
               and not pd.api.types.is_bool_dtype(runs[c])]
    if metrics is None:
        done = runs[runs["state"] == "done"]
        return [c for c in numeric if done[c].notna().any()]
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    for m in metrics:
        if m not in summary_columns:
            raise ParameterError(f"metric {m!r} is not a column of the runs' summaries{did_you_mean(m, numeric)}; "
                                 f"the numeric ones are: {', '.join(numeric) or 'none (no run is done)'}")
        if m not in numeric and not pd.api.types.is_bool_dtype(runs[m]):
            raise ParameterError(f"metric {m!r} is not numeric (e.g. {runs[m].dropna().iloc[0]!r}); choose among: "
                                 f"{', '.join(numeric)}")
    return metrics


def _grid_text(grid: dict) -> str:
    return "; ".join(f"{k} in {v}" for k, v in grid.items())


def _baseline_key(baseline: dict, runs: pd.DataFrame, settings: list[str]) -> tuple:
    """The baseline's settings as a group key, every grid setting named and each value one of the grid's."""
    grid = dict(runs.attrs.get("grid") or {})
    grid = {k: grid.get(k, list(dict.fromkeys(runs[k].dropna()))) for k in settings}
    if not isinstance(baseline, dict):
        raise ParameterError(f"baseline must be a dict of settings naming one point of the grid, e.g. "
                             f"{ {k: v[0] for k, v in grid.items() if v} }, got {baseline!r}")
    unknown = [k for k in baseline if k not in settings]
    if unknown:
        raise ParameterError(f"baseline names {unknown}, not settings of the grid{did_you_mean(unknown[0], settings)}"
                             f"; the grid: {_grid_text(grid)}")
    missing = [k for k in settings if k not in baseline]
    if missing:
        raise ParameterError(f"baseline must give every setting of the grid to name one point; it lacks {missing}. "
                             f"The grid: {_grid_text(grid)}")
    key = []
    for k in settings:
        value = as_value(baseline[k])
        if not any(value == v for v in grid[k]):
            raise ParameterError(f"baseline {k}={baseline[k]!r} is not a value of the grid; {k} in {grid[k]}")
        key.append(next(v for v in grid[k] if value == v))
    return tuple(key)


def _interval(values: np.ndarray, confidence: float) -> tuple[int, float, float, float, float]:
    """(n, mean, std, low, high): the two-sided Student-t interval of the mean; std and bounds NaN below 2 values."""
    n = len(values)
    if n == 0:
        return 0, math.nan, math.nan, math.nan, math.nan
    mean = float(np.mean(values))
    if n < 2:
        return n, mean, math.nan, math.nan, math.nan
    std = float(np.std(values, ddof=1))
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * std / math.sqrt(n)
    return n, mean, std, mean - half, mean + half


def summarize(runs: pd.DataFrame, metrics=None, baseline: dict | None = None, confidence: float = 0.95) -> pd.DataFrame:
    """Each setting combination's metrics over seeds: mean, sample std and a Student-t confidence interval.

    ``runs``: ``collect``'s frame; only its rows in state "done" count. One row per (combination, metric), in the
    sweep's order: the setting columns, ``metric``, ``n`` (seeds with a value), ``mean``, ``std`` (ddof 1, NaN for
    one seed), ``ci_low``/``ci_high``: mean ± t_{(1+confidence)/2, n-1} · std/√n, NaN below two seeds.

    The interval is Student-t over seeds, not a bootstrap: a sweep has few seeds (often 3), and a bootstrap of 3
    values resamples among 10 distinct means, an interval too narrow that ignores how little 3 seeds tell; the t
    interval widens for it (t_{0.975,2} = 4.30) under the assumption that a seed's result is roughly normal.

    ``metrics``: summary columns to report (default: every numeric one). ``baseline``: every grid setting's value
    for one point (e.g. ``{"teacher_drop_prob": "0.5", "ladder": "all"}``); each row then adds the comparison with
    it over the seeds both have, paired by seed (the same seed shares data order and initialisation, so the
    difference cancels what seeds vary): ``diff_n``, ``diff_mean``, ``diff_ci_low``/``diff_ci_high`` (the t
    interval of the per-seed differences) and ``p_value`` (paired two-sided t-test; NaN below two pairs, and when
    every difference is the same). The baseline's own rows have diff 0 and NaN interval and p-value.
    """
    if not isinstance(confidence, (int, float)) or isinstance(confidence, bool) or not 0 < confidence < 1:
        raise ParameterError(f"confidence must be a number in (0, 1), got {confidence!r} (e.g. 0.95)")
    settings = _setting_columns(runs)
    metrics = _metric_columns(runs, settings, metrics)
    base_key = _baseline_key(baseline, runs, settings) if baseline is not None else None
    done = runs[runs["state"] == "done"]
    if settings:
        groups = {key if isinstance(key, tuple) else (key,): frame
                  for key, frame in done.groupby(settings, sort=False, dropna=False)}
    else:  # a sweep of seeds alone: one group
        groups = {(): done} if len(done) else {}
    for key, frame in groups.items():
        if frame["seed"].duplicated().any():
            raise DataError(f"runs holds seed(s) {sorted(frame['seed'][frame['seed'].duplicated()].unique())} twice "
                            f"for {dict(zip(settings, key))}: summarize pairs by seed. Give it one sweep at a time")
    if base_key is not None:
        base_frame = next((f for k, f in groups.items() if _same_key(k, base_key)), None)
        if base_frame is None:
            raise DataError(f"the baseline {baseline} has no finished run in runs yet; wait for it "
                            "(workbench.study.progress(out)) or choose another")
    rows = []
    for key, frame in groups.items():
        is_base = base_key is not None and _same_key(key, base_key)
        for metric in metrics:
            values = frame[metric].dropna().astype(float).to_numpy()
            n, mean, std, low, high = _interval(values, confidence)
            row = {**dict(zip(settings, key)), "metric": metric, "n": n, "mean": mean, "std": std,
                   "ci_low": low, "ci_high": high}
            if base_key is not None:
                row.update(_paired(frame, base_frame, metric, confidence, is_base))
            rows.append(row)
    columns = [*settings, "metric", "n", "mean", "std", "ci_low", "ci_high"]
    if base_key is not None:
        columns += ["diff_n", "diff_mean", "diff_ci_low", "diff_ci_high", "p_value"]
    table = pd.DataFrame(rows, columns=columns)
    table.attrs.update({"settings": settings, "confidence": confidence,
                        "baseline": dict(zip(settings, base_key)) if base_key is not None else None})
    return table


def _same_key(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(x == y or (_isnan(x) and _isnan(y)) for x, y in zip(a, b))


def _isnan(x) -> bool:
    return isinstance(x, float) and math.isnan(x)


def _paired(frame: pd.DataFrame, base: pd.DataFrame, metric: str, confidence: float, is_base: bool) -> dict:
    """The comparison of one group with the baseline on one metric, over the seeds where both have a value."""
    pairs = pd.merge(frame[["seed", metric]], base[["seed", metric]], on="seed", suffixes=("", "_base")).dropna()
    a = pairs[metric].astype(float).to_numpy()
    b = pairs[f"{metric}_base"].astype(float).to_numpy()
    if is_base:
        return {"diff_n": len(a), "diff_mean": 0.0 if len(a) else math.nan, "diff_ci_low": math.nan,
                "diff_ci_high": math.nan, "p_value": math.nan}
    n, mean, _, low, high = _interval(a - b, confidence)
    p_value = math.nan
    if n >= 2:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            p_value = float(stats.ttest_rel(a, b).pvalue)
    return {"diff_n": n, "diff_mean": mean, "diff_ci_low": low, "diff_ci_high": high, "p_value": p_value}
