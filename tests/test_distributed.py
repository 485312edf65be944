"""Distributed distillation: N ranks x batch B train as one process with batch N*B.

The end-to-end test launches ``torchrun --nproc_per_node 2 -m workbench distill`` on CPU (Gloo) with
the run file the notebook writes, and compares its metrics and standardization statistics with a
one-process run of the same file. The other tests check the pieces without processes."""
import json
import os
import shutil
import sys
import threading
from pathlib import Path

import pytest
import torch

from workbench.core.distributed import ProcessGroup, ShardSampler
from workbench.core.files import load_tensors
from workbench.distillation import (
    DistillConfig,
    launch_distill,
    load_run_config,
    run_distill,
    save_run_config,
    teacher_coefficients,
    teacher_keep,
)
from workbench.layers.standardize import batch_moments, make_standardizer

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("n, world", [(10, 2), (11, 2), (12, 3), (5, 4), (7, 1)])
def test_shards_are_disjoint_equal_and_interleave_the_epoch_order(n, world):
    order = torch.randperm(n, generator=torch.Generator().manual_seed(n)).tolist()
    parts = [list(ShardSampler(order, r, world)) for r in range(world)]
    usable = n - n % world
    assert all(len(p) == usable // world == len(ShardSampler(order, r, world)) for r, p in enumerate(parts))
    assert sorted(sum(parts, [])) == sorted(order[:usable])  # disjoint, and at most world - 1 left out
    for k in range(usable // world):  # global position k * world + r is rank r's k-th sample
        assert [p[k] for p in parts] == order[k * world:(k + 1) * world]


def as_ranks(fn, parts: list) -> list:
    """Run ``fn(part, all_sum)`` for each part in its own thread, as ranks that sum tensors with each other."""
    slots, results, errors = [None] * len(parts), [None] * len(parts), []
    barrier = threading.Barrier(len(parts))

    def all_sum_for(rank):
        def all_sum(t):
            slots[rank] = t.clone()
            barrier.wait()
            total = sum(slots)
            barrier.wait()
            return t.copy_(total)
        return all_sum

    def work(rank):
        try:
            results[rank] = fn(parts[rank], all_sum_for(rank))
        except BaseException as err:  # noqa: BLE001  (re-raised below)
            errors.append(err)
            barrier.abort()

    threads = [threading.Thread(target=work, args=(r,)) for r in range(len(parts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize("kind", ["running", "phis"])
def test_statistics_of_two_ranks_are_those_of_the_whole_batch(kind):
    x = torch.randn(12, 5, 8) * torch.linspace(0.5, 3, 8) + 4.0  # an offset mean, as real features have
    whole, ranks = make_standardizer(kind, 8), [make_standardizer(kind, 8) for _ in range(2)]
    for step, weight in enumerate([1.0, 0.5, 0.1]):
        batch = x + step * torch.randn(8)
        whole.update(batch, weight)
        as_ranks(lambda part, all_sum, weight=weight: part[0].update(part[1], weight, all_sum),
                 [(ranks[0], batch[:7]), (ranks[1], batch[7:])])
    for rank in ranks:
        for (name, a), (_, b) in zip(whole.named_buffers(), rank.named_buffers()):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")
    (mean, var), _ = as_ranks(batch_moments, [x[:3], x[3:]])
    torch.testing.assert_close(mean, x.reshape(-1, 8).mean(0), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(var, x.reshape(-1, 8).var(0, unbiased=False), rtol=1e-5, atol=1e-5)


def test_teacher_dropping_is_the_same_draw_split_over_ranks():
    losses = torch.rand(3, 8)
    whole = teacher_keep(losses, 0.5, torch.Generator().manual_seed(1))
    for rank in range(2):
        mine = teacher_keep(losses[:, rank::2], 0.5, torch.Generator().manual_seed(1), ProcessGroup(rank, 2))
        assert torch.equal(mine, whole[:, rank::2])
    # normalized over the active pairs of both ranks: the coefficients of the two ranks are the whole batch's
    coeffs = teacher_coefficients(losses, 0.5, torch.Generator().manual_seed(1))
    counts = [teacher_keep(losses[:, r::2], 0.5, torch.Generator().manual_seed(1), ProcessGroup(r, 2)).sum()
              for r in range(2)]

    class FakeGroup(ProcessGroup):
        def all_sum(self, t):
            return t.fill_(float(sum(counts)))

    mine = teacher_coefficients(losses[:, 1::2], 0.5, torch.Generator().manual_seed(1), FakeGroup(1, 2))
    torch.testing.assert_close(mine, coeffs[:, 1::2])


def test_run_file_round_trip_and_bad_files(tmp_path):
    cfg = DistillConfig(teachers=["world_shape"], epochs=2, batch_size=8, ladder=[1, 3], n_train=40, ckpt_every=5)
    path = save_run_config(tmp_path / "run.yaml", cfg, out_dir=tmp_path / "out")
    back, out_dir, relative_to = load_run_config(path)
    assert back == cfg and out_dir == str(tmp_path / "out") and relative_to == Path.cwd().resolve()
    assert (back.n_train, back.n_test, back.ckpt_every, back.keep_checkpoints) == (40, 2000, 5, 3)
    (tmp_path / "bad.yaml").write_text("teachers: [world_shape]\ncolour: 3\n")
    with pytest.raises(ValueError, match="unknown distillation parameter"):
        load_run_config(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"):
        load_run_config(tmp_path / "list.yaml")
    with pytest.raises(FileNotFoundError, match="notebook writes one"):
        load_run_config(tmp_path / "missing.yaml")
    (tmp_path / "run.json").write_text(json.dumps({"epochs": "3", "batch_size": 4}))  # JSON is YAML too
    assert load_run_config(tmp_path / "run.json")[0].epochs == 3
    (tmp_path / "typo.yaml").write_text("epochs: x\n")
    with pytest.raises(ValueError, match="epochs must be an integer"):
        load_run_config(tmp_path / "typo.yaml")


@pytest.mark.slow
def test_two_processes_train_as_one_with_the_global_batch(tmp_path, monkeypatch):
    """torchrun, 2 ranks x 8 images (Gloo) vs 1 process x 16 images, same run file: the same loss curve,
    per-teacher losses and alphas (so the same teacher-dropping draws), standardization statistics and
    weights, up to float rounding. 72 images: the last step has a smaller batch on both sides. The two
    processes are launched as the notebook does (``launch_distill``), which follows their metrics live.
    Then the 2-process run, cut back to a mid-epoch checkpoint, is resumed by one process."""
    cfg = DistillConfig(student="wb_vit_tiny_patch8_32", epochs=2, batch_size=16, teacher_drop_prob=0.5, seed=3,
                        n_train=72, n_test=16, ckpt_every=3)
    run_file = save_run_config(tmp_path / "run.yaml", cfg)

    one = tmp_path / "one"
    run_distill(run_file, one, random_teachers=True, log_every=1, log=lambda *_: None)

    two = tmp_path / "two"
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    followed = []
    launched = launch_distill(run_file, two, 2, callback=followed.append, log=lambda *_: None, poll_s=0.2,
                              extra=["--random-teachers", "--log-every", "1"])
    assert "2 process(es); global batch 16 (8 per process)" in launched.log_file.read_text()
    assert followed == launched.history and launched.student_folder == two / "student"

    records = [[json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()] for d in (one, two)]
    curves = [[r for r in rs if "loss" in r] for rs in records]  # training steps; each epoch adds a val_loss record
    vals = [[r for r in rs if "val_loss" in r] for rs in records]
    assert [r["step"] for r in curves[0]] == [r["step"] for r in curves[1]] == list(range(10))
    assert [r["step"] for r in vals[0]] == [r["step"] for r in vals[1]] == [4, 9]  # the last step of each epoch
    for a, b in zip(curves[0] + vals[0], curves[1] + vals[1]):
        for key in [k for k in a if k.startswith(("loss", "alpha", "val_loss")) and a[k] is not None]:
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), (a["step"], key)
    assert len({round(r["alpha/world_shape"], 4) for r in curves[0]}) > 2  # teacher dropping was at work

    stats = [load_tensors(d / "student" / "projectors.safetensors") for d in (one, two)]
    keys = [k for k in stats[0] if k.startswith(("std_cls.", "std_patch."))]
    assert len(keys) == 8  # 2 teachers x (CLS, patch) x (mean, std)
    for k in keys:
        torch.testing.assert_close(stats[1][k], stats[0][k], rtol=1e-4, atol=1e-5, msg=lambda m, k=k: f"{k}: {m}")
    # weights: Adam divides by the root of tiny second moments, so a few elements of near-zero gradient
    # may differ by up to about lr per step; on average they agree to float rounding
    students = [load_tensors(d / "student" / "student.safetensors") for d in (one, two)]
    for k in students[0]:
        diff = (students[1][k] - students[0][k]).abs()
        assert diff.mean() < 1e-5 and diff.max() < 5 * cfg.peak_lr, (k, diff.mean().item(), diff.max().item())
    assert sorted(p.name for p in two.iterdir()) == sorted([p.name for p in one.iterdir()] + ["distill.log"])

    # a 2-process run that died after its checkpoint at step 6 (epoch 2, batch 2), resumed by 1 process
    resumed = tmp_path / "resumed"
    shutil.copytree(two, resumed)
    shutil.rmtree(resumed / "student")
    for step in (9, 10):
        shutil.rmtree(resumed / "checkpoints" / f"step_{step:08d}")
    run = run_distill(run_file, resumed, random_teachers=True, log_every=1, log=lambda *_: None)
    assert run.resumed_from == 6
    again = [json.loads(line) for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in again if "loss" in r] == list(range(10))
    assert [r["epoch"] for r in again if "val_loss" in r] == [1, 2]  # each epoch's validation once
    assert len(again) == len(records[0])
    for a, b in zip(records[0], again):
        key = "loss" if "loss" in a else "val_loss"
        assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), (a["step"], key)
    final = load_tensors(resumed / "student" / "projectors.safetensors")
    for k in keys:
        torch.testing.assert_close(final[k], stats[0][k], rtol=1e-4, atol=1e-5, msg=lambda m, k=k: f"{k}: {m}")


def test_global_batch_must_split_over_the_ranks(tmp_path, monkeypatch):
    from workbench import load_data
    from workbench.distillation import distill

    monkeypatch.setattr(sys.modules["workbench.distillation.train"], "current_group", lambda: ProcessGroup(0, 3))
    with pytest.raises(ValueError, match="batch_size 16 .* 3 processes"):
        distill(DistillConfig(batch_size=16), load_data("world", n_train=20, n_test=10), {})


def test_follow_reads_records_as_they_are_written(tmp_path):
    from workbench.core.live import MetricsLog, follow

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 0}\n{"step": 1}\n')
    log = MetricsLog(path)  # a fresh run: the earlier run's records go
    assert path.read_text() == ""
    state = {"calls": 0}

    def running():  # the "training" appends a record, then half of one, then finishes it, then stops
        state["calls"] += 1
        if state["calls"] == 1:
            log.append({"step": 0, "loss": 1.0})
        elif state["calls"] == 2:
            with open(path, "a") as f:
                f.write('{"step": 1, "lo')
        elif state["calls"] == 3:
            with open(path, "a") as f:
                f.write('ss": 0.5}\n')
        return state["calls"] < 4

    assert list(follow(path, running, poll_s=0)) == [{"step": 0, "loss": 1.0}, {"step": 1, "loss": 0.5}]
    MetricsLog(path, [{"step": 0, "loss": 1.0}])  # a resumed run: the records of its checkpoint
    assert path.read_text() == '{"step": 0, "loss": 1.0}\n'
