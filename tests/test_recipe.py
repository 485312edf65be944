"""The paper's training recipe: augmentation, parameter groups, learning-rate schedule, drop path, and the
student shared as a timm model."""
import json
import math

import matplotlib.cbook
import numpy as np
import pytest
import timm
import torch
from PIL import Image
from torchvision.transforms import v2

import workbench as wb
from workbench.core.training import configure_optimizer, get_lr, param_groups
from workbench.data.augment import Augmentation, ClampToUnit, augmentation_pipeline
from workbench.distillation import UNIC, DistillConfig, distill
from workbench.layers.ladder import FusedLadder, Ladder
from workbench.models import Features, Student, Teacher


def test_unic_augmentation_is_the_official_pipeline():
    """naver/unic main_unic.py, get_dataloaders: the transforms, their order and their parameters."""
    crop, clamp, flip, jitter, gray, blur, solarize = augmentation_pipeline("unic", 224).transforms
    assert isinstance(clamp, ClampToUnit)  # bicubic overshoot saturates, as the official pipeline's uint8 images
    assert isinstance(crop, v2.RandomResizedCrop) and crop.size == (224, 224) and crop.scale == (0.08, 1.0)
    assert crop.ratio == pytest.approx((3 / 4, 4 / 3)) and crop.interpolation == v2.InterpolationMode.BICUBIC
    assert crop.antialias
    assert isinstance(flip, v2.RandomHorizontalFlip) and flip.p == 0.5
    assert isinstance(jitter, v2.RandomApply) and jitter.p == 0.8
    [cj] = jitter.transforms
    assert isinstance(cj, v2.ColorJitter)
    assert (cj.brightness, cj.contrast, cj.saturation) == ((0.6, 1.4), (0.6, 1.4), (0.8, 1.2))
    assert cj.hue == pytest.approx((-0.1, 0.1))
    assert isinstance(gray, v2.RandomApply) and gray.p == 0.2
    assert isinstance(gray.transforms[0], v2.Grayscale) and gray.transforms[0].num_output_channels == 3
    assert isinstance(blur, v2.RandomApply) and blur.p == 0.2
    [gb] = blur.transforms
    assert isinstance(gb, v2.GaussianBlur) and gb.kernel_size == (9, 9) and gb.sigma == [0.1, 5.0]
    assert isinstance(solarize, v2.RandomSolarize) and solarize.threshold == 0.5 and solarize.p == 0.2

    light = augmentation_pipeline("light", 32).transforms
    assert [type(t) for t in light] == [v2.RandomResizedCrop, ClampToUnit, v2.RandomHorizontalFlip]
    with pytest.raises(ValueError, match="augment must be one of"):
        augmentation_pipeline("heavy", 32)


def test_views_depend_on_the_image_place_not_on_the_process():
    """Each image's view is drawn from (seed, step, place in the global batch): two ranks of 4 images give what
    one process of 8 gives, a rerun gives the same views, and the global random generator is left alone."""
    images = torch.rand(8, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    augment = Augmentation("unic", 32, seed=3)
    state = torch.get_rng_state()
    whole = augment(images, step=5)
    assert torch.equal(torch.get_rng_state(), state)
    ranks = [augment(images[r::2], step=5, positions=r + 2 * torch.arange(4)) for r in (0, 1)]
    assert torch.equal(whole[0::2], ranks[0]) and torch.equal(whole[1::2], ranks[1])
    assert torch.equal(augment(images, step=5), whole)
    assert not torch.equal(augment(images, step=6), whole)  # another step, other views
    assert whole.shape == (8, 3, 32, 32) and whole.min() >= 0 and whole.max() <= 1
    assert len({tuple(v.flatten()[:5].tolist()) for v in whole}) == 8  # each image its own draw


@pytest.mark.parametrize("kind", ["unic", "light", "none"])
def test_views_stay_finite_and_in_range_on_hard_edges(kind):
    """Bicubic resizing of 0/1 edges overshoots [0, 1]; colour jitter's HSV conversion of a negative value gave NaN
    (a real run stopped with a non-finite loss after 8 steps) before the clamp that follows the crop."""
    images = (torch.rand(128, 3, 32, 32, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    views = Augmentation(kind, 24)(images, step=0)
    assert torch.isfinite(views).all() and views.min() >= 0 and views.max() <= 1


class RecordingTeacher(Teacher):
    """Keeps the images it is given; its features are a fixed projection of them."""

    def __init__(self, name):
        super().__init__()
        self.name, self.embed_dim, self.seen = name, 12, []
        self.proj = torch.nn.Linear(3, 12)

    def encode(self, x):
        self.seen.append(x.clone())
        patch = self.proj(x[:, :, ::8, ::8].flatten(2).transpose(1, 2))
        return Features(patch.mean(1), patch, (4, 4))


def test_student_and_teachers_receive_the_same_augmented_view(monkeypatch):
    data = wb.load_data("world", n_train=32, n_test=16)
    teachers = {"a": RecordingTeacher("a"), "b": RecordingTeacher("b")}
    student_inputs = []
    real = Student.preprocess
    monkeypatch.setattr(Student, "preprocess", lambda self, x: student_inputs.append(x.clone()) or real(self, x))
    cfg = DistillConfig(teachers=["a", "b"], student="wb_vit_tiny_patch8_32", epochs=1, batch_size=16,
                        n_train=32, n_test=16, augment="unic")
    distill(cfg, data, teachers, log=lambda *_: None)
    # shape discovery (teachers only), 2 training steps, then the validation (the test split, not augmented)
    train_views = teachers["a"].seen[1:3]
    assert len(student_inputs) == 3 and len(teachers["b"].seen) == 4
    for step, view in enumerate(train_views):
        assert torch.equal(view, teachers["b"].seen[1 + step]) and torch.equal(view, student_inputs[step])
    batch = next(iter(data.loader("train", 16, shuffle=True, seed=cfg.seed, epoch=0))).images
    assert not torch.equal(train_views[0], batch)  # augmented
    assert torch.equal(train_views[0], Augmentation("unic", 32, cfg.seed)(batch, step=0))
    assert torch.equal(teachers["a"].seen[3], data.test.images[:16].float() / 255)  # validation: as it is


def test_parameter_groups_by_role():
    """Weight decay on weight matrices only: not on biases and norms, nor on the position embedding and the
    class token (timm's no_weight_decay), nor on the ladder's biases, whatever their shape."""
    model = UNIC(Student("wb_vit_tiny_patch8_32"), {"a": 12}, {"a": (4, 4)}, fused_ladder=True)
    decay, no_decay = param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed, kept = {names[id(p)] for p in decay["params"]}, {names[id(p)] for p in no_decay["params"]}
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert {"student.vit.pos_embed", "student.vit.cls_token", "student.vit.norm.weight",
            "student.vit.blocks.0.attn.qkv.bias", "ladder.cls.b1.0", "ladder.patch.b2.0"} <= kept
    assert {"student.vit.blocks.0.attn.qkv.weight", "student.vit.patch_embed.proj.weight", "ladder.cls.w1.0"} <= decayed
    assert model.ladder.cls.b1["0"].ndim == 3  # a 3-D bias: its shape alone would have put it in the decayed group
    assert not decayed & kept and len(decayed | kept) == len(names)


def test_one_adamw_step_moves_both_ladder_forms_identically():
    """The fused ladder is the per-block ladder as batched matrix products: the same function, and now the same
    training (its biases, 3-D tensors, are not decayed either)."""
    torch.manual_seed(0)
    ladder = Ladder(16, 3, {"a": 8, "b": 5}, blocks=[0, 1, 2])
    with torch.no_grad():
        for name, p in ladder.named_parameters():
            if name.endswith("bias"):
                p.normal_()  # zero biases would hide a decay of them
    fused = FusedLadder.from_ladder(ladder)
    outputs = [(torch.randn(4, 16), torch.randn(4, 9, 16)) for _ in range(3)]
    for model in (ladder, fused):
        opt = configure_optimizer(model, lr=0.1, weight_decay=0.5, betas=(0.9, 0.99))
        preds = model(outputs, (3, 3), {"a": (3, 3), "b": (3, 3)})
        sum(c.square().mean() + p.square().mean() for c, p in preds.values()).backward()
        opt.step()
    # Adam's first step is lr * g / (|g| + eps): a gradient near eps turns float rounding into up to ~1e-3 * lr;
    # a decayed bias would be off by lr * weight_decay * bias, ~5e-2 here
    after = fused.to_ladder().state_dict()
    for name, value in ladder.state_dict().items():
        torch.testing.assert_close(after[name], value, rtol=0, atol=1e-3, msg=name)


def test_learning_rate_schedule_is_the_official_one():
    """utils.cosine_scheduler of DINO/UNIC: np.linspace(0, peak, warmup), then a cosine from peak to min_lr."""
    peak, final, epochs, per_epoch, warmup_epochs = 3e-4 * 512 / 256, 1e-6, 5, 7, 2
    warmup = warmup_epochs * per_epoch
    iters = np.arange(epochs * per_epoch - warmup)
    official = np.concatenate([np.linspace(0, peak, warmup),
                               final + 0.5 * (peak - final) * (1 + np.cos(np.pi * iters / len(iters)))])
    ours = [get_lr(s, epochs * per_epoch, peak, warmup, final) for s in range(epochs * per_epoch)]
    np.testing.assert_allclose(ours, official, rtol=1e-12, atol=1e-15)
    cfg = DistillConfig(batch_size=512, base_lr=3e-4)
    assert cfg.peak_lr == pytest.approx(peak)


def test_drop_path_reaches_the_student():
    cfg = DistillConfig.from_params(drop_path="0.1")
    student = wb.distillation.train.make_student(cfg)
    rates = [getattr(b.drop_path1, "drop_prob", 0.0) for b in student.vit.blocks]  # block 0: rate 0, no module
    assert rates[0] == 0 and rates[-1] == pytest.approx(0.1) and rates == sorted(rates)  # timm's linear rule
    with pytest.raises(wb.core.params.ParameterError, match=r"drop_path must be in \[0, 1\)"):
        DistillConfig.from_params(drop_path=1)


def test_recipe_parameters_are_checked():
    for params, message in [({"betas": "0.9"}, "betas must be two numbers"),
                            ({"betas": "0.9,1.5"}, "betas must be two numbers"),
                            ({"augment": "strong"}, "augment must be one of"),
                            ({"student_init": "/nowhere/unic.pth"}, "student_init '/nowhere/unic.pth' is not"),
                            ({"teacher_weights": "dino_vitb16=/x.pth"},
                             r"teacher_weights names \['dino_vitb16'\], which"),
                            ({"teachers": "dino_vitb16", "teacher_weights": "dino_vitb16=/x.pth"},
                             "does not exist"),
                            ({"preprocessing": "world_shape=dino2"}, "unknown recipe 'dino2'")]:
        with pytest.raises(wb.core.params.ParameterError, match=message):
            DistillConfig.from_params(**params)


def test_shipped_recipe_is_the_papers_imagenet_configuration():
    """recipes/unic_vitb16_in1k.yaml against naver/unic main_unic.py's defaults (a run file with its paths)."""
    from pathlib import Path

    import yaml

    doc = yaml.safe_load((Path(__file__).parents[1] / "recipes" / "unic_vitb16_in1k.yaml").read_text())
    assert doc["teachers"] == ["dino_vitb16", "deit3_vitb16", "ibot_vitb16", "dbot_vitb16"]
    paper = {"student": "vit_base_patch16_224", "image_size": 224, "epochs": 200, "batch_size": 512,
             "base_lr": 3e-4, "min_lr": 1e-6, "warmup_epochs": 10, "betas": [0.9, 0.99], "weight_decay": 0.03,
             "grad_clip": 0.0, "drop_path": 0.1, "teacher_drop_prob": 0.5, "augment": "unic", "normalize": "imagenet",
             "ladder": "all", "standardize": "running"}
    assert {k: doc[k] for k in paper} == paper
    assert set(doc["teacher_weights"]) == {"ibot_vitb16", "dbot_vitb16"}  # the two without weights in timm's hub
    unknown = set(doc) - set(DistillConfig.parameter_help()) - {"out_dir"}
    assert not unknown, unknown


# ----------------------------------------------------------------------------- the student, shared as timm shares

@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    cfg = DistillConfig(student="vit_tiny_patch16_224", image_size=64, normalize="clip")
    student = Student(cfg.student, img_size=64, preprocessing=cfg.student_preprocessing).eval()
    student.export_timm(folder / "timm")
    return student, folder / "timm"


def test_exported_student_loads_with_plain_timm(exported):
    """``local-dir:`` reads the exported config.json (architecture, arguments, preprocessing); the file overlay
    takes the architecture's name and arguments, and the exported preprocessing with the file."""
    student, folder = exported
    x = torch.rand(2, 3, 64, 64)
    exported_cfg = json.loads((folder / "config.json").read_text())["pretrained_cfg"]
    overlay = {**exported_cfg, "file": str(folder / "model.safetensors")}
    for model in (timm.create_model(f"local-dir:{folder}", pretrained=True),
                  timm.create_model("vit_tiny_patch16_224", pretrained=True, img_size=64, num_classes=0,
                                    pretrained_cfg_overlay=overlay)):
        model.eval()
        config = timm.data.resolve_data_config({}, model=model)
        mean, std = torch.tensor(config["mean"]).view(1, 3, 1, 1), torch.tensor(config["std"]).view(1, 3, 1, 1)
        tokens = model.forward_features((x - mean) / std)
        cls, patch = student.forward_features(x)
        assert torch.equal(tokens[:, 0], cls) and torch.equal(tokens[:, 1:], patch)


def test_exported_student_carries_its_preprocessing(exported):
    """timm's own eval transform from the exported config is the student's, pixel for pixel, on a real photo."""
    student, folder = exported
    model = timm.create_model(f"local-dir:{folder}", pretrained=True)
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")) as img:
        theirs = transform(img.convert("RGB"))
        ours = student.preprocess(student.preprocessing.image_transform()(img.convert("RGB")).unsqueeze(0))[0]
    assert torch.allclose(theirs, ours, atol=1e-6)
    assert student.preprocessing.mean == pytest.approx(wb.models.preprocess.CLIP_MEAN)
    assert math.isclose(model.pretrained_cfg["crop_pct"], 1.0)
