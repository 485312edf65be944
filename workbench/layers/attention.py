"""Fused attention for every timm attention layer of a model."""
from __future__ import annotations

import torch.nn as nn


def use_fused_attention(model: nn.Module) -> int:
    """Switch every timm attention layer of ``model`` to ``F.scaled_dot_product_attention`` (flash /
    memory-efficient kernels on GPU) and return how many there are. timm picks it by default, but
    ``TIMM_FUSED_ATTN=0`` in the environment or an old export setting turns it off silently."""
    layers = [m for m in model.modules() if hasattr(m, "fused_attn")]
    for m in layers:
        m.fused_attn = True
    return len(layers)
