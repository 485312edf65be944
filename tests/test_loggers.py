"""``logger``: each run's metric records also go to TensorBoard event files (or W&B, offline), read back here with
TensorBoard's own reader."""
import json
import math
import sys

import pytest
import torch

import workbench as wb
from workbench.core.checkpoint import Checkpoints
from workbench.core.errors import MissingPackage
from workbench.core.loggers import TENSORBOARD_DIR, check_logger, make_logger
from workbench.core.runs import clear_out_dir, prepare_out_dir
from workbench.distillation import DistillConfig, RunOutput, distill
from workbench.distillation.checkpoint import resume
from workbench.distillation.task import TaskDistillConfig, task_distill
from workbench.distillation.task.train import logged_scalars

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


@pytest.fixture(scope="module")
def tiny_world():
    return wb.load_data("world", n_train=32, n_test=8)  # 2 epochs of 4 steps of 8 images


def random_teachers():
    torch.manual_seed(0)
    return {n: wb.create_teacher(n, pretrained=False) for n in ("world_colour", "world_shape")}


def tiny_distill(data, out, callback=None, **overrides):
    cfg = DistillConfig(**{**dict(epochs=2, batch_size=8, student="wb_vit_tiny_patch8_32", seed=3, ckpt_every=2,
                                  logger="tensorboard", precision="fp32", device="cpu"), **overrides})
    return distill(cfg, data, random_teachers(), out_dir=out, callback=callback, log_every=2, log=lambda *_: None)


def die_at_step_6(record):
    """A callback that kills the run after the training record of step 6 (its checkpoint: the 6 steps before)."""
    if record.get("step") == 6 and "loss" in record:
        raise RuntimeError("the machine went away")


def read_events(out) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of ``<out>/tensorboard`` as TensorBoard shows it: (step, value) per tag, in order."""
    events = EventAccumulator(str(out / TENSORBOARD_DIR), size_guidance={"scalars": 0})  # 0: every event, no sampling
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def expected(records: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """Every numeric key but step of each record, at its step, in the order of the records."""
    out: dict[str, list] = {}
    for r in records:
        for k, v in r.items():
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                out.setdefault(k, []).append((r["step"], v))
    return out


def assert_same(events, want):
    assert set(events) == set(want), f"tags differ: {set(events) ^ set(want)}"
    for tag, points in want.items():
        assert [s for s, _ in events[tag]] == [s for s, _ in points], tag
        for (_, got), (_, value) in zip(events[tag], points):
            assert math.isclose(got, value, rel_tol=1e-6, abs_tol=1e-30), (tag, got, value)  # float32 events


def metrics_jsonl(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_tensorboard_holds_every_metric_of_metrics_jsonl(tiny_world, tmp_path):
    out = tmp_path / "run"
    prepare_out_dir(out, {"run": 1}, kind="test")  # a run folder: what the workbench writes there is recorded
    run = tiny_distill(tiny_world, out)
    records = metrics_jsonl(out)
    assert records == json.loads(json.dumps(run.history))
    want = expected(records)
    assert {"loss", "lr", "epoch", "time_s", "loss/world_shape", "alpha/world_colour", "val_loss",
            "val_loss/world_shape"} <= set(want)
    assert_same(read_events(out), want)
    # the run's: overwrite deletes it (the out_dir's record of what the workbench wrote, and distill's overwrite)
    assert TENSORBOARD_DIR in (out / ".workbench-written").read_text().split()
    (out / "notes.md").write_text("mine")
    clear_out_dir(out)
    assert not (out / TENSORBOARD_DIR).exists() and (out / "notes.md").is_file()
    (out / TENSORBOARD_DIR).mkdir()
    resume(Checkpoints(out / "checkpoints"), None, None, {}, None, "", overwrite=True)
    assert not (out / TENSORBOARD_DIR).exists()


def test_a_resumed_run_keeps_one_value_per_step(tiny_world, tmp_path):
    """A run that dies after its checkpoint at step 6, having logged the step after it, is rerun: TensorBoard shows
    the records of metrics.jsonl (the checkpoint's, then the steps computed again), each once, as a run never
    stopped."""
    whole = tiny_distill(tiny_world, tmp_path / "whole")
    out = tmp_path / "stopped"
    with pytest.raises(RuntimeError, match="went away"):
        tiny_distill(tiny_world, out, callback=die_at_step_6)
    assert max(s for s, _ in read_events(out)["loss"]) == 6  # logged past its checkpoint
    resumed = tiny_distill(tiny_world, out)
    assert resumed.resumed_from == 6
    events = read_events(out)
    assert_same(events, expected(metrics_jsonl(out)))
    assert [s for s, _ in events["loss"]] == [r["step"] for r in whole.history if "loss" in r]
    assert len(list((out / TENSORBOARD_DIR).glob("events.out.tfevents.*"))) == 1


def test_the_logger_is_an_execution_option(tiny_world, tmp_path):
    """Switching it on for the rerun of a run begun without it resumes that run, and logs it from its first step."""
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="went away"):
        tiny_distill(tiny_world, out, callback=die_at_step_6, logger="none")
    assert not (out / TENSORBOARD_DIR).exists()
    run = tiny_distill(tiny_world, out)
    assert run.resumed_from == 6
    assert_same(read_events(out), expected(metrics_jsonl(out)))
    assert "logger" not in DistillConfig(logger="tensorboard").run_key()
    assert "logger" not in TaskDistillConfig(logger="tensorboard").run_key()


def test_task_distillation_logs_each_student_and_seed(tmp_path):
    data = wb.load_data("world", n_train=60, n_test=20)
    cfg = TaskDistillConfig(student="wb_vit_tiny_patch8_32", labels_per_class=3, student_steps=3, batch_size=12,
                            students=["labels", "probed"], repeats=1, workers=1, logger="tensorboard",
                            precision="fp32", device="cpu")
    for _ in range(2):  # the rerun takes the finished students from their checkpoints: their records again, once
        records = []
        task_distill(cfg, data, random_teachers(), out_dir=tmp_path, callback=records.append, log=lambda *_: None)
        events = read_events(tmp_path)
        assert "top1/probed/seed0" in events and "loss/labels/seed0" in events
        want: dict[str, list] = {}
        for r in records:
            for k, v in logged_scalars(r).items():
                want.setdefault(k, []).append((r["step"], v))
        assert_same(events, want)


def test_only_the_process_that_writes_metrics_jsonl_logs(tmp_path):
    """Under torchrun, rank 0 (``writes``) alone: the other ranks neither write metrics.jsonl nor log."""
    for writes in (False, True):
        out = tmp_path / f"writes={writes}"
        output = RunOutput(out, DistillConfig(logger="tensorboard"), {"data": "none"}, writes=writes)
        output.resume(None, None, {}, overwrite=False, log=lambda *_: None)
        output.record({"step": 0, "loss": 1.0})
        output.close()
        assert (out / "metrics.jsonl").is_file() == (out / TENSORBOARD_DIR).is_dir() == writes
    assert read_events(out) == {"loss": [(0, 1.0)]}


def test_a_missing_package_is_the_workbench_error_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard: ImportError
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(MissingPackage, match=r'pip install -e "\.\[tensorboard\]"'):
        make_logger("tensorboard", tmp_path, "run", {})
    with pytest.raises(MissingPackage, match=r"logger=tensorboard needs the tensorboard package"):
        check_logger("tensorboard")
    assert isinstance(MissingPackage("x"), ImportError)
    # the default needs nothing
    with make_logger("none", tmp_path, "run", {}) as logger:
        logger.log({"step": 0, "loss": 1.0})
    assert not list(tmp_path.iterdir())


def test_wandb_logs_offline_and_resumes_its_run(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):  # nothing of W&B's outside tmp_path
        monkeypatch.setenv(var, str(tmp_path / "home" / var))
    with make_logger("wandb", tmp_path, "run", {"lr": 0.1}) as logger:
        assert logger.run.settings.mode == "offline"
        for step in range(3):
            logger.log({"step": step, "loss": 1.0 / (step + 1)})
    record = json.loads((tmp_path / "wandb" / "workbench.json").read_text())
    assert record["logged"] == {"loss": 2}
    with make_logger("wandb", tmp_path, "run", {"lr": 0.1}) as logger:  # a rerun: the same run, nothing twice
        assert logger.id == record["id"]
        for step in range(5):
            logger.log({"step": step, "loss": 1.0 / (step + 1)})
    assert json.loads((tmp_path / "wandb" / "workbench.json").read_text())["logged"] == {"loss": 4}
    monkeypatch.setenv("WANDB_MODE", "disabled")  # the user's own mode wins
    with make_logger("wandb", tmp_path / "other", "run", {}) as logger:
        assert logger.run.settings.mode == "disabled"
