import pytest
import torch

from workbench.distill import UNIC
from workbench.ladder import Ladder, resize_tokens, select_blocks
from workbench.losses import distillation_loss, teacher_losses
from workbench.students import Student


def test_select_blocks():
    assert select_blocks("all", 4) == [0, 1, 2, 3]
    assert select_blocks("last", 4) == [3]
    assert select_blocks([1, -1], 4) == [1, 3]
    with pytest.raises(ValueError):
        select_blocks([4], 4)
    with pytest.raises(ValueError):
        select_blocks("most", 4)


def test_hidden_width_is_student_width_and_4x_for_last_block():
    ladder = Ladder(student_dim=16, depth=3, teacher_dims={"a": 8, "b": 5}, blocks=[0, 1, 2])
    for stack in (ladder.cls["a"], ladder.patch["b"]):
        widths = [m[0].out_features for m in stack.mlps]
        assert widths == [16, 16, 64]
    assert ladder.patch["b"].mlps[0][2].out_features == 5
    baseline = Ladder(16, 3, {"a": 8}, blocks=select_blocks("last", 3))
    assert len(baseline.cls["a"].mlps) == 1


def test_every_ladder_block_receives_gradient():
    student = Student("wb_vit_tiny_patch8_32")
    model = UNIC(student, {"a": 12, "b": 7}, {"a": (4, 4), "b": (8, 8)}, ladder="all")
    images = torch.rand(3, 3, 32, 32)
    preds = model(images)
    targets = {"a": (torch.randn(3, 12), torch.randn(3, 16, 12)), "b": (torch.randn(3, 7), torch.randn(3, 64, 7))}
    loss, _ = distillation_loss(teacher_losses(preds, targets), drop_p=0.0)
    loss.backward()
    for stacks in (model.ladder.cls, model.ladder.patch):
        for name, stack in stacks.items():
            for b, mlp in zip(stack.blocks, stack.mlps):
                for p in mlp.parameters():
                    assert p.grad is not None and p.grad.abs().sum() > 0, f"{name} block {b} got no gradient"
    for i, block in enumerate(student.vit.blocks):
        assert block.mlp.fc1.weight.grad.abs().sum() > 0, f"student block {i} got no gradient"


@pytest.mark.parametrize("grid,target", [((14, 14), (16, 16)), ((16, 16), (14, 14)), ((4, 4), (8, 8)), ((7, 7), (7, 7))])
def test_patch_grid_interpolation_shapes(grid, target):
    tokens = torch.randn(2, grid[0] * grid[1], 5)
    out = resize_tokens(tokens, grid, target)
    assert out.shape == (2, target[0] * target[1], 5)
    if grid == target:
        assert out is tokens


def test_interpolation_preserves_constant_maps():
    tokens = torch.ones(1, 16, 3) * torch.tensor([1.0, 2.0, 3.0])
    assert torch.allclose(resize_tokens(tokens, (4, 4), (7, 7)), torch.ones(1, 49, 3) * torch.tensor([1.0, 2.0, 3.0]))


def test_student_predicts_on_each_teacher_grid():
    student = Student("wb_vit_tiny_patch8_32")  # 4x4 grid
    model = UNIC(student, {"a": 6, "b": 9}, {"a": (8, 8), "b": (2, 3)})
    preds = model(torch.rand(2, 3, 32, 32))
    assert preds["a"][0].shape == (2, 6) and preds["a"][1].shape == (2, 64, 6)
    assert preds["b"][0].shape == (2, 9) and preds["b"][1].shape == (2, 6, 9)
