"""The teacher zoo: every entry builds offline and round-trips through a locally saved checkpoint."""
import pickle

import pytest
import timm
import torch
from safetensors.torch import save_file

import workbench as wb
from workbench.models import list_teachers
from workbench.models.preprocess import PREPROCESSING
from workbench.models.weights import UnsafeCheckpoint
from workbench.models.zoo import SPECS

ZOO_NAMES = sorted(SPECS)


def save_like_its_authors(teacher, name, folder):
    """Write the teacher's weights the way its weights reach users: timm file or official checkpoint."""
    module = teacher.model if hasattr(teacher, "model") else teacher
    state = {k: v.contiguous() for k, v in module.state_dict().items()}
    spec = SPECS.get(name)
    if spec is not None and spec.checkpoint_format == "ibot":  # DINO-style teacher, behind a prefix, with its head
        path = folder / "checkpoint_teacher.pth"
        ckpt = {f"backbone.{k}": v for k, v in state.items()}
        ckpt["head.last_layer.weight_g"] = torch.ones(1, 8)
        torch.save({"state_dict": ckpt, "epoch": 100}, path)
    elif spec is not None and spec.checkpoint_format == "dbot":  # MAE-style fine-tune: fc_norm and a classifier
        path = folder / "dbot_base_finetune.pth"
        torch.save({"model": {**state, "head.weight": torch.zeros(1000, 768), "head.bias": torch.zeros(1000)}}, path)
    elif spec is not None and spec.checkpoint_format == "unic":  # UNIC(encoder, ladder) in DistributedDataParallel
        path = folder / "unic.pth"
        torch.save({"model": {f"module.encoder.{k}": v for k, v in state.items()}, "epoch": 200}, path)
    else:  # timm's names (tests/test_release_formats.py writes each release's own)
        path = folder / f"{name}.safetensors"
        save_file(state, str(path))
    return path


@pytest.mark.parametrize("name", sorted(list_teachers()))
def test_every_registry_entry_builds_offline_and_round_trips(name, tmp_path):
    torch.manual_seed(0)
    teacher = wb.create_teacher(name, pretrained=False)
    path = save_like_its_authors(teacher, name, tmp_path)
    loaded = wb.create_teacher(name, checkpoint=str(path))
    images = torch.rand(2, 3, 32, 32)
    a, b = teacher(images), loaded(images)
    assert a.grid == b.grid and a.patch.shape[1] == a.grid[0] * a.grid[1]
    assert torch.allclose(a.cls, b.cls, atol=1e-5) and torch.allclose(a.patch, b.patch, atol=1e-5)


def test_zoo_covers_the_teachers_of_the_field():
    expected = {"dino_vits16", "dino_vitb16", "deit3_vits16", "deit3_vitb16", "dinov2_vits14", "dinov2_vitb14",
                "clip_vitb16", "mae_vitb16", "deit_vitb16", "ibot_vitb16", "dbot_vitb16", "unic_vitb16"}
    assert expected <= set(list_teachers())
    assert SPECS["dinov2_vitb14"].arch == "vit_base_patch14_dinov2"
    assert PREPROCESSING[SPECS["clip_vitb16"].preprocessing].mean[0] == pytest.approx(0.4815, abs=1e-3)


@pytest.mark.parametrize("name", ["dinov2_vits14", "deit3_vits16", "clip_vitb16"])
def test_features_match_timm_forward_features(name):
    torch.manual_seed(0)
    teacher = wb.create_teacher(name, pretrained=False)
    images = torch.rand(2, 3, 40, 40)
    feats = teacher(images)
    x = teacher.preprocess(images)
    assert x.shape[-2:] == (224, 224)
    tokens = teacher.model.forward_features(x)
    npt = teacher.model.num_prefix_tokens
    assert torch.allclose(feats.patch, tokens[:, npt:], atol=1e-5)
    assert torch.allclose(feats.cls, teacher.model.forward_head(tokens, pre_logits=True), atol=1e-5)


def test_register_tokens_are_not_patch_tokens():
    teacher = wb.create_teacher("vit_small_patch14_reg4_dinov2", pretrained=False)
    feats = teacher(torch.rand(1, 3, 32, 32))
    assert teacher.num_prefix_tokens == 5 and feats.patch.shape[1] == feats.grid[0] * feats.grid[1]


def test_intermediate_blocks():
    torch.manual_seed(0)
    teacher = wb.create_teacher("deit3_vits16", pretrained=False)
    images = torch.rand(2, 3, 32, 32)
    blocks = teacher.intermediates(images, [0, 11])
    assert len(blocks) == 2 and blocks[0].patch.shape == (2, 196, 384)
    vit = teacher.model
    x = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(teacher.preprocess(images)))))
    for blk in vit.blocks:
        x = blk(x)
    assert torch.allclose(blocks[1].patch, x[:, 1:], atol=1e-5) and torch.allclose(blocks[1].cls, x[:, 0], atol=1e-5)
    assert torch.allclose(vit.norm(x)[:, 1:], teacher(images).patch, atol=1e-5)


def test_missing_hub_weights_name_the_model_and_what_to_do(monkeypatch):
    # HF_HUB_OFFLINE=1, as on most clusters; tests/test_teachers.py covers a machine without network and without it
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(FileNotFoundError, match=r"vit_small_patch16_224\.dino.*checkpoint"):
        wb.create_teacher("dino_vits16", pretrained=True)


def test_teacher_without_hub_weights_asks_for_its_checkpoint():
    with pytest.raises(FileNotFoundError, match="iBOT.*checkpoint="):
        wb.create_teacher("ibot_vitb16")


def test_checkpoint_that_does_not_fit_is_refused(tmp_path):
    path = tmp_path / "small.safetensors"
    other = timm.create_model("vit_tiny_patch16_224", num_classes=0)
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(path))
    with pytest.raises((ValueError, RuntimeError)):
        wb.create_teacher("dino_vits16", checkpoint=str(path))


class _Exploit:
    def __reduce__(self):
        return (exec, ("open('PWNED', 'w').write('x')",))


def test_pickle_checkpoint_that_executes_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": _Exploit()}, f)
    with pytest.raises(UnsafeCheckpoint, match="refusing to load"):
        wb.create_teacher("ibot_vitb16", checkpoint=str(path))
    assert not (tmp_path / "PWNED").exists()
