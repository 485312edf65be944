import json

import numpy as np
import pytest
import torch

import workbench as wb
from workbench.core.training import NonFiniteLoss
from workbench.distillation import DistillConfig, distill
from workbench.models import Features, Teacher, load_student
from workbench.models.preprocess import Preprocessing


@pytest.fixture(scope="module")
def tiny_world():
    return wb.load_data("world", n_train=96, n_test=32)


def random_teachers():
    return {n: wb.create_teacher(n, pretrained=False) for n in ("world_colour", "world_shape")}


def test_distill_writes_a_checkpoint_that_loads_back(tiny_world, tmp_path):
    cfg = DistillConfig(epochs=1, batch_size=32, student="wb_vit_tiny_patch8_32")
    run = distill(cfg, tiny_world, random_teachers(), out_dir=tmp_path, log=lambda *_: None)
    ckpt = tmp_path / "student"
    assert run.student_folder == ckpt
    assert {p.name for p in ckpt.iterdir()} == {"student.safetensors", "projectors.safetensors", "config.json"}
    meta = json.loads((ckpt / "config.json").read_text())
    assert meta["config"]["teachers"] == ["world_colour", "world_shape"]
    assert Preprocessing.from_dict(meta["preprocessing"]) == run.model.student.preprocessing  # fed as trained
    x = torch.rand(4, 3, 32, 32)
    for folder in (ckpt, tmp_path, tmp_path / "checkpoints" / "step_00000003"):  # final, out_dir, resumable state
        assert torch.allclose(load_student(folder).embed(x), run.model.student.embed(x), atol=1e-6)
    # standardization statistics travel with the projectors
    from workbench.core.files import load_tensors

    keys = load_tensors(ckpt / "projectors.safetensors")
    assert "std_cls.world_shape.mean" in keys and "std_patch.world_colour.std" in keys
    history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert history and {"loss", "loss/world_shape", "alpha/world_colour"} <= set(history[0])
    assert {"val_loss", "val_loss/world_shape", "val_loss/world_colour"} <= set(history[-1])  # the epoch's end
    history = [r for r in history if "alpha/world_colour" in r]
    alphas = [history[-1]["alpha/world_colour"], history[-1]["alpha/world_shape"]]
    assert sum(alphas) == pytest.approx(1.0)


def test_single_teacher_is_the_same_machinery(tiny_world):
    cfg = DistillConfig(teachers=["world_shape"], epochs=1, batch_size=32, student="wb_vit_tiny_patch8_32",
                        ladder="last", standardize="phis")
    run = distill(cfg, tiny_world, {"world_shape": wb.create_teacher("world_shape", pretrained=False)},
                  log=lambda *_: None)
    assert all(r["alpha/world_shape"] == pytest.approx(1.0) for r in run.history if "loss" in r)


@pytest.mark.parametrize("standardize", ["none", "running", "phis"])
def test_every_standardization_trains_in_fp32(tiny_world, standardize):
    """The teachers' features come out of inference_mode; without standardization they reach the loss as they are
    (07's no-standardization variant failed there: "Inference tensors cannot be saved for backward")."""
    cfg = DistillConfig(epochs=1, batch_size=32, student="wb_vit_tiny_patch8_32", standardize=standardize,
                        precision="fp32")
    run = distill(cfg, tiny_world, random_teachers(), log=lambda *_: None)
    assert all(np.isfinite(r["loss"]) for r in run.history if "loss" in r)


class ExplodingTeacher(Teacher):
    """Finite features for the first ``good_calls`` batches, then NaN."""

    def __init__(self, good_calls):
        super().__init__()
        self.embed_dim, self.calls, self.good_calls = 8, 0, good_calls

    def encode(self, x):
        self.calls += 1
        b = x.shape[0]
        cls = x.mean((2, 3)).repeat(1, 3)[:, :8]
        patch = x[:, :, ::8, ::8].flatten(2).transpose(1, 2).repeat(1, 1, 3)[..., :8]
        if self.calls > self.good_calls:
            cls = cls * float("nan")
        return Features(cls.reshape(b, 8), patch.contiguous(), (4, 4))


def test_non_finite_loss_stops_with_message_and_keeps_last_good_checkpoint(tiny_world, tmp_path):
    cfg = DistillConfig(teachers=["boom"], epochs=3, batch_size=32, student="wb_vit_tiny_patch8_32")
    # 96 images / 32 = 3 steps per epoch, one call for shape discovery and one for the validation of epoch 1
    # (32 test images): NaN from epoch 2, step 1
    with pytest.raises(NonFiniteLoss, match=r"step 4 .*boom.*checkpoint") as err:
        distill(cfg, tiny_world, {"boom": ExplodingTeacher(good_calls=6)}, out_dir=tmp_path, log=lambda *_: None)
    last_good = tmp_path / "checkpoints" / "step_00000003"
    assert str(last_good) in str(err.value)
    meta = json.loads((last_good / "config.json").read_text())
    assert meta["epoch"] == 1 and meta["step"] == 3
    load_student(last_good)  # the last good checkpoint still loads
    assert not (tmp_path / "student").exists()  # no "finished" student from a run that failed


def test_config_from_params_accepts_papermill_forms():
    a = DistillConfig.from_params(teachers="world_colour,world_shape", epochs="3", base_lr="0.01", ladder="0,2",
                                  betas="0.9,0.99")
    b = DistillConfig.from_params(teachers=["world_colour", "world_shape"], epochs=3, base_lr=0.01, ladder=[0, 2],
                                  betas=[0.9, 0.99])
    assert a == b
    assert a.teachers == ["world_colour", "world_shape"] and a.ladder == [0, 2]


@pytest.mark.parametrize("params,message", [
    ({"epochs": "abc"}, "epochs must be an integer"),
    ({"teachers": "world_shape,dino_nonexistent"}, "Registered teachers: .*dino_vitb16.*world_colour, world_shape"),
    ({"teachers": ""}, "teachers is empty"),
    ({"student": "resnet_nope"}, "unknown student"),
    ({"standardize": "zscore"}, "standardize must be one of"),
    ({"teacher_drop_prob": 1.5}, "teacher_drop_prob must be in"),
    ({"ladder": "some"}, "ladder must be"),
    ({"batch_size": 1}, "batch_size must be >= 2"),
    ({"device": "cuda:0" if not torch.cuda.is_available() else "tpu"}, "device"),
    ({"colour": 1}, "unknown distillation parameter"),
])
def test_config_from_params_rejects_bad_input_clearly(params, message):
    with pytest.raises(ValueError, match=message):
        DistillConfig.from_params(**params)


def test_attention_is_fused_and_teachers_keep_no_autograd_state(monkeypatch):
    """Student and timm teachers call F.scaled_dot_product_attention (flash kernels on GPU) even where
    timm's default was turned off; a training step leaves teachers without gradients or graph."""
    import timm
    import torch.nn.functional as F

    from workbench.core.precision import autocast
    from workbench.distillation import UNIC, distill_forward, teacher_feature_shapes
    from workbench.layers import use_fused_attention
    from workbench.models import Student, TimmTeacher

    vit = timm.create_model("wb_vit_tiny_patch8_32", num_classes=0)
    for m in vit.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = False  # as with TIMM_FUSED_ATTN=0
    teacher = TimmTeacher("tiny", vit).requires_grad_(False).eval()
    student = Student("wb_vit_tiny_patch8_32")
    assert use_fused_attention(student) == student.depth
    calls = []
    real = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or real(*a, **k))
    images = torch.rand(2, 3, 32, 32)
    dims, grids = teacher_feature_shapes({"tiny": teacher}, images)
    model = UNIC(student, dims, grids)
    loss, _, _ = distill_forward(model, {"tiny": teacher}, images, 1.0, 0.0, None,
                                 autocast("fp32", torch.device("cpu")))
    loss.backward()
    assert len(calls) == 3 * 4  # teacher (shape discovery, step) and student (step), 4 blocks each
    assert all(p.grad is None for p in teacher.parameters())
    assert all(b.mlp.fc1.weight.grad is not None for b in student.vit.blocks)


def test_the_learning_rate_warms_up_then_follows_a_cosine_to_min_lr():
    from workbench.core.training import get_lr

    lrs = [get_lr(step, 100, 1.0, 10, min_lr=0.2) for step in range(100)]
    official = np.concatenate([np.linspace(0, 1.0, 10), 0.2 + 0.5 * 0.8 * (1 + np.cos(np.pi * np.arange(90) / 90))])
    np.testing.assert_allclose(lrs, official, rtol=1e-12, atol=1e-12)  # UNIC's and DINO's cosine_scheduler
    assert lrs[0] == 0.0 and lrs[9] == 1.0 and lrs[10] == 1.0 and lrs[-1] == pytest.approx(0.2, abs=1e-3)
    assert [get_lr(s, 100, 1.0, 0) for s in range(3)][0] == 1.0  # no warm-up: the peak at once
