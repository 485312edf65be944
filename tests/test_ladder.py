import pytest
import torch

from workbench.distillation import UNIC, distillation_loss, teacher_losses
from workbench.layers.ladder import FusedLadder, Ladder, resize_tokens, select_blocks
from workbench.models import Student


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


def per_block_grads(ladder):
    """{(token type, teacher, param name): grad} in the per-block layout, whichever layout ``ladder`` has."""
    out = {}
    for kind in ("cls", "patch"):
        module = getattr(ladder, kind)
        if isinstance(ladder, FusedLadder):
            stacks = module.to_stacks({n: p.grad for n, p in module.named_parameters()})
        else:
            stacks = {t: {n: p.grad for n, p in stack.named_parameters()} for t, stack in module.items()}
        out.update({(kind, t, n): g for t, st in stacks.items() for n, g in st.items()})
    return out


@pytest.mark.parametrize("fused", [True, False])
def test_every_ladder_block_receives_gradient(fused):
    student = Student("wb_vit_tiny_patch8_32")
    model = UNIC(student, {"a": 12, "b": 7}, {"a": (4, 4), "b": (8, 8)}, ladder="all", fused_ladder=fused)
    assert isinstance(model.ladder, FusedLadder if fused else Ladder)
    images = torch.rand(3, 3, 32, 32)
    preds = model(images)
    targets = {"a": (torch.randn(3, 12), torch.randn(3, 16, 12)), "b": (torch.randn(3, 7), torch.randn(3, 64, 7))}
    loss, _ = distillation_loss(teacher_losses(preds, targets), drop_p=0.0)
    loss.backward()
    grads = per_block_grads(model.ladder)
    assert len(grads) == 2 * 2 * 4 * 4  # token types x teachers x blocks x (2 weights, 2 biases)
    for (kind, t, name), g in grads.items():
        assert g is not None and g.abs().sum() > 0, f"{kind} projector of {t}: {name} got no gradient"
    for i, block in enumerate(student.vit.blocks):
        assert block.mlp.fc1.weight.grad.abs().sum() > 0, f"student block {i} got no gradient"


@pytest.mark.parametrize("blocks", [[0, 1, 2, 3], [1, 3], [3], [0, 2]])
def test_fused_ladder_is_the_per_block_ladder(blocks):
    """Same weights -> same predictions and the same gradient for every per-block weight, including
    teachers of unequal widths and grids, the last block's 4x hidden width, and a ladder without it."""
    dims, grids = {"a": 12, "b": 7, "c": 12}, {"a": (3, 3), "b": (4, 4), "c": (2, 2)}
    per_block = Ladder(16, 4, dims, blocks)
    for p in per_block.parameters():  # random biases too, so that a misplaced bias shows
        torch.nn.init.normal_(p, std=0.3)
    fused = FusedLadder.from_ladder(per_block)
    inputs = [(torch.randn(5, 16, requires_grad=True), torch.randn(5, 9, 16, requires_grad=True)) for _ in range(4)]
    outs = [m(inputs, (3, 3), grids) for m in (per_block, fused)]
    for t in dims:
        for ref, got in zip(outs[0][t], outs[1][t]):
            assert got.shape == ref.shape
            torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    input_grads = []
    for out in outs:
        loss = sum((c.sin().sum() + p.cos().sum()) for c, p in out.values())
        input_grads.append(torch.autograd.grad(loss, [x for pair in inputs for x in pair], retain_graph=True,
                                               materialize_grads=True))  # zeros for blocks off the ladder
        loss.backward()
    for ref, got in zip(*input_grads):
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    ref, got = per_block_grads(per_block), per_block_grads(fused)
    assert ref.keys() == got.keys()
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=1e-5, atol=1e-5, msg=lambda m, k=k: f"{k}: {m}")


def test_ladder_state_dicts_load_into_either_layout():
    student = Student("wb_vit_tiny_patch8_32")
    dims, grids = {"a": 12, "b": 7}, {"a": (4, 4), "b": (8, 8)}
    fused = UNIC(student, dims, grids, fused_ladder=True)
    per_block = UNIC(Student("wb_vit_tiny_patch8_32"), dims, grids, fused_ladder=False)
    per_block.load_state_dict(fused.state_dict())  # a fused checkpoint into the per-block layout ...
    back = UNIC(Student("wb_vit_tiny_patch8_32"), dims, grids, fused_ladder=True)
    back.load_state_dict(per_block.state_dict())  # ... and back
    for k, v in fused.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        for (c1, p1), (c2, p2) in zip(fused(images).values(), per_block(images).values()):
            torch.testing.assert_close(c1, c2, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(p1, p2, rtol=1e-5, atol=1e-6)
    assert fused.ladder.to_ladder().state_dict().keys() == per_block.ladder.state_dict().keys()


@pytest.mark.parametrize("grid,target",
                         [((14, 14), (16, 16)), ((16, 16), (14, 14)), ((4, 4), (8, 8)), ((7, 7), (7, 7))])
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
