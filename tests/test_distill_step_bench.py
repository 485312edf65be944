"""benchmarks/distill_step.py: its workbench side runs a step (the official side needs --unic, not needed here)."""
import importlib.util
import types
from pathlib import Path

import torch

from workbench import create_teacher

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "distill_step.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("distill_step_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_workbench_side_runs_one_tiny_step():
    bench = load_bench()
    device = torch.device("cpu")
    torch.manual_seed(0)
    teachers = {"world_colour": create_teacher("world_colour", pretrained=False, log=None).eval().requires_grad_(False)}
    side = bench.WorkbenchSide("wb_vit_tiny_patch4_32", teachers, 0.0, device, 0.5, 10, "fp32")
    before = [p.detach().clone() for p in side.model.parameters()]
    args = types.SimpleNamespace(quick=True, steps=1, repeats=1)
    out = bench.measure_sides([side], torch.rand(4, 3, 32, 32), args, device, None)
    r = out["workbench fp32"]
    assert r["step_s"] > 0 and len(r["times"]) == 1 and r["syncs"] >= 1  # the finiteness check reads the loss
    assert any(not torch.equal(a, p) for a, p in zip(before, side.model.parameters()))  # the optimizer stepped
    shape = bench.vit_shape(side.model.student.vit)
    assert shape == {"embed_dim": 128, "depth": 4, "num_heads": 4, "mlp_ratio": 3.0, "patch_size": 4, "img_size": 32}
