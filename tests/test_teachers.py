import pytest
import timm
import torch
from safetensors.torch import save_file

import workbench as wb
from workbench.models import list_teachers, specialists


def test_unknown_teacher_lists_the_known_ones():
    with pytest.raises(ValueError, match="Registered teachers: .*dino_vitb16.*world_colour, world_shape"):
        wb.create_teacher("dino_nonexistent")


def test_offline_teachers_are_listed():
    assert {"world_colour", "world_shape"} <= set(list_teachers())


def test_timm_teacher_features_and_checkpoint_round_trip(tmp_path):
    """A timm model saved whole (its classifier: what its timm config describes) keeps timm's preprocessing."""
    name = "vit_tiny_patch16_224"
    reference = timm.create_model(name, pretrained=False).eval()
    path = tmp_path / "vit_tiny.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    teacher = wb.create_teacher(name, checkpoint=str(path))
    assert all(not p.requires_grad for p in teacher.parameters())
    images = torch.rand(2, 3, 64, 64)
    feats = teacher(images)
    assert feats.cls.shape == (2, 192) and feats.patch.shape == (2, 196, 192) and feats.grid == (14, 14)
    x = teacher.preprocess(images)
    expected = reference.forward_features(x)
    assert torch.allclose(feats.cls, expected[:, 0], atol=1e-5)
    assert torch.allclose(feats.patch, expected[:, 1:], atol=1e-5)
    assert teacher.preprocessing.mean == tuple(reference.pretrained_cfg["mean"])


def test_missing_hub_weights_fail_at_once_naming_the_teacher(tmp_path, monkeypatch):
    """The local cache is looked up first: no network retries before the message (it used to take ~45 s)."""
    import time

    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    t0 = time.time()
    with pytest.raises(FileNotFoundError, match=r"vit_tiny_patch16_224.*not in the local Hugging Face cache.*"
                                                r"hf download timm/vit_tiny_patch16_224"):
        wb.create_teacher("vit_tiny_patch16_224", pretrained=True)
    assert time.time() - t0 < 10


def test_hub_weights_load_from_the_local_cache(tmp_path, monkeypatch):
    """A Hugging Face cache laid out as huggingface_hub writes it (models--org--name/snapshots/<rev>, refs/main)."""
    import huggingface_hub.constants

    name = "vit_tiny_patch16_224"
    reference = timm.create_model(name, pretrained=False, num_classes=0).eval()
    hub_id = reference.pretrained_cfg["hf_hub_id"]
    repo = tmp_path / "hub" / f"models--{hub_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123456789abcdef")
    (repo / "snapshots" / "0123456789abcdef").mkdir(parents=True)
    head = {"head.weight": torch.zeros(1000, 192), "head.bias": torch.zeros(1000)}  # hub files keep their head
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()} | head,
              str(repo / "snapshots" / "0123456789abcdef" / "model.safetensors"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    teacher = wb.create_teacher(name, pretrained=True)
    images = torch.rand(2, 3, 224, 224)
    assert torch.equal(teacher(images).cls, reference.forward_features(teacher.preprocess(images))[:, 0])
    assert teacher.preprocessing.mean == tuple(reference.pretrained_cfg["mean"])  # timm's config for timm names


def test_missing_checkpoint_file_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        wb.create_teacher("vit_tiny_patch16_224", checkpoint=str(tmp_path / "none.safetensors"))


def test_specialists_are_cached_by_config(monkeypatch):
    cfg = specialists.SpecialistConfig(arch="shape", task="shape", width=16, n_train=64, epochs=1, batch_size=32)
    first = specialists.load_or_train("tiny_shape", cfg, log=lambda *_: None)

    def no_training(*args, **kwargs):
        raise AssertionError("a cached teacher must not be trained again")

    monkeypatch.setattr(specialists, "train_specialist", no_training)
    second = specialists.load_or_train("tiny_shape", cfg, log=lambda *_: None)
    for (k, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), k
    other = specialists.SpecialistConfig(**{**cfg.__dict__, "seed": 1})
    with pytest.raises(AssertionError, match="cached teacher"):
        specialists.load_or_train("tiny_shape", other, log=lambda *_: None)


def test_specialists_are_blind_by_construction():
    shape = specialists.ShapeSpecialist(16).eval()
    colour = specialists.ColourSpecialist(16).eval()
    gray = torch.full((1, 3, 32, 32), 0.5)
    red, blue = gray.clone(), gray.clone()
    red[:, :, 8:24, 8:24] = torch.tensor([0.9, 0.1, 0.1]).view(1, 3, 1, 1)
    blue[:, :, 8:24, 8:24] = torch.tensor([0.1, 0.1, 0.9]).view(1, 3, 1, 1)
    # same outline, different colour: the shape specialist sees (nearly) the same input
    assert torch.allclose(shape.preprocess(red), shape.preprocess(blue), atol=0.3)
    # same colours, different arrangement: the colour specialist's pooled feature is identical
    moved = gray.clone()
    moved[:, :, 0:16, 16:32] = torch.tensor([0.9, 0.1, 0.1]).view(1, 3, 1, 1)
    assert torch.allclose(colour(red).cls, colour(moved).cls, atol=1e-5)
