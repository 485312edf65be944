"""A convolutional patch embedding for small ViTs."""
from __future__ import annotations

import torch.nn as nn
from timm.layers import LayerNorm2d, PatchEmbed


class ConvStemEmbed(PatchEmbed):
    """Patch embedding by a stack of stride-2 3x3 convolutions instead of one strided projection.

    "Early convolutions help transformers see better" (Xiao et al., 2021): the same tokens and grid
    as ``PatchEmbed``, but small ViTs learn spatial structure (shape) far faster from little data.
    LayerNorm (not BatchNorm) between the convolutions keeps every image independent of its batch.
    """

    def __init__(self, img_size=224, patch_size=16, in_chans=3, embed_dim=768, **kwargs):
        super().__init__(img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim, **kwargs)
        n_down = int(self.patch_size[0]).bit_length() - 1
        if 2**n_down != self.patch_size[0] or self.patch_size[0] != self.patch_size[1]:
            raise ValueError(f"ConvStemEmbed needs a square power-of-two patch size, got {self.patch_size}")
        widths = [in_chans] + [max(embed_dim // 2 ** (n_down - i), 16) for i in range(1, n_down)]
        layers = []
        for cin, cout in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(cin, cout, 3, 2, 1, bias=False), LayerNorm2d(cout), nn.GELU()]
        layers.append(nn.Conv2d(widths[-1], embed_dim, 3, 2, 1))
        self.proj = nn.Sequential(*layers)
