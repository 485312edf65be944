"""Checkpoints as their authors ship them, and each release's evaluation preprocessing.

Each test writes random weights under the names and in the file layout of the release's own code (read at
the source: facebookresearch/dino, bytedance/ibot, liuxingbin/dbot, facebookresearch/deit, naver/unic), loads
the file the way a user does, and compares the features with ``reference_forward``: a plain-torch forward
pass written from the releases' model code, which shares nothing with timm or the workbench.
"""
import argparse
import dataclasses
import json

import matplotlib.cbook
import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file
from torchvision import transforms

import workbench as wb
from workbench.models import check_teacher_options, load_student, zoo
from workbench.models.preprocess import (
    CLIP_MEAN,
    CLIP_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    PREPROCESSING,
    timm_preprocessing,
)
from workbench.models.weights import SkippedValue, load_weights

DIM, DEPTH, HEADS, PATCH, SIZE = 48, 2, 3, 8, 32  # a tiny ViT of the releases' layout: 16 patches of 8x8
GRID = SIZE // PATCH


# ----------------------------------------------------------------------------- the releases' weights and forward

def official_vit(gen, *, layer_scale=False, cls_in_pos=True, final="norm", dim=DIM, depth=DEPTH, patch=PATCH,
                 block_prefix=lambda i: f"blocks.{i}.") -> dict[str, torch.Tensor]:
    """A ViT's state dict under its release's names: DINO's, iBOT's and dBOT's (timm 0.3) ``blocks.i.*``,
    DeiT III's ``gamma_1``/``gamma_2`` and a position embedding without the class token (``cls_in_pos=False``),
    dBOT's ``fc_norm`` instead of ``norm`` (``final="fc_norm"``), DINOv2's chunked blocks (``block_prefix``)."""
    def rand(*shape, scale=1.4 / dim**0.5):  # 0.2 at width 48: features of order 1 whatever the width
        return torch.randn(*shape, generator=gen) * scale

    def norm(name):
        return {f"{name}.weight": 1 + rand(dim), f"{name}.bias": rand(dim)}

    n = GRID * GRID + (1 if cls_in_pos else 0)
    state = {"cls_token": rand(1, 1, dim), "pos_embed": rand(1, n, dim),
             "patch_embed.proj.weight": rand(dim, 3, patch, patch, scale=0.05), "patch_embed.proj.bias": rand(dim)}
    for i in range(depth):
        p = block_prefix(i)
        state |= {f"{p}{k}": v for k, v in norm("norm1").items()} | {f"{p}{k}": v for k, v in norm("norm2").items()}
        state |= {f"{p}attn.qkv.weight": rand(3 * dim, dim), f"{p}attn.qkv.bias": rand(3 * dim),
                  f"{p}attn.proj.weight": rand(dim, dim), f"{p}attn.proj.bias": rand(dim),
                  f"{p}mlp.fc1.weight": rand(4 * dim, dim), f"{p}mlp.fc1.bias": rand(4 * dim),
                  f"{p}mlp.fc2.weight": rand(dim, 4 * dim), f"{p}mlp.fc2.bias": rand(dim)}
        if layer_scale:
            state |= {f"{p}gamma_1": 1 + rand(dim), f"{p}gamma_2": 1 + rand(dim)}
    return state | norm(final)


def reference_forward(state, x, *, heads=HEADS, depth=DEPTH, layer_scale=False, cls_in_pos=True, pool="cls",
                      block_prefix=lambda i: f"blocks.{i}.", eps=1e-6):
    """(CLS feature, patch tokens) as the releases compute them: pre-norm blocks, the final norm and its CLS
    token (DINO, iBOT, DeiT III, UNIC), or dBOT's fine-tuned global pool (the patch mean through ``fc_norm``)."""
    b, dim = x.shape[0], state["cls_token"].shape[-1]
    w = state["patch_embed.proj.weight"]
    tokens = F.conv2d(x, w, state["patch_embed.proj.bias"], stride=w.shape[-1]).flatten(2).transpose(1, 2)
    cls = state["cls_token"].expand(b, -1, -1)
    if cls_in_pos:
        h = torch.cat([cls, tokens], 1) + state["pos_embed"]
    else:  # DeiT III: the position embedding is added to the patches, then the class token joins
        h = torch.cat([cls, tokens + state["pos_embed"]], 1)
    n = h.shape[1]
    for i in range(depth):
        p = block_prefix(i)
        y = F.layer_norm(h, (dim,), state[f"{p}norm1.weight"], state[f"{p}norm1.bias"], eps)
        q, k, v = F.linear(y, state[f"{p}attn.qkv.weight"], state[f"{p}attn.qkv.bias"]).reshape(
            b, n, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * (dim // heads) ** -0.5).softmax(-1)
        y = F.linear((attn @ v).transpose(1, 2).reshape(b, n, dim), state[f"{p}attn.proj.weight"],
                     state[f"{p}attn.proj.bias"])
        h = h + (state[f"{p}gamma_1"] * y if layer_scale else y)
        y = F.layer_norm(h, (dim,), state[f"{p}norm2.weight"], state[f"{p}norm2.bias"], eps)
        y = F.linear(F.gelu(F.linear(y, state[f"{p}mlp.fc1.weight"], state[f"{p}mlp.fc1.bias"])),
                     state[f"{p}mlp.fc2.weight"], state[f"{p}mlp.fc2.bias"])
        h = h + (state[f"{p}gamma_2"] * y if layer_scale else y)
    if pool == "avg":  # dBOT fine-tuned: x[:, 1:].mean(1) through fc_norm; no final norm
        return F.layer_norm(h[:, 1:].mean(1), (dim,), state["fc_norm.weight"], state["fc_norm.bias"], eps), h[:, 1:]
    h = F.layer_norm(h, (dim,), state["norm.weight"], state["norm.bias"], eps)
    return h[:, 0], h[:, 1:]


def tiny_teacher(name, checkpoint):
    """The zoo entry ``name`` (its release's format and preprocessing) at the tiny size, loaded from a file."""
    spec = zoo.SPECS[name]
    small = dataclasses.replace(spec, model_kwargs={**spec.model_kwargs, "img_size": SIZE, "patch_size": PATCH,
                                                    "embed_dim": DIM, "depth": DEPTH, "num_heads": HEADS})
    return zoo.build(small, checkpoint=str(checkpoint), preprocessing=PREPROCESSING[spec.preprocessing].at_size(SIZE))


def assert_same_features(teacher, state, **reference):
    images = torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    feats = teacher(images)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    cls, patch = reference_forward(state, (images - mean) / std, **reference)
    assert feats.grid == (GRID, GRID)
    assert (feats.cls - cls).abs().max() < 1e-5 and (feats.patch - patch).abs().max() < 1e-5


def training_args(**extra):
    """A training script's ``args`` (argparse.Namespace), as the checkpoints store them."""
    return argparse.Namespace(arch="vit_base", patch_size=16, epochs=100, lr=5e-4, **extra)


def projection_head(prefix, gen, out=64):
    """A DINO/iBOT projection head (MLP, weight-normalised last layer): in the file, never in the encoder."""
    return {f"{prefix}mlp.0.weight": torch.randn(32, DIM, generator=gen), f"{prefix}mlp.0.bias": torch.zeros(32),
            f"{prefix}last_layer.weight_g": torch.ones(out, 1), f"{prefix}last_layer.weight_v": torch.randn(out, 32)}


# ----------------------------------------------------------------------------- one test per release

@pytest.mark.parametrize("layout", ["backbone", "full"])
def test_dino(tmp_path, layout):
    gen = torch.Generator().manual_seed(0)
    state = official_vit(gen)
    path = tmp_path / ("dino_vitbase16_pretrain.pth" if layout == "backbone" else "checkpoint.pth")
    if layout == "backbone":  # the released backbone: the bare state dict
        torch.save(state, path)
    else:  # main_dino.py: the student in DistributedDataParallel, the teacher not (no batch norm in a ViT)
        student = {f"module.backbone.{k}": v + 1 for k, v in state.items()} | projection_head("module.head.", gen)
        teacher = {f"backbone.{k}": v for k, v in state.items()} | projection_head("head.", gen)
        torch.save({"student": student, "teacher": teacher, "optimizer": {"state": {}, "param_groups": []},
                    "epoch": 100, "args": training_args(), "dino_loss": {"center": torch.zeros(1, 64)}}, path)
    assert_same_features(tiny_teacher("dino_vitb16", path), state)


@pytest.mark.parametrize("layout", ["teacher", "full"])
def test_ibot(tmp_path, layout):
    gen = torch.Generator().manual_seed(0)
    state = official_vit(gen)
    if layout == "teacher":  # the released checkpoint_teacher.pth: the teacher backbone under "state_dict"
        path = tmp_path / "checkpoint_teacher.pth"
        torch.save({"state_dict": state}, path)
    else:  # main_ibot.py: both networks with their iBOT heads; the student's masked-token embedding
        path = tmp_path / "checkpoint.pth"
        student = {f"module.backbone.{k}": v for k, v in state.items()} | {
            "module.backbone.masked_embed": torch.zeros(1, DIM)} | projection_head("module.head.", gen)
        teacher = {f"backbone.{k}": v for k, v in state.items()} | projection_head("head.", gen) | {
            "head.last_layer2.weight_g": torch.ones(64, 1), "head.last_layer2.weight_v": torch.randn(64, 32)}
        torch.save({"student": student, "teacher": teacher, "optimizer": {"state": {}, "param_groups": []},
                    "epoch": 100, "args": training_args(), "ibot_loss": {"center": torch.zeros(1, 64)}}, path)
    assert_same_features(tiny_teacher("ibot_vitb16", path), state)


def test_dbot_finetuned(tmp_path):
    """util/misc.py save_model: "model" holds models_vit.VisionTransformer(global_pool=True): fc_norm, no norm."""
    gen = torch.Generator().manual_seed(0)
    state = official_vit(gen, final="fc_norm")
    path = tmp_path / "dbot_base_finetune.pth"
    torch.save({"model": state | {"head.weight": torch.randn(1000, DIM, generator=gen), "head.bias": torch.zeros(1000)},
                "optimizer": {"state": {}, "param_groups": []}, "epoch": 99, "scaler": {"scale": 65536.0},
                "args": training_args(global_pool=True)}, path)
    assert_same_features(tiny_teacher("dbot_vitb16", path), state, pool="avg")


def test_deit3(tmp_path):
    """main.py: "model" holds models_v2.vit_models (Layer_scale_init_Block: gamma_1, gamma_2; the position
    embedding of the patches alone), beside "model_ema", the optimizer and "args"."""
    gen = torch.Generator().manual_seed(0)
    state = official_vit(gen, layer_scale=True, cls_in_pos=False)
    path = tmp_path / "deit_3_base_224_1k.pth"
    head = {"head.weight": torch.randn(1000, DIM, generator=gen), "head.bias": torch.zeros(1000)}
    torch.save({"model": state | head, "model_ema": {k: v * 0 for k, v in state.items()},
                "optimizer": {"state": {}, "param_groups": []}, "epoch": 399, "args": training_args()}, path)
    assert_same_features(tiny_teacher("deit3_vitb16", path), state, layer_scale=True, cls_in_pos=False)


def unic_checkpoint(path, gen, teachers=("dino_vitbase_16", "deit3_vitbase_16")):
    """main_unic.py: "model" is UNIC(encoder, lp) in DistributedDataParallel: module.encoder.* (DINOv2's ViT, its
    blocks in one chunk, a mask token) and module.lp.* (the ladder); teacher_ft_stats; args, whose lr and
    statistics schedules are numpy arrays. The encoder: a ViT-S/8 (timm's vit_small_patch8_224) at 32 px."""
    chunked = official_vit(gen, dim=384, depth=12, block_prefix=lambda i: f"blocks.0.{i}.")
    model = {f"module.encoder.{k}": v for k, v in chunked.items()} | {"module.encoder.mask_token": torch.zeros(1, 384)}
    for t in teachers:
        for kind in ("cls", "patch"):
            model |= {f"module.lp.heads.{t}.{kind}.11.layers.0.weight": torch.randn(1536, 384, generator=gen),
                      f"module.lp.heads.{t}.{kind}.11.layers.0.bias": torch.zeros(1536)}
    stats = {t: {"cls": {"mean": torch.zeros(1, 768), "std": torch.ones(1, 768)},
                 "patch": {"mean": torch.zeros(1, 1, 768), "std": torch.ones(1, 1, 768)}} for t in teachers}
    args = argparse.Namespace(arch="vit_small", patch_size=8, image_size=SIZE, drop_path_rate=0.1,
                              teachers=",".join(teachers), lr_schedule=np.linspace(0, 3e-4, 50),
                              tnorm_ema_schedule=np.linspace(1, 1e-3, 50))
    torch.save({"model": model, "teacher_ft_stats": stats, "optimizer": {"state": {}, "param_groups": []},
                "epoch": 200, "args": args}, path)
    return chunked


def test_unic_release_is_read_safely_and_loads_as_a_student(tmp_path):
    gen = torch.Generator().manual_seed(0)
    path = tmp_path / "unic.pth"
    state = unic_checkpoint(path, gen)
    with pytest.raises(Exception, match="weights only|WeightsUnpickler|numpy"):  # torch's safe loader refuses it
        torch.load(path, weights_only=True)
    checkpoint = load_weights(path)
    assert isinstance(checkpoint["args"].lr_schedule, SkippedValue) and checkpoint["args"].arch == "vit_small"

    student = load_student(path)
    assert student.name == "vit_small_patch8_224" and student.img_size == (SIZE, SIZE)
    assert student.preprocessing == PREPROCESSING["unic"].at_size(SIZE)
    images = torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    cls, patch = reference_forward(state, (images - mean) / std, heads=6, depth=12,
                                   block_prefix=lambda i: f"blocks.0.{i}.")
    got_cls, got_patch = student.forward_features(images)
    assert (got_cls - cls).abs().max() < 1e-5 and (got_patch - patch).abs().max() < 1e-5

    # the same file as 04's model to probe (name=file) and as 05's student_init
    [(label, role, source)] = wb.transfer.parse_models([f"unic_s8={path}"])
    assert (label, role, source) == ("unic_s8", "student", str(path))
    cfg = wb.TaskDistillConfig.from_params(student="vit_small_patch8_224", student_init=str(path))
    task_student = wb.distillation.task.train.make_student(cfg, n_classes=3)
    assert torch.equal(task_student.student.embed(images), student.embed(images))


def test_unic_release_continues_distilling(tmp_path):
    """student_init: the released encoder is the start of a new distillation (its ladder is not reused)."""
    path = tmp_path / "unic.pth"
    unic_checkpoint(path, torch.Generator().manual_seed(0))
    cfg = wb.DistillConfig.from_params(student="vit_small_patch8_224", image_size=SIZE, student_init=str(path),
                                       teachers="world_shape")
    student = wb.distillation.train.make_student(cfg)
    x = torch.rand(2, 3, SIZE, SIZE)
    assert torch.equal(student.forward_features(x)[0], load_student(path).forward_features(x)[0])
    wrong = wb.DistillConfig.from_params(student="vit_small_patch16_224", image_size=SIZE, student_init=str(path),
                                         teachers="world_shape")
    with pytest.raises(wb.core.params.ParameterError, match="set student vit_small_patch8_224"):
        wb.distillation.train.make_student(wrong)


def test_unic_release_as_a_teacher(tmp_path):
    path = tmp_path / "unic.pth"
    gen = torch.Generator().manual_seed(0)
    state = official_vit(gen, block_prefix=lambda i: f"blocks.0.{i}.")
    torch.save({"model": {f"module.encoder.{k}": v for k, v in state.items()},
                "args": argparse.Namespace(lr_schedule=np.zeros(3))}, path)
    assert_same_features(tiny_teacher("unic_vitb16", path), state, block_prefix=lambda i: f"blocks.0.{i}.")


@pytest.mark.slow
def test_official_deit3_file_through_create_teacher(tmp_path):
    """The issue's own failure, at full size: create_teacher("deit3_vitb16", checkpoint=<official file>)."""
    gen = torch.Generator().manual_seed(0)
    state = official_vit(gen, layer_scale=True, cls_in_pos=False, dim=768, depth=12, patch=16)
    state["pos_embed"] = torch.randn(1, 196, 768, generator=gen) * 0.02
    path = tmp_path / "deit_3_base_224_1k.pth"
    torch.save({"model": state, "args": training_args()}, path)
    teacher = wb.create_teacher("deit3_vitb16", checkpoint=str(path))
    images = torch.rand(1, 3, 224, 224)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    cls, patch = reference_forward(state, (images - mean) / std, heads=12, depth=12, layer_scale=True,
                                   cls_in_pos=False)
    feats = teacher(images)
    assert (feats.cls - cls).abs().max() < 1e-5 and (feats.patch - patch).abs().max() < 1e-5


# ----------------------------------------------------------------------------- evaluation preprocessing

BICUBIC = transforms.InterpolationMode.BICUBIC  # the releases' interpolation=3 (PIL's BICUBIC)


def release_transform(resize, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    return transforms.Compose([transforms.Resize(resize, interpolation=BICUBIC), transforms.CenterCrop(224),
                               transforms.ToTensor(), transforms.Normalize(mean, std)])


RELEASE_EVAL = {  # each release's evaluation transform, as its code writes it
    "dino": release_transform(256),    # dino/eval_linear.py: Resize(256, interpolation=3), CenterCrop(224)
    "ibot": release_transform(256),    # ibot/evaluation/eval_linear.py: the same as DINO
    "dbot": release_transform(256),    # dbot/util/datasets.py: crop_pct 224/256, size int(224 / crop_pct)
    "deit3": release_transform(224),   # deit/datasets.py with --eval-crop-ratio 1.0: int(224 / 1.0)
    "deit": release_transform(256),    # deit/datasets.py: int(224 / 0.875) = 256
    "dinov2": release_transform(256),  # dinov2/data/transforms.py: make_classification_eval_transform
    "mae": release_transform(256),     # mae/main_linprobe.py: Resize(256, interpolation=3), CenterCrop(224)
    "clip": release_transform(224, CLIP_MEAN, CLIP_STD),  # clip/clip.py: _transform(224)
    "unic": release_transform(224),    # unic/eval_transfer: Resize(224, bicubic), CenterCrop(224)
}


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    """A real, non-square photo (matplotlib's sample data: 512 x 600) in an ImageFolder."""
    root = tmp_path_factory.mktemp("photo")
    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")) as img:
        assert img.size[0] != img.size[1]
        for split in ("train", "val"):
            (root / split / "person").mkdir(parents=True)
            img.convert("RGB").save(root / split / "person" / "hopper.png")
    return root


@pytest.mark.parametrize("name", sorted(zoo.SPECS))
def test_zoo_preprocessing_is_the_releases_eval_transform(name, photo_folder):
    """Through the path probing takes: the teacher's Encoder decodes the file, the teacher normalises."""
    spec = zoo.SPECS[name]
    teacher = wb.create_teacher(name, pretrained=False)
    data = wb.Encoder(name, lambda x: teacher(x).cls, teacher).decoded(wb.load_data(str(photo_folder)))
    ours = teacher.preprocess(data.test[0][0].unsqueeze(0))[0]
    with Image.open(photo_folder / "val" / "person" / "hopper.png") as img:
        theirs = RELEASE_EVAL[spec.preprocessing](img.convert("RGB"))
    assert ours.shape == theirs.shape == (3, 224, 224)
    assert torch.equal(ours, theirs), (ours - theirs).abs().max()


def test_preprocessing_is_overridable_per_teacher(photo_folder):
    teacher = wb.create_teacher("dino_vitb16", pretrained=False, preprocessing="deit3")
    data = wb.Encoder("dino", teacher.encode, teacher).decoded(wb.load_data(str(photo_folder)))
    with Image.open(photo_folder / "val" / "person" / "hopper.png") as img:
        theirs = RELEASE_EVAL["deit3"](img.convert("RGB"))
    assert torch.equal(teacher.preprocess(data.test[0][0].unsqueeze(0))[0], theirs)
    with pytest.raises(wb.core.params.ParameterError, match="unknown recipe 'dino2'"):
        wb.ProbeConfig.from_params(teachers="dino_vitb16", preprocessing="dino_vitb16=dino2")


# ----------------------------------------------------------------------------- a release file under a timm name

@pytest.fixture
def tiny_timm(monkeypatch):
    """Every timm model built DIM wide and DEPTH deep (its name's patch and input size kept): seconds, not minutes."""
    create = timm.create_model
    monkeypatch.setattr(timm, "create_model",
                        lambda name, **kw: create(name, **{**kw, "embed_dim": DIM, "depth": DEPTH, "num_heads": HEADS}))


def vit_224(gen, **kwargs):
    """``official_vit`` for a /16 model at 224 px (a 14 x 14 grid): the names' own size."""
    state = official_vit(gen, patch=16, **kwargs)
    positions = 196 + (1 if kwargs.get("cls_in_pos", True) else 0)
    state["pos_embed"] = torch.randn(1, positions, DIM, generator=gen) * 0.2
    return state


def save_release(path, release, gen):
    """A file in the layout of ``release`` whose encoder is a tiny ViT at 224 px; returns the encoder's weights."""
    if release == "deit3":
        state = vit_224(gen, layer_scale=True, cls_in_pos=False)
        torch.save({"model": state, "model_ema": state, "epoch": 399, "args": training_args()}, path)
        return state
    state = vit_224(gen)
    if release == "unic":
        torch.save({"model": {f"module.encoder.{k}": v for k, v in state.items()}, "epoch": 200}, path)
    elif release == "dino_backbone":  # dino_vitbase16_pretrain.pth: the bare backbone
        torch.save(state, path)
    else:  # the training checkpoint of main_dino.py / main_ibot.py
        teacher = {f"backbone.{k}": v for k, v in state.items()} | projection_head("head.", gen)
        student = {f"module.{k}": v for k, v in teacher.items()}
        if release == "ibot":
            student["module.backbone.masked_embed"] = torch.zeros(1, DIM)
        torch.save({"student": student, "teacher": teacher, "epoch": 100, "args": training_args(),
                    f"{release}_loss": {"center": torch.zeros(1, 64)}}, path)
    return state


@pytest.mark.parametrize("release, zoo_name, timm_name", [
    ("dino", "dino_vitb16", "vit_base_patch16_224"), ("dino", "dino_vits16", "vit_small_patch16_224.augreg_in21k"),
    ("ibot", "ibot_vitb16", "vit_base_patch16_224"), ("deit3", "deit3_vitb16", "deit3_base_patch16_224"),
    ("unic", "unic_vitb16", "vit_base_patch16_224")])
def test_release_file_under_a_timm_name_is_read_and_fed_as_its_release(tmp_path, tiny_timm, release, zoo_name,
                                                                       timm_name):
    """The issue: DINO's file under vit_base_patch16_224 was fed timm's mean/std 0.5 and a 248 px resize."""
    gen = torch.Generator().manual_seed(0)
    path = tmp_path / "checkpoint.pth"
    state = save_release(path, release, gen)
    said = []
    by_timm = wb.create_teacher(timm_name, checkpoint=str(path), log=said.append)
    by_zoo = wb.create_teacher(zoo_name, checkpoint=str(path))
    recipe = PREPROCESSING[zoo.SPECS[zoo_name].preprocessing]
    assert by_timm.preprocessing == by_zoo.preprocessing == recipe
    assert by_timm.preprocessing != timm_preprocessing(timm.models.get_pretrained_cfg(timm_name).to_dict())
    assert len(said) == 1 and repr(zoo_name) in said[0] and repr(timm_name) in said[0]
    images = torch.rand(2, 3, 160, 200, generator=torch.Generator().manual_seed(1))  # resized by each to 224
    assert torch.equal(by_timm.preprocess(images), by_zoo.preprocess(images))
    a, b = by_timm(images), by_zoo(images)
    assert torch.equal(a.cls, b.cls) and torch.equal(a.patch, b.patch)
    deit3 = {"layer_scale": True, "cls_in_pos": False} if release == "deit3" else {}
    cls, _ = reference_forward(state, by_zoo.preprocess(images), **deit3)
    assert (a.cls - cls).abs().max() < 1e-5


def test_unrecognised_file_under_a_timm_name_must_be_told_its_preprocessing(tmp_path, tiny_timm):
    """DINO's released backbone is a bare state dict, as a headless timm save is: nothing in it says whose."""
    gen = torch.Generator().manual_seed(0)
    path = tmp_path / "dino_vitbase16_pretrain.pth"
    state = save_release(path, "dino_backbone", gen)
    message = (r"dino_vitbase16_pretrain\.pth.*'vit_base_patch16_224'.*"
               r"create_teacher\('dino_vitb16', checkpoint=\.\.\.\).*preprocessing=<recipe>.*'deit3', 'dino'")
    with pytest.raises(wb.core.params.ParameterError, match=message):
        wb.create_teacher("vit_base_patch16_224", checkpoint=str(path))
    with pytest.raises(wb.core.params.ParameterError, match=message):  # up front, before a run claims its out_dir
        wb.ProbeConfig.from_params(teachers="vit_base_patch16_224", checkpoints=f"vit_base_patch16_224={path}")

    teacher = wb.create_teacher("vit_base_patch16_224", checkpoint=str(path), preprocessing="dino")
    assert teacher.preprocessing == PREPROCESSING["dino"]
    wb.ProbeConfig.from_params(teachers="vit_base_patch16_224", checkpoints=f"vit_base_patch16_224={path}",
                               preprocessing="vit_base_patch16_224=dino")
    images = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    cls, patch = reference_forward(state, teacher.preprocess(images))
    assert (teacher(images).cls - cls).abs().max() < 1e-5

    other = tmp_path / "dino_deitsmall8_pretrain.pth"  # a release recognised, but no zoo entry of its architecture
    save_release(other, "dino", gen)
    with pytest.raises(wb.core.params.ParameterError, match=r"DINO's training checkpoint.*no zoo entry.*"
                                                            r"'vit_base_patch8_224'.*'dino_vits16'.*preprocessing="):
        wb.create_teacher("vit_base_patch8_224", checkpoint=str(other))


def test_timm_files_keep_timm_preprocessing(tmp_path, tiny_timm):
    """timm's own weights: a model saved whole (its classifier, as its config says), a headless save under a
    headless config's tag, timm's train.py checkpoint, a hub file beside its config.json. A headless file under a
    name whose config has a classifier is not: it is refused, by create_teacher and by the config check alike."""
    name = "vit_base_patch16_224"
    whole = timm.create_model(name, pretrained=False).state_dict()
    headless = {k: v for k, v in whole.items() if not k.startswith("head.")}
    hub = tmp_path / "models--timm--vit_base_patch16_224.dino" / "snapshots" / "0123"
    hub.mkdir(parents=True)
    cfg = timm.models.get_pretrained_cfg(f"{name}.dino").to_dict()
    (hub / "config.json").write_text(json.dumps({"architecture": name, "num_classes": 0, "pretrained_cfg": cfg}))
    default = timm.models.get_pretrained_cfg(name).to_dict()  # its augreg2_in21k_ft_in1k tag: mean 0.5, 248 px
    cases = [  # (file, contents, the name it is given under, the preprocessing expected; None: refused)
        ("whole.safetensors", whole, name, default),
        ("whole.pth", {f"module.{k}": v for k, v in whole.items()}, name, default),
        ("headless.pth", headless, f"{name}.dino", cfg),
        ("last.pth.tar", {"epoch": 3, "arch": name, "state_dict": whole, "version": 2}, name, default),
        (str(hub / "model.safetensors"), headless, name, cfg),
        ("headless.safetensors", headless, name, None),
        ("augreg.pth", whole, f"{name}.dino", None),
    ]
    for filename, contents, under, expected in cases:
        path = tmp_path / filename
        if path.suffix == ".safetensors":
            save_file({k: v.contiguous() for k, v in contents.items()}, str(path))
        else:
            torch.save(contents, path)
        if expected is None:
            with pytest.raises(wb.core.params.ParameterError, match="preprocessing=<recipe>"):
                wb.create_teacher(under, checkpoint=str(path))
            with pytest.raises(wb.core.params.ParameterError, match="preprocessing=<recipe>"):
                check_teacher_options([under], {under: str(path)}, {})
            continue
        check_teacher_options([under], {under: str(path)}, {})
        teacher = wb.create_teacher(under, checkpoint=str(path))
        assert teacher.preprocessing == timm_preprocessing(expected), filename


def test_task_distillation_takes_a_release_file_as_its_teacher(tmp_path, monkeypatch):
    """05 with DINO's own checkpoint file as its teacher, built the way 05 builds its teachers (``teacher_weights``
    through ``build_teachers``), the zoo entry at the tiny size: the probed teacher is that file's, and the KD
    student learns from it."""
    from workbench.distillation.task import TaskDistillConfig, task_distill
    from workbench.models import _registry

    gen = torch.Generator().manual_seed(0)
    state = official_vit(gen)
    path = tmp_path / "checkpoint.pth"
    teacher = {f"backbone.{k}": v for k, v in state.items()} | projection_head("head.", gen)
    torch.save({"student": {f"module.backbone.{k}": v for k, v in state.items()}, "teacher": teacher,
                "epoch": 100, "args": training_args(), "dino_loss": {"center": torch.zeros(1, 64)}}, path)
    monkeypatch.setitem(_registry._builders, "dino_vitb16",
                        lambda pretrained=True, checkpoint=None, preprocessing=None: tiny_teacher("dino_vitb16",
                                                                                                  checkpoint))
    cfg = TaskDistillConfig.from_params(teachers="dino_vitb16", teacher_weights=f"dino_vitb16={path}",
                                        student="wb_vit_tiny_patch8_32", labels_per_class=3, student_steps=4,
                                        batch_size=12, repeats=1, students="labels,probed", workers=1,
                                        n_train=120, n_test=40)
    teachers = wb.build_teachers(cfg.teachers, cfg.teacher_weights, cfg.preprocessing)
    assert_same_features(teachers["dino_vitb16"], state)  # the file's weights, fed as DINO feeds them
    run = task_distill(cfg, wb.load_data("world", n_train=120, n_test=40), teachers, out_dir=tmp_path / "run",
                       log=lambda *_: None)
    summary = run.summary()
    assert summary["teacher_per_seed"] == ["dino_vitb16"] and set(summary["teachers"]) == {"probed dino_vitb16"}
    assert set(summary["students"]) == {"labels", "probed"}
